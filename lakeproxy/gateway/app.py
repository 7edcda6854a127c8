"""The S3 gateway as an aiohttp application.

Every request goes through the same steps, in this order: parse the target once, authenticate
(no anonymous access), pick the operation from the route table, check the key's grant for it
(`operations.ACCESS`), then run it. Errors of any step become S3 XML errors through the one
wire table.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable

from aiohttp import ClientPayloadError, web

from lakeproxy.auth.model import Principal
from lakeproxy.errors import AccessDenied, LakeproxyError
from lakeproxy.gateway import sigv4
from lakeproxy.gateway.addressing import parse_target
from lakeproxy.gateway.context import Ctx, Handler, Services, parse_query
from lakeproxy.gateway.errors import IncompleteBody, MethodNotAllowed, NotImplementedOperation
from lakeproxy.gateway.operations import OPERATIONS, authorize
from lakeproxy.gateway.routing import find_operation, scope_of
from lakeproxy.gateway.xml import error_document
from lakeproxy.wire_errors import INTERNAL, wire_of

log = logging.getLogger("lakeproxy.gateway")

SERVICES = web.AppKey("services", Services)
# Request ids: a random prefix per process, then a counter (no system call per request).
_ID_PREFIX = uuid.uuid4().hex[:6].upper()
_ID_COUNTER = itertools.count(1)
REQUEST_ID = web.RequestKey("lakeproxy.request_id", str)
# The S3 operation a request was routed to (for metrics and the access log).
OPERATION = web.RequestKey("lakeproxy.operation", str)


@web.middleware
async def s3_errors(request: web.Request, handler: Handler) -> web.StreamResponse:  # type: ignore[type-arg]
    """Give every response a request id, and turn every error into an S3 XML error."""
    if request.match_info.handler is not dispatch:
        # A route mounted beside the gateway (the REST API, health and metrics) answers in its
        # own format.
        return await handler(request)  # type: ignore[arg-type]
    request_id = f"{_ID_PREFIX}{next(_ID_COUNTER):010X}"
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)  # type: ignore[arg-type]
    except web.HTTPException as exc:
        exc.headers["x-amz-request-id"] = request_id
        raise
    except LakeproxyError as exc:
        response = error_response(request, exc, request_id)
    except (ConnectionError, ClientPayloadError) as exc:
        if not _client_gone(request):
            log.exception("internal error on %s %s", request.method, request.path)
            response = error_response(request, exc, request_id)
        else:
            # The client went away mid-request (typically mid-upload): nothing was stored,
            # and nobody is left to answer. Not a server error.
            log.info("client disconnected during %s %s (%s)", request.method,
                     request.path, type(exc).__name__)
            response = error_response(
                request, IncompleteBody("the client disconnected before the body ended"),
                request_id)
    except Exception as exc:
        log.exception("internal error on %s %s", request.method, request.path)
        response = error_response(request, exc, request_id)
    if not response.prepared:
        response.headers["x-amz-request-id"] = request_id
        response.headers.setdefault("Server", "lakeproxy")
    return response


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def error_response(request: web.Request, exc: BaseException, request_id: str) -> web.Response:
    wire = wire_of(exc)
    if wire is INTERNAL:
        message = "We encountered an internal error. Please try again."
    else:
        message = str(exc)
    headers = {"x-amz-request-id": request_id, "Server": "lakeproxy"}
    context = getattr(exc, "context", {})
    if wire.status == 416 and "size" in context:
        headers["Content-Range"] = f"bytes */{context['size']}"
    if wire.status == 503:
        headers["Retry-After"] = "1"
    body = b"" if request.method == "HEAD" else error_document(
        wire.s3_code, message, request.path, request_id
    )
    return web.Response(status=wire.status, body=body, headers=headers,
                        content_type="application/xml")


async def dispatch(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    path, raw_query = sigv4.split_raw_target(request.raw_path)
    target = parse_target(path, request.headers.get("Host", ""), services.config.domain)
    principals: list[Principal] = []

    async def lookup_secret(access_key_id: str) -> str | None:
        # Read on every request (no cache): a revoked key fails at its next request.
        found = await services.keys.secret_of(access_key_id)
        if found is None:
            return None
        principals.append(found[1])
        return found[0]

    auth = await sigv4.authenticate(
        request.method, path, raw_query, request.headers,
        lookup_secret=lookup_secret,
        host_bucket=target.bucket if target.from_host else None,
    )
    if not principals or principals[-1].access_key_id != auth.access_key_id:
        raise AccessDenied("Access Denied: the request's access key could not be resolved")
    principal = principals[-1]
    query = parse_query(raw_query)
    scope = scope_of(target.bucket, target.key)
    operation = find_operation(scope, request.method, query, request.headers)
    if operation is None:
        raise MethodNotAllowed(
            f"the method {request.method} is not allowed against this resource"
        )
    request[OPERATION] = operation
    authorize(principal, operation, target.bucket)
    handler = OPERATIONS.get(operation.split(":", 1)[0])
    if handler is None:
        raise NotImplementedOperation(
            f"lakeproxy does not implement the S3 operation {operation}"
        )
    ctx = Ctx(request, services, target, query, request[REQUEST_ID], auth.access_key_id, auth,
              principal)
    ctx.query.setdefault("__operation__", operation)
    return await handler(ctx)


def create_gateway_app(
    services: Services, mount: Callable[[web.Application], None] | None = None
) -> web.Application:
    """The S3 gateway: one catch-all route, the middlewares, and the shared services.

    `mount` adds the routes served beside S3 (they are matched before the catch-all; their
    first path segments are reserved repository names, so no bucket can hide them).
    """
    app = web.Application(middlewares=[s3_errors], client_max_size=2 * 1024 * 1024)
    app[SERVICES] = services
    if mount is not None:
        mount(app)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
