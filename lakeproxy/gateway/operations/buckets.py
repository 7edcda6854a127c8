"""Service- and bucket-level operations: a bucket is a repository."""

from __future__ import annotations

from aiohttp import web

from lakeproxy.gateway.context import Ctx
from lakeproxy.gateway.errors import BucketNotEmpty, InvalidBucketName, NotImplementedOperation
from lakeproxy.gateway.routing import UNSET_BUCKET_CONFIG
from lakeproxy.gateway.xml import error_document, iso8601, render

OWNER = [("ID", "lakeproxy"), ("DisplayName", "lakeproxy")]


def xml_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/xml")


async def list_buckets(ctx: Ctx) -> web.StreamResponse:
    repos = []
    after = ""
    while True:
        page = await ctx.g.list_repositories(after=after, limit=1000)
        repos += page
        if len(page) < 1000:
            break
        after = page[-1].name
    buckets = [("Bucket", [("Name", r.name), ("CreationDate", iso8601(r.creation_date))])
               for r in repos if ctx.principal.sees(r.name)]
    return xml_response(render("ListAllMyBucketsResult",
                               [("Owner", OWNER), ("Buckets", buckets)]))


async def head_bucket(ctx: Ctx) -> web.StreamResponse:
    await ctx.g.get_repository(ctx.bucket)
    return web.Response(headers={"x-amz-bucket-region": ctx.services.config.region})


async def get_bucket_location(ctx: Ctx) -> web.StreamResponse:
    await ctx.g.get_repository(ctx.bucket)
    region = ctx.services.config.region
    return xml_response(render("LocationConstraint", []) if region == "us-east-1"
                        else _location(region))


def _location(region: str) -> bytes:
    from xml.etree.ElementTree import Element, tostring

    from lakeproxy.gateway.xml import S3_NS

    element = Element("LocationConstraint", xmlns=S3_NS)
    element.text = region
    return tostring(element, encoding="UTF-8", xml_declaration=True)


async def get_bucket_versioning(ctx: Ctx) -> web.StreamResponse:
    # Never enabled: branches, tags and commits are how lakeproxy versions data.
    await ctx.g.get_repository(ctx.bucket)
    return xml_response(render("VersioningConfiguration", []))


async def get_bucket_acl(ctx: Ctx) -> web.StreamResponse:
    await ctx.g.get_repository(ctx.bucket)
    grant = [("Grantee", [("ID", "lakeproxy"), ("DisplayName", "lakeproxy")]),
             ("Permission", "FULL_CONTROL")]
    return xml_response(render("AccessControlPolicy",
                               [("Owner", OWNER), ("AccessControlList", [("Grant", grant)])]))


async def empty_config(ctx: Ctx) -> web.StreamResponse:
    """Configurations that exist on every bucket and are empty here (logging, notification…)."""
    await ctx.g.get_repository(ctx.bucket)
    root = {
        "GetBucketLogging": "BucketLoggingStatus",
        "GetBucketNotification": "NotificationConfiguration",
        "GetBucketAccelerate": "AccelerateConfiguration",
    }.get(ctx.query["__operation__"])
    if root is None:  # GetBucketRequestPayment
        return xml_response(render("RequestPaymentConfiguration", [("Payer", "BucketOwner")]))
    return xml_response(render(root, []))


async def unset_config(ctx: Ctx) -> web.StreamResponse:
    await ctx.g.get_repository(ctx.bucket)
    name = ctx.query["__operation__"].split(":", 1)[1]
    code, message = UNSET_BUCKET_CONFIG[name]
    body = error_document(code, message, ctx.request.path, ctx.request_id,
                          {"BucketName": ctx.bucket})
    return xml_response(body, status=404)


async def create_bucket(ctx: Ctx) -> web.StreamResponse:
    if not ctx.services.config.allow_create_bucket:
        raise NotImplementedOperation(
            "creating buckets through S3 is disabled on this server; create a repository "
            "with `lake repo create` instead"
        )
    from lakeproxy.errors import InvalidArgument

    try:
        await ctx.g.create_repository(ctx.bucket)
    except InvalidArgument as e:
        if "repository name" in str(e):
            raise InvalidBucketName(str(e)) from None
        raise
    return web.Response(headers={"Location": f"/{ctx.bucket}"})


async def delete_bucket(ctx: Ctx) -> web.StreamResponse:
    g = ctx.g
    repo = await g.get_repository(ctx.bucket)
    for branch in await g.list_branches(repo.name, limit=1000):
        async for _ in g.iter_entries(repo.name, branch.name):
            raise BucketNotEmpty(
                f"The bucket you tried to delete is not empty: branch {branch.name!r} has "
                "objects", repository=repo.name,
            )
    await g.delete_repository(repo.name)
    return web.Response(status=204)


async def not_implemented(ctx: Ctx) -> web.StreamResponse:
    raise NotImplementedOperation(
        "A header or query you provided implies functionality that is not implemented",
        operation=ctx.query.get("__operation__"),
    )
