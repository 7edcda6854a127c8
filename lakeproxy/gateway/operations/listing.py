"""ListObjects (v1) and ListObjectsV2 over the `REF/path` key space of a repository.

Keys below a ref are listed by the core (staging over committed, delimiter roll-up with
seeking). Above the refs, the repository root lists its branches: as common prefixes with a
delimiter, or every branch's objects in key order without one.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

from aiohttp import web

from lakeproxy.errors import InvalidArgument, NotFound
from lakeproxy.gateway.context import Ctx, require_int
from lakeproxy.gateway.operations.buckets import OWNER, xml_response
from lakeproxy.gateway.xml import iso8601, render
from lakeproxy.graveler import Entry

MAX_KEYS = 1000


def _encode(value: str, url: bool) -> str:
    return quote(value, safe="/") if url else value


async def _branch_names(ctx: Ctx, prefix: str) -> list[str]:
    names: list[str] = []
    after = ""
    while True:
        page = await ctx.g.list_branches(ctx.bucket, after=after, limit=1000)
        names += [b.name for b in page]
        if len(page) < 1000:
            break
        after = page[-1].name
    # Listing order is the order of "name/" keys, not of bare names ('-' sorts before '/').
    return sorted((n for n in names if (n + "/").startswith(prefix)),
                  key=lambda n: (n + "/").encode())


async def _list(
    ctx: Ctx, prefix: str, delimiter: str, after: str, limit: int
) -> tuple[list[tuple[str, Entry]], list[str], bool, str | None]:
    """(entries, common prefixes, truncated, last key or prefix returned) for a bucket."""
    ref, sep, inner = prefix.partition("/")
    if sep:
        return await _list_under_ref(ctx, ref, inner, delimiter, after, limit)
    entries: list[tuple[str, Entry]] = []
    prefixes: list[str] = []
    last: str | None = None
    for branch in await _branch_names(ctx, prefix):
        root = branch + "/"
        if after and root < after and not after.startswith(root):
            continue
        if delimiter == "/" or (delimiter and delimiter in root[len(prefix):]):
            rolled = prefix + root[len(prefix):].split(delimiter, 1)[0] + delimiter
            if rolled in prefixes or (after and rolled <= after):
                continue
            if len(entries) + len(prefixes) == limit:
                return entries, prefixes, True, last
            prefixes.append(rolled)
            last = rolled
            continue
        page_after = after[len(root):] if after.startswith(root) else ""
        more = True
        while more:
            room = limit - len(entries) - len(prefixes)
            if room == 0:
                return entries, prefixes, True, last
            sub = await ctx.g.list_entries(ctx.bucket, branch, prefix="", after=page_after,
                                           delimiter=delimiter, limit=min(room, MAX_KEYS))
            entries += [(root + k, e) for k, e in sub.entries]
            prefixes += [root + p for p in sub.common_prefixes]
            if sub.entries or sub.common_prefixes:
                last = root + (sub.next_after or max(
                    [k for k, _ in sub.entries] + sub.common_prefixes))
            more = sub.has_more
            page_after = sub.next_after or ""
    return entries, prefixes, False, last


async def _list_under_ref(
    ctx: Ctx, ref: str, inner_prefix: str, delimiter: str, after: str, limit: int
) -> tuple[list[tuple[str, Entry]], list[str], bool, str | None]:
    root = ref + "/"
    inner_after = after[len(root):] if after.startswith(root) else ""
    if after and not after.startswith(root) and after > root:
        return [], [], False, None
    try:
        page = await ctx.g.list_entries(ctx.bucket, ref, prefix=inner_prefix, after=inner_after,
                                        delimiter=delimiter, limit=limit)
    except NotFound:
        await ctx.g.get_repository(ctx.bucket)  # NoSuchBucket wins over a missing ref
        return [], [], False, None
    return (
        [(root + k, e) for k, e in page.entries],
        [root + p for p in page.common_prefixes],
        page.has_more,
        root + page.next_after if page.next_after else None,
    )


def _contents(entries: list[tuple[str, Entry]], url: bool, owner: bool) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, entry in entries:
        fields: list[tuple[str, object]] = [
            ("Key", _encode(key, url)),
            ("LastModified", iso8601(entry.last_modified)),
            ("ETag", f'"{entry.etag}"'),
            ("Size", entry.size),
            ("StorageClass", "STANDARD"),
        ]
        if owner:
            fields.append(("Owner", OWNER))
        out.append(("Contents", fields))
    return out


def _encoding(ctx: Ctx) -> bool:
    encoding = ctx.query.get("encoding-type")
    if encoding not in (None, "url"):
        raise InvalidArgument("Invalid Encoding Method specified in Request")
    return encoding == "url"


async def list_objects_v2(ctx: Ctx) -> web.StreamResponse:
    q = ctx.query
    if q.get("list-type") != "2":
        raise InvalidArgument("list-type must be 2")
    url = _encoding(ctx)
    await ctx.g.get_repository(ctx.bucket)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    limit = require_int(q, "max-keys", MAX_KEYS, 0, MAX_KEYS)
    token = q.get("continuation-token")
    start_after = q.get("start-after", "")
    after = _decode_token(token) if token is not None else start_after
    entries, prefixes, truncated, last = (
        await _list(ctx, prefix, delimiter, after, limit) if limit else ([], [], False, None)
    )
    body: list[tuple[str, object]] = [
        ("Name", ctx.bucket),
        ("Prefix", _encode(prefix, url)),
        ("Delimiter", _encode(delimiter, url) if delimiter else None),
        ("MaxKeys", limit),
        ("EncodingType", "url" if url else None),
        ("KeyCount", len(entries) + len(prefixes)),
        ("IsTruncated", truncated),
        ("ContinuationToken", token),
        ("NextContinuationToken", _encode_token(last) if truncated and last else None),
        ("StartAfter", _encode(start_after, url) if start_after else None),
        *_contents(entries, url, q.get("fetch-owner") == "true"),
        *(("CommonPrefixes", [("Prefix", _encode(p, url))]) for p in prefixes),
    ]
    return xml_response(render("ListBucketResult", body))


async def list_objects_v1(ctx: Ctx) -> web.StreamResponse:
    q = ctx.query
    url = _encoding(ctx)
    await ctx.g.get_repository(ctx.bucket)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    limit = require_int(q, "max-keys", MAX_KEYS, 0, MAX_KEYS)
    marker = q.get("marker", "")
    entries, prefixes, truncated, last = (
        await _list(ctx, prefix, delimiter, marker, limit) if limit else ([], [], False, None)
    )
    body: list[tuple[str, object]] = [
        ("Name", ctx.bucket),
        ("Prefix", _encode(prefix, url)),
        ("Marker", _encode(marker, url)),
        ("NextMarker", _encode(last, url) if truncated and delimiter and last else None),
        ("MaxKeys", limit),
        ("Delimiter", _encode(delimiter, url) if delimiter else None),
        ("EncodingType", "url" if url else None),
        ("IsTruncated", truncated),
        *_contents(entries, url, True),
        *(("CommonPrefixes", [("Prefix", _encode(p, url))]) for p in prefixes),
    ]
    return xml_response(render("ListBucketResult", body))


def _encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("The continuation token provided is incorrect") from None

