"""Objects: download (ranges), upload (raw or multipart/form-data), stat, list, delete, copy,
and linking bytes already written to the storage namespace (staging)."""

from __future__ import annotations

import email.utils
import re
from collections.abc import AsyncIterator, Mapping

from aiohttp import BodyPartReader, web

from lakeproxy.api.context import Call, amount_of, json_ok, listed_objects, object_path, page
from lakeproxy.api.errors import Gone, RangeNotSatisfiable, json_response, status_of
from lakeproxy.api.routes.branches import branch_name
from lakeproxy.api.routing import (
    AFTER,
    AMOUNT,
    DELIMITER,
    FORCE,
    PATH,
    PREFIX,
    Body,
    Param,
    ParamKind,
    Permission,
    Route,
)
from lakeproxy.api.schemas import (
    ObjectCopyCreation,
    PathList,
    StagingMetadata,
    object_stats,
)
from lakeproxy.errors import (
    BranchNotFound,
    InvalidArgument,
    LakeproxyError,
    ObjectNotFound,
    ReadOnlyRef,
    RepositoryNotFound,
)
from lakeproxy.graveler import Entry, Repository
from lakeproxy.graveler.ids import validate_repository_id
from lakeproxy.graveler.objects import physical_path

META_PREFIX = "x-lakefs-meta-"
MAX_DELETE_PATHS = 1000
UPLOAD_CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_OWN_ADDRESS = re.compile(r"data/[0-9]{10}/[0-9a-f]{32}")


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _headers(entry: Entry) -> dict[str, str]:
    return {
        "ETag": f'"{entry.etag}"',
        "Last-Modified": _http_date(entry.last_modified),
        "Content-Type": entry.content_type,
        "Accept-Ranges": "bytes",
    }


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range, None for the whole object.

    Raises RangeNotSatisfiable (416, with the size) for a range starting at or past the end.
    """
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # not a single byte range: serve the whole object
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("the requested range is not satisfiable", size=size)
        return max(0, size - suffix), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size:
        raise RangeNotSatisfiable(
            f"the requested range starts at byte {start}, past the object's {size} bytes",
            size=size,
        )
    if end <= start:
        return None
    return start, end


async def _target(call: Call) -> tuple[Repository, str, Entry]:
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    path = object_path(call.query["path"])
    entry = await call.g.get_entry(repo, call.path("ref"), path)
    return repo, path, entry


async def get_object(call: Call) -> web.StreamResponse:
    repo, _path, entry = await _target(call)
    headers = _headers(entry)
    inm = call.request.headers.get("If-None-Match")
    if inm is not None and any(v.strip().strip('"') in (entry.etag, "*")
                               for v in inm.split(",")):
        return web.Response(status=304, headers={"ETag": headers["ETag"]})
    span = _range(call.request.headers.get("Range"), entry.size)
    status, start, end = 200, 0, entry.size
    if span is not None:
        status, (start, end) = 206, span
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    headers["Content-Length"] = str(end - start)
    if call.request.method == "HEAD":
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(call.request)
        await response.write_eof()
        return response
    chunks = call.g.open_object(repo, entry, start=start, end=end)
    first = b""
    if end > start:
        try:
            first = await anext(chunks, b"")
        except ObjectNotFound:
            raise Gone("No data: the object's bytes are missing from the storage namespace",
                       path=_path) from None
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(call.request)
    if first:
        await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def stat_object(call: Call) -> web.StreamResponse:
    repo, path, entry = await _target(call)
    return json_response(object_stats(repo, path, entry,
                                      user_metadata=call.query["user_metadata"]))


async def list_objects(call: Call) -> web.StreamResponse:
    q = call.query
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    amount = amount_of(q)
    prefix = object_path(q["prefix"], "prefix") if q["prefix"] else ""
    listing = await call.g.list_raw(
        repo, call.path("ref"), prefix=prefix, after=q["after"] or "",
        delimiter=q["delimiter"] or "", limit=amount,
    )
    items = listed_objects(repo.storage_namespace, listing.keys, listing.values,
                           user_metadata=q["user_metadata"])
    last = items[-1]["path"] if items and listing.has_more else ""
    return json_ok(page(items, listing.has_more and bool(items), last))


def _user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    meta = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(META_PREFIX) and len(lower) > len(META_PREFIX):
            meta[lower[len(META_PREFIX):]] = value
    return meta


def _conditions(headers: Mapping[str, str]) -> tuple[str | None, bool]:
    inm = headers.get("If-None-Match")
    if inm is not None and inm.strip() != "*":
        raise InvalidArgument("If-None-Match supports only '*' (fail if the path exists)")
    return headers.get("If-Match"), inm is not None


async def _form_content(request: web.Request) -> tuple[AsyncIterator[bytes], str | None]:
    """The `content` part of a multipart/form-data upload, streamed."""
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise InvalidArgument("the multipart/form-data body has no 'content' field")
        if isinstance(part, BodyPartReader) and part.name == "content":
            break
        if isinstance(part, BodyPartReader):
            await part.release()

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            chunk = await part.read_chunk(UPLOAD_CHUNK)
            if not chunk:
                return
            yield chunk

    return chunks(), part.headers.get("Content-Type")


async def upload_object(call: Call) -> web.StreamResponse:
    request = call.request
    repo = validate_repository_id(call.repository)
    branch = branch_name(call)
    path = object_path(call.query["path"])
    if_match, if_none_match = _conditions(request.headers)
    if request.content_type == "multipart/form-data":
        chunks, content_type = await _form_content(request)
    else:
        chunks = request.content.iter_chunked(UPLOAD_CHUNK)
        content_type = request.headers.get("Content-Type")
    entry = await call.g.put_object(
        repo, branch, path, chunks, content_type=content_type or None,
        metadata=_user_metadata(request.headers), if_match=if_match,
        if_none_match=if_none_match,
    )
    repository = await call.g.get_repository(repo)
    return json_response(object_stats(repository, path, entry), 201)


async def delete_object(call: Call) -> web.StreamResponse:
    await call.g.delete_entry(validate_repository_id(call.repository), branch_name(call),
                              object_path(call.query["path"]))
    return web.Response(status=204)


_WHOLE_REQUEST = (RepositoryNotFound, BranchNotFound, ReadOnlyRef)


async def delete_objects(call: Call) -> web.StreamResponse:
    body: PathList = call.body
    if len(body.paths) > MAX_DELETE_PATHS:
        raise InvalidArgument(f"at most {MAX_DELETE_PATHS} paths per request; got "
                              f"{len(body.paths)}")
    repo = validate_repository_id(call.repository)
    branch = branch_name(call)
    await call.g.get_branch(repo, branch)
    # (position in the request, error) of each path that failed, in request order.
    failed: list[tuple[int, str, LakeproxyError]] = []
    valid: list[tuple[int, str]] = []
    for i, path in enumerate(body.paths):
        try:
            valid.append((i, object_path(path)))
        except LakeproxyError as e:
            failed.append((i, path, e))
    if valid:
        try:
            await call.g.delete_entries(repo, branch, [path for _, path in valid])
        except _WHOLE_REQUEST:
            raise
        except LakeproxyError as e:  # protected branch, or it kept changing: every path fails
            failed += [(i, path, e) for i, path in valid]
            failed.sort(key=lambda f: f[0])
    errors = [{"status_code": status_of(e), "message": str(e), "path": path}
              for _, path, e in failed]
    return json_response({"errors": errors})


async def copy_object(call: Call) -> web.StreamResponse:
    body: ObjectCopyCreation = call.body
    repo = validate_repository_id(call.repository)
    branch = branch_name(call)
    dest = object_path(call.query["dest_path"], "dest_path")
    entry = await call.g.copy_entry(repo, body.src_ref or branch, object_path(body.src_path,
                                                                               "src_path"),
                                    branch, dest)
    return json_response(object_stats(await call.g.get_repository(repo), dest, entry), 201)


async def get_physical_address(call: Call) -> web.StreamResponse:
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    await call.g.get_branch(repo.name, branch_name(call))
    object_path(call.query["path"])
    address = f"{repo.storage_namespace.rstrip('/')}/{physical_path()}"
    return json_response({"physical_address": address, "presigned_url": None})


async def link_physical_address(call: Call) -> web.StreamResponse:
    body: StagingMetadata = call.body
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    branch = branch_name(call)
    path = object_path(call.query["path"])
    address = body.staging.physical_address or ""
    namespace = repo.storage_namespace.rstrip("/") + "/"
    relative = address[len(namespace):] if address.startswith(namespace) else ""
    if not _OWN_ADDRESS.fullmatch(relative):
        raise InvalidArgument(f"physical address {address!r} was not issued for repository "
                              f"{repo.name!r}: get one from staging/backing first")
    blocks = await call.g.blocks.get(repo.storage_namespace)
    stat = await blocks.stat(relative)
    if stat is None:
        raise InvalidArgument(f"nothing was written at {address!r}")
    if stat.size != body.size_bytes:
        raise InvalidArgument(f"{address!r} holds {stat.size} bytes, not {body.size_bytes}")
    if_match, if_none_match = _conditions(call.request.headers)
    etag = body.checksum.strip('"')
    entry = Entry(relative, stat.size, etag, etag,
                  content_type=body.content_type or "application/octet-stream",
                  metadata=dict(body.user_metadata or {}))
    await call.g.set_entry(repo.name, branch, path, entry, if_match=if_match,
                           if_none_match=if_none_match)
    return json_response(object_stats(repo, path, entry))


REFS = "/repositories/{repository}/refs/{ref}/objects"
BRANCH = "/repositories/{repository}/branches/{branch}"
PRESIGN = Param("presign", ParamKind.BOOLEAN, default=False,
                description="ignored: this server serves object bytes itself")
USER_METADATA = Param("user_metadata", ParamKind.BOOLEAN, default=True)

ROUTES = [
    Route("GET", REFS, "getObject", get_object, Permission.REPO_READ, query=(PATH, PRESIGN),
          responses={200: "binary", 206: "binary", 304: None}, tag="objects"),
    Route("HEAD", REFS, "headObject", get_object, Permission.REPO_READ, query=(PATH,),
          responses={200: None, 206: None}, tag="objects"),
    Route("POST", BRANCH + "/objects", "uploadObject", upload_object, Permission.REPO_WRITE,
          query=(PATH, Param("storageClass"), FORCE), body=Body.RAW,
          responses={201: "ObjectStats"}, tag="objects"),
    Route("DELETE", BRANCH + "/objects", "deleteObject", delete_object, Permission.REPO_WRITE,
          query=(PATH, FORCE, Param("no_tombstone", ParamKind.BOOLEAN, default=False)),
          responses={204: None}, tag="objects"),
    Route("POST", BRANCH + "/objects/delete", "deleteObjects", delete_objects,
          Permission.REPO_WRITE, query=(FORCE,), body=PathList,
          responses={200: "ObjectErrorList"}, tag="objects"),
    Route("POST", BRANCH + "/objects/copy", "copyObject", copy_object, Permission.REPO_WRITE,
          query=(Param("dest_path", required=True),), body=ObjectCopyCreation,
          responses={201: "ObjectStats"}, tag="objects"),
    Route("GET", REFS + "/stat", "statObject", stat_object, Permission.REPO_READ,
          query=(PATH, USER_METADATA, PRESIGN), responses={200: "ObjectStats"}, tag="objects"),
    Route("GET", REFS + "/ls", "listObjects", list_objects, Permission.REPO_READ,
          query=(PREFIX, AFTER, AMOUNT, DELIMITER, USER_METADATA, PRESIGN),
          responses={200: "ObjectStatsList"}, tag="objects"),
    Route("GET", BRANCH + "/staging/backing", "getPhysicalAddress", get_physical_address,
          Permission.REPO_WRITE, query=(PATH, PRESIGN), responses={200: "StagingLocation"},
          tag="staging"),
    Route("PUT", BRANCH + "/staging/backing", "linkPhysicalAddress", link_physical_address,
          Permission.REPO_WRITE, query=(PATH,), body=StagingMetadata,
          responses={200: "ObjectStats"}, tag="staging"),
]
