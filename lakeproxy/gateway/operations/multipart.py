"""Multipart upload operations."""

from __future__ import annotations

from aiohttp import web

from lakeproxy.errors import InvalidArgument
from lakeproxy.gateway.context import Ctx, metadata_from_headers, quoted, require_int
from lakeproxy.gateway.errors import MalformedXML
from lakeproxy.gateway.operations.buckets import OWNER, xml_response
from lakeproxy.gateway.operations.objects import (
    conditional_write,
    decoded_length,
    ranged_source,
    read_xml_body,
    request_body,
    source_entry,
)
from lakeproxy.gateway.xml import children, iso8601, parse, render, text_of
from lakeproxy.graveler.multipart import Upload


def _upload_id(ctx: Ctx) -> str:
    return ctx.query.get("uploadId", "")


async def _upload_for(ctx: Ctx) -> Upload:
    ref, path = ctx.ref_and_path()
    upload = await ctx.g.get_upload(ctx.bucket, _upload_id(ctx))
    if (upload.branch, upload.key) != (ref, path):
        from lakeproxy.errors import UploadNotFound

        raise UploadNotFound("The specified upload does not exist for this key")
    return upload


def _part_number(ctx: Ctx) -> int:
    raw = ctx.query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive")
    return int(raw)


async def create_multipart_upload(ctx: Ctx) -> web.StreamResponse:
    ref, path = ctx.ref_and_path()
    headers = ctx.request.headers
    upload = await ctx.g.create_upload(
        ctx.bucket, ref, path,
        content_type=headers.get("Content-Type"),
        metadata=metadata_from_headers(headers),
        checksum_algorithm=headers.get("x-amz-checksum-algorithm"),
    )
    out = {}
    if upload.checksum_algorithm:
        out["x-amz-checksum-algorithm"] = upload.checksum_algorithm.upper()
    response = xml_response(render("InitiateMultipartUploadResult", [
        ("Bucket", ctx.bucket), ("Key", ctx.target.key), ("UploadId", upload.upload_id),
    ]))
    response.headers.update(out)
    return response


async def upload_part(ctx: Ctx) -> web.StreamResponse:
    number = _part_number(ctx)
    await _upload_for(ctx)
    size = decoded_length(ctx)
    body = request_body(ctx)
    part = await ctx.g.upload_part(ctx.bucket, _upload_id(ctx), number, body,
                                   checksums=lambda: body.checksums,
                                   size=size if size >= 0 else None)
    headers = {"ETag": quoted(part.etag)}
    for algorithm, value in part.checksums.items():
        headers[f"x-amz-checksum-{algorithm}"] = value
    return web.Response(headers=headers)


async def upload_part_copy(ctx: Ctx) -> web.StreamResponse:
    number = _part_number(ctx)
    await _upload_for(ctx)
    bucket, entry = await source_entry(ctx)
    chunks = ranged_source(ctx, bucket, entry,
                           ctx.request.headers.get("x-amz-copy-source-range"))
    part = await ctx.g.upload_part(ctx.bucket, _upload_id(ctx), number, chunks)
    return xml_response(render("CopyPartResult", [
        ("LastModified", iso8601(part.last_modified)), ("ETag", quoted(part.etag)),
    ]))


async def complete_multipart_upload(ctx: Ctx) -> web.StreamResponse:
    await _upload_for(ctx)
    raw = await read_xml_body(ctx)
    doc = parse(raw, "CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for part in children(doc, "Part"):
        number, etag = text_of(part, "PartNumber"), text_of(part, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise MalformedXML("every <Part> needs a <PartNumber> and an <ETag>")
        parts.append((int(number), etag))
    if_match, if_none_match = conditional_write(ctx)
    entry = await ctx.g.complete_upload(ctx.bucket, _upload_id(ctx), parts,
                                        if_match=if_match, if_none_match=if_none_match)
    host = ctx.request.headers.get("Host", "")
    response = xml_response(render("CompleteMultipartUploadResult", [
        ("Location", f"http://{host}/{ctx.bucket}/{ctx.target.key}"),
        ("Bucket", ctx.bucket), ("Key", ctx.target.key), ("ETag", quoted(entry.etag)),
        *((f"Checksum{a.upper()}", v) for a, v in entry.checksums.items()),
    ]))
    return response


async def abort_multipart_upload(ctx: Ctx) -> web.StreamResponse:
    await _upload_for(ctx)
    await ctx.g.abort_upload(ctx.bucket, _upload_id(ctx))
    return web.Response(status=204)


async def list_parts(ctx: Ctx) -> web.StreamResponse:
    upload = await _upload_for(ctx)
    limit = require_int(ctx.query, "max-parts", 1000, 0, 1000)
    after = require_int(ctx.query, "part-number-marker", 0, 0, 10000)
    _, parts, more = await ctx.g.list_parts(ctx.bucket, upload.upload_id, after=after,
                                            limit=limit)
    body: list[tuple[str, object]] = [
        ("Bucket", ctx.bucket), ("Key", ctx.target.key), ("UploadId", upload.upload_id),
        ("Initiator", OWNER), ("Owner", OWNER), ("StorageClass", "STANDARD"),
        ("PartNumberMarker", after),
        ("NextPartNumberMarker", parts[-1].number if parts else after),
        ("MaxParts", limit), ("IsTruncated", more),
        *(("Part", [("PartNumber", p.number), ("LastModified", iso8601(p.last_modified)),
                    ("ETag", quoted(p.etag)), ("Size", p.size),
                    *((f"Checksum{a.upper()}", v) for a, v in p.checksums.items())])
          for p in parts),
    ]
    return xml_response(render("ListPartsResult", body))


async def list_multipart_uploads(ctx: Ctx) -> web.StreamResponse:
    await ctx.g.get_repository(ctx.bucket)
    limit = require_int(ctx.query, "max-uploads", 1000, 0, 1000)
    prefix = ctx.query.get("prefix", "")
    uploads, more = await ctx.g.list_uploads(ctx.bucket, limit=10_000)
    chosen = sorted((u for u in uploads if f"{u.branch}/{u.key}".startswith(prefix)),
                    key=lambda u: (f"{u.branch}/{u.key}", u.created))
    key_marker = ctx.query.get("key-marker", "")
    if key_marker:
        chosen = [u for u in chosen if f"{u.branch}/{u.key}" > key_marker]
    page = chosen[:limit]
    truncated = len(chosen) > limit or more
    body: list[tuple[str, object]] = [
        ("Bucket", ctx.bucket), ("KeyMarker", key_marker), ("UploadIdMarker", ""),
        ("NextKeyMarker", f"{page[-1].branch}/{page[-1].key}" if truncated and page else None),
        ("NextUploadIdMarker", page[-1].upload_id if truncated and page else None),
        ("MaxUploads", limit), ("IsTruncated", truncated),
        *(("Upload", [("Key", f"{u.branch}/{u.key}"), ("UploadId", u.upload_id),
                      ("Initiator", OWNER), ("Owner", OWNER), ("StorageClass", "STANDARD"),
                      ("Initiated", iso8601(u.created))]) for u in page),
    ]
    return xml_response(render("ListMultipartUploadsResult", body))
