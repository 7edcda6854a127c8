"""Object operations: GET, HEAD, PUT, DELETE, DeleteObjects and CopyObject."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from urllib.parse import unquote

from aiohttp import StreamReader, web

from lakeproxy.auth.model import Level
from lakeproxy.errors import (
    InvalidArgument,
    LakeproxyError,
    NotFound,
    ObjectNotFound,
    ReadOnlyRef,
)
from lakeproxy.gateway.body import RequestBody
from lakeproxy.gateway.context import (
    Ctx,
    etag_matches,
    metadata_from_headers,
    object_headers,
    parse_http_date,
    parse_range,
    quoted,
    reject_version_id,
)
from lakeproxy.gateway.errors import (
    EntityTooLarge,
    InvalidDigest,
    InvalidRequest,
    MalformedXML,
    MaxMessageLengthExceeded,
    MissingContentLength,
    NotImplementedOperation,
)
from lakeproxy.gateway.operations.buckets import xml_response
from lakeproxy.gateway.xml import MAX_REQUEST_XML, children, iso8601, parse, render, text_of
from lakeproxy.graveler import Entry, Repository
from lakeproxy.graveler.objects import copy_of
from lakeproxy.wire_errors import wire_of

MAX_PUT_SIZE = 5 * 1024**3
READ_CHUNK = 1024 * 1024
MAX_DELETE_KEYS = 1000


class NotModified(Exception):
    """Raised by precondition checks that answer 304."""


def check_preconditions(headers: Mapping[str, str], entry: Entry, prefix: str = "") -> None:
    """If-Match / If-None-Match / If-(Un)Modified-Since, as S3 evaluates them.

    Raises PreconditionFailed (412) or NotModified (304). `prefix` selects the
    `x-amz-copy-source-` variants.
    """
    from lakeproxy.errors import PreconditionFailed

    if_match = headers.get(prefix + "If-Match")
    if_none_match = headers.get(prefix + "If-None-Match")
    if_modified = headers.get(prefix + "If-Modified-Since")
    if_unmodified = headers.get(prefix + "If-Unmodified-Since")
    modified = int(entry.last_modified)
    if if_match is not None and not etag_matches(if_match, entry.etag):
        raise PreconditionFailed("At least one of the pre-conditions you specified did not hold")
    if if_match is None and if_unmodified is not None:
        since = parse_http_date(if_unmodified)
        if since is not None and modified > since:
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold"
            )
    if if_none_match is not None and etag_matches(if_none_match, entry.etag):
        if prefix:
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold"
            )
        raise NotModified
    if if_none_match is None and if_modified is not None:
        since = parse_http_date(if_modified)
        if since is not None and modified <= since:
            if prefix:
                raise PreconditionFailed(
                    "At least one of the pre-conditions you specified did not hold"
                )
            raise NotModified


RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def names_ref_root(key: str) -> bool:
    """Whether an S3 key is a bare ref (`main`) or a ref's root "directory" (`main/`)."""
    _, sep, path = key.partition("/")
    return not sep or not path


async def _entry_for_read(ctx: Ctx) -> tuple[Repository, Entry]:
    reject_version_id(ctx.query)
    if "partNumber" in ctx.query:
        raise NotImplementedOperation("GET and HEAD by partNumber are not implemented")
    repo = await ctx.g.get_repository(ctx.bucket)  # NoSuchBucket first
    if names_ref_root(ctx.target.key):
        # `main` and `main/` are never objects (clients probe them as directories)
        raise ObjectNotFound("The specified key does not exist.", key=ctx.target.key)
    ref, path = ctx.ref_and_path()
    try:
        return repo, await ctx.g.get_entry(repo, ref, path)
    except NotFound as e:
        raise ObjectNotFound("The specified key does not exist.", key=ctx.target.key) from e


async def get_object(ctx: Ctx) -> web.StreamResponse:
    return await _read(ctx, body=True)


async def head_object(ctx: Ctx) -> web.StreamResponse:
    return await _read(ctx, body=False)


async def _read(ctx: Ctx, *, body: bool) -> web.StreamResponse:
    repo, entry = await _entry_for_read(ctx)
    headers = ctx.request.headers
    try:
        check_preconditions(headers, entry)
    except NotModified:
        return web.Response(status=304, headers={"ETag": quoted(entry.etag),
                                                 "Last-Modified": object_headers(entry)[
                                                     "Last-Modified"]})
    span = parse_range(headers["Range"], entry.size) if "Range" in headers else None
    out = object_headers(entry, checksum_mode=headers.get("x-amz-checksum-mode") == "ENABLED",
                         ranged=span is not None)
    for param, header in RESPONSE_OVERRIDES.items():
        if param in ctx.query:
            out[header] = ctx.query[param]
    status = 200
    start, end = 0, entry.size
    if span is not None:
        start, end = span
        status = 206
        out["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    out["Content-Length"] = str(end - start)
    response = _ObjectResponse(status=status, headers=out)
    if body and end > start:
        response.source = (ctx, entry, start, end)
        blocks = await ctx.g.blocks.get(repo.storage_namespace)
        response.local = blocks.local_path(entry.address)
        transport = ctx.request.transport
        if response.local is None or (
                transport is not None and transport.get_extra_info("sslcontext") is not None):
            # Streamed, not sent from a file: ask the block store for the first chunk now, so
            # that a store that is down answers 503 before any header has gone out.
            response.local = None
            chunks = ctx.g.open_object(ctx.bucket, entry, start=start, end=end)
            response.chunks = (await anext(chunks, b""), chunks)
    return response


class _ObjectResponse(web.StreamResponse):
    """Streams an object's bytes: sendfile from a local file when possible, else chunks."""

    source: tuple[Ctx, Entry, int, int] | None = None
    local: str | None = None  # the local file to send, when sendfile can be used
    chunks: tuple[bytes, AsyncIterator[bytes]] | None = None  # first chunk, then the rest

    async def prepare(self, request: web.BaseRequest) -> web.AbstractStreamWriter | None:  # type: ignore[override]
        writer = await super().prepare(request)
        if self.source is None or request.method == "HEAD":
            return writer
        assert writer is not None
        ctx, entry, start, end = self.source
        transport = request.transport
        if self.local is not None and transport is not None:
            loop = asyncio.get_running_loop()
            # A local open is quick; O_NOFOLLOW: never serve what a symlink points to.
            with os.fdopen(os.open(self.local, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC),
                           "rb") as fobj:
                try:
                    await loop.sendfile(transport, fobj, start, end - start)
                    await super().write_eof()
                    return writer
                except NotImplementedError:
                    pass
        if self.chunks is None:
            self.chunks = (b"", ctx.g.open_object(ctx.bucket, entry, start=start, end=end))
        first, rest = self.chunks
        if first:
            await writer.write(first)
        async for chunk in rest:
            await writer.write(chunk)
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:  # type: ignore[attr-defined]
            return
        await super().write_eof(data)


def decoded_length(ctx: Ctx) -> int:
    """The payload length a PUT announces (x-amz-decoded-content-length for aws-chunked)."""
    headers = ctx.request.headers
    raw = headers.get("x-amz-decoded-content-length")
    if raw is None and "aws-chunked" not in headers.get("Content-Encoding", ""):
        raw = headers.get("Content-Length")
    if raw is None:
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            return -1
        raise MissingContentLength("You must provide the Content-Length HTTP header.")
    try:
        size = int(raw)
    except ValueError:
        raise InvalidArgument(f"invalid content length {raw!r}") from None
    if size < 0:
        raise InvalidArgument("the content length cannot be negative")
    if size > MAX_PUT_SIZE:
        raise EntityTooLarge(
            "Your proposed upload exceeds the maximum allowed size (5 GiB for one PUT; use a "
            "multipart upload)"
        )
    return size


def request_body(ctx: Ctx) -> RequestBody:
    """The request's verified payload. The body is read as it arrives, with up to twice
    READ_CHUNK buffered before the socket is paused."""
    content = ctx.request.content
    if hasattr(content, "set_read_chunk_size"):  # aiohttp >= 3.14
        content.set_read_chunk_size(READ_CHUNK)
    return RequestBody(_received(content), ctx.auth, ctx.request.headers)


async def _received(content: StreamReader) -> AsyncIterator[bytes]:
    """The body's pieces as the socket delivered them: never joined, so never copied (and
    no large buffer is allocated, and page-faulted in, per MiB received)."""
    while True:
        data, _ = await content.readchunk()
        if data:
            yield data
        elif content.at_eof():  # (iter_chunks never ends on aiohttp's shared empty payload)
            return


async def read_xml_body(ctx: Ctx) -> bytes:
    """The (verified) body of a request that carries an XML document, read with a bound:
    a body over MAX_REQUEST_XML is refused as soon as that is known, never buffered."""
    announced = ctx.request.headers.get("x-amz-decoded-content-length") or \
        ctx.request.headers.get("Content-Length")
    if announced is not None and announced.isdigit() and int(announced) > MAX_REQUEST_XML:
        raise MaxMessageLengthExceeded(
            f"Your request was too big: XML documents are limited to {MAX_REQUEST_XML} bytes"
        )
    pieces: list[bytes] = []
    size = 0
    async for chunk in request_body(ctx):
        size += len(chunk)
        if size > MAX_REQUEST_XML:
            raise MaxMessageLengthExceeded(
                f"Your request was too big: XML documents are limited to {MAX_REQUEST_XML} "
                "bytes"
            )
        pieces.append(chunk)
    return b"".join(pieces)


def conditional_write(ctx: Ctx) -> tuple[str | None, bool]:
    headers = ctx.request.headers
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise NotImplementedOperation("If-None-Match on writes supports only '*'")
    return headers.get("If-Match"), if_none_match is not None


EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


async def _put_ref_root_marker(ctx: Ctx, size: int) -> web.StreamResponse:
    """A directory marker for a branch's root (`PUT main/`, empty; pyarrow's create_dir
    writes one for every ancestor): the root always exists, so only check and answer."""
    ref = ctx.target.key.rstrip("/")
    if size != 0 or not ctx.target.key.endswith("/"):
        ctx.ref_and_path()  # raises the "keys have the form REF/path" error
    async for chunk in request_body(ctx):  # verifies signature/hash of the (empty) body
        if chunk:
            ctx.ref_and_path()
    branch = await ctx.g.get_branch(ctx.bucket, ref)
    if branch.protected:
        raise ReadOnlyRef(f"branch {ref!r} is protected: it changes only by merge",
                          repository=ctx.bucket, branch=ref)
    return web.Response(headers={"ETag": quoted(EMPTY_MD5)})


async def put_object(ctx: Ctx) -> web.StreamResponse:
    reject_version_id(ctx.query)
    if names_ref_root(ctx.target.key):
        return await _put_ref_root_marker(ctx, decoded_length(ctx))
    ref, path = ctx.ref_and_path()
    size = decoded_length(ctx)
    if_match, if_none_match = conditional_write(ctx)
    body = request_body(ctx)
    entry = await ctx.g.put_object(
        ctx.bucket, ref, path, body,
        content_type=ctx.request.headers.get("Content-Type"),
        metadata=metadata_from_headers(ctx.request.headers),
        checksums=lambda: body.checksums,
        if_match=if_match, if_none_match=if_none_match,
        expected_size=size if size >= 0 else None,
    )
    headers = {"ETag": quoted(entry.etag)}
    for algorithm, value in entry.checksums.items():
        headers[f"x-amz-checksum-{algorithm}"] = value
    return web.Response(headers=headers)


async def delete_object(ctx: Ctx) -> web.StreamResponse:
    reject_version_id(ctx.query)
    if names_ref_root(ctx.target.key):  # never an object: deleting it succeeds, as on S3
        await ctx.g.get_repository(ctx.bucket)
        return web.Response(status=204)
    ref, path = ctx.ref_and_path()
    with contextlib.suppress(ObjectNotFound):  # deleting a missing key succeeds, as on S3
        await ctx.g.delete_entry(ctx.bucket, ref, path)
    return web.Response(status=204)


async def delete_objects(ctx: Ctx) -> web.StreamResponse:
    headers = ctx.request.headers
    if "Content-MD5" not in headers and not any(
        h.lower().startswith("x-amz-checksum-") for h in headers
    ) and "x-amz-sdk-checksum-algorithm" not in headers:
        raise InvalidRequest(
            "Missing required header for this request: Content-MD5 or x-amz-checksum-*"
        )
    raw = await read_xml_body(ctx)
    doc = parse(raw, "Delete")
    quiet = (text_of(doc, "Quiet", "false") or "").strip().lower() == "true"
    objects = children(doc, "Object")
    if len(objects) > MAX_DELETE_KEYS:
        raise MalformedXML(f"a DeleteObjects request may name at most {MAX_DELETE_KEYS} keys")
    await ctx.g.get_repository(ctx.bucket)
    results: list[tuple[str, object]] = []
    for obj in objects:
        key = text_of(obj, "Key")
        if key is None:
            raise MalformedXML("every <Object> needs a <Key>")
        try:
            version = text_of(obj, "VersionId")
            if version not in (None, "null"):
                raise InvalidRequest("only versionId=null is accepted")
            ctx.principal.require(ctx.bucket, Level.WRITE)  # every key, as its own request
            ref, _, path = key.partition("/")
            if not ref:
                raise InvalidArgument(f"key {key!r} names no ref")
            if path:  # a bare ref or its root (`main/`) is never an object: nothing to do
                await ctx.g.delete_entry(ctx.bucket, ref, path)
        except ObjectNotFound:
            pass
        except LakeproxyError as e:
            wire = wire_of(e)
            results.append(("Error", [("Key", key), ("Code", wire.s3_code),
                                      ("Message", str(e))]))
            continue
        if not quiet:
            results.append(("Deleted", [("Key", key)]))
    return xml_response(render("DeleteResult", results))


def parse_copy_source(header: str) -> tuple[str, str, str]:
    """(bucket, ref, path) of `x-amz-copy-source: [/]bucket/REF/path[?versionId=...]`."""
    source, _, query = header.partition("?")
    if query and query not in ("versionId=null",):
        raise InvalidRequest("copy sources accept only versionId=null")
    try:
        decoded = unquote(source, errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("x-amz-copy-source is not valid UTF-8") from None
    bucket, _, key = decoded.lstrip("/").partition("/")
    ref, _, path = key.partition("/")
    if not bucket or not ref or not path or "\x00" in decoded:
        raise InvalidArgument(
            "x-amz-copy-source must be BUCKET/REF/path (URL-encoded)", copy_source=header
        )
    return bucket, ref, path


async def source_entry(ctx: Ctx) -> tuple[str, Entry]:
    bucket, ref, path = parse_copy_source(ctx.request.headers["x-amz-copy-source"])
    ctx.principal.require(bucket, Level.READ)  # before the source is looked up at all
    try:
        entry = await ctx.g.get_entry(bucket, ref, path)
    except NotFound as e:
        await ctx.g.get_repository(bucket)
        raise ObjectNotFound("The specified key does not exist.", key=f"{ref}/{path}") from e
    try:
        check_preconditions(ctx.request.headers, entry, prefix="x-amz-copy-source-")
    except NotModified:  # pragma: no cover - copy-source conditions never answer 304
        raise
    return bucket, entry


async def copy_object(ctx: Ctx) -> web.StreamResponse:
    ref, path = ctx.ref_and_path()
    src_bucket, entry = await source_entry(ctx)
    headers = ctx.request.headers
    directive = headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgument("x-amz-metadata-directive must be COPY or REPLACE")
    if directive == "REPLACE":
        content_type = headers.get("Content-Type") or entry.content_type
        metadata: dict[str, str] | None = metadata_from_headers(headers)
    else:
        content_type, metadata = None, None
    if src_bucket == ctx.bucket:
        # The source entry was read (and its conditions checked) once: copy that entry.
        new = await ctx.g.set_entry(ctx.bucket, ref, path, copy_of(
            entry, content_type=content_type, metadata=metadata))
    else:
        new = await ctx.g.put_object(
            ctx.bucket, ref, path, ctx.g.open_object(src_bucket, entry),
            content_type=content_type or entry.content_type,
            metadata=metadata if metadata is not None else entry.metadata,
            checksums=entry.checksums, expected_size=entry.size,
        )
    return xml_response(render("CopyObjectResult", [
        ("LastModified", iso8601(new.last_modified)), ("ETag", quoted(new.etag)),
    ]))


def content_md5(ctx: Ctx) -> bytes | None:
    raw = ctx.request.headers.get("Content-MD5")
    if raw is None:
        return None
    try:
        digest = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDigest("The Content-MD5 you specified was invalid") from None
    if len(digest) != 16:
        raise InvalidDigest("The Content-MD5 you specified was invalid")
    return digest


async def ranged_source(ctx: Ctx, bucket: str, entry: Entry, header: str | None
                        ) -> AsyncIterator[bytes]:
    start, end = 0, entry.size
    if header:
        unit, _, spec = header.partition("=")
        first, _, last = spec.partition("-")
        try:
            start, end = int(first), int(last) + 1
        except ValueError:
            raise InvalidArgument(
                "x-amz-copy-source-range must be bytes=first-last") from None
        if unit != "bytes" or start < 0 or end > entry.size or end <= start:
            raise InvalidArgument(
                f"The x-amz-copy-source-range value must be of the form bytes=first-last "
                f"where first and last are within the {entry.size}-byte source object")
    async for chunk in ctx.g.open_object(bucket, entry, start=start, end=end):
        yield chunk

