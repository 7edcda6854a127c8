"""The management REST API (lakeFS API v1 compatible) as an aiohttp application.

Every request goes through the same steps: the error middleware (any exception becomes a JSON
error through the one status table), then the route's view, which authenticates (every route
but the public ones), checks the route's declared permission, parses the query and body as
the route declares them, and only then runs the handler.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import ClientPayloadError, web

from lakeproxy.api.auth import authenticate
from lakeproxy.api.context import Call, parse_query, read_json
from lakeproxy.api.errors import MethodNotAllowed, RouteNotFound, error_response
from lakeproxy.api.routes import ROUTES
from lakeproxy.api.routing import Permission, Route
from lakeproxy.auth.model import Level, Principal
from lakeproxy.errors import LakeproxyError
from lakeproxy.gateway.context import Services

log = logging.getLogger("lakeproxy.api")

SERVICES = web.AppKey("api_services", Services)
ROUTE_OF = "lakeproxy_api_route"  # attribute naming the Route a view serves

_LEVEL = {
    Permission.REPO_READ: Level.READ,
    Permission.REPO_WRITE: Level.WRITE,
    Permission.REPO_ADMIN: Level.ADMIN,
}

View = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: View) -> web.StreamResponse:
    """Turn every error into `{"message": ...}` with the status from the one table."""
    head = request.method == "HEAD"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_http_error(exc), head=head)
    except LakeproxyError as exc:
        return error_response(exc, head=head)
    except (ConnectionError, ClientPayloadError) as exc:
        transport = request.transport
        if transport is None or transport.is_closing():
            log.info("client disconnected during %s %s", request.method, request.path)
        else:
            log.exception("internal error on %s %s", request.method, request.path)
        return error_response(exc, head=head)
    except Exception as exc:
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(exc, head=head)
    if not response.prepared:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _http_error(exc: web.HTTPException) -> LakeproxyError:
    if exc.status == 405:
        return MethodNotAllowed(f"the method is not allowed here: {exc.reason}")
    if exc.status == 413:
        from lakeproxy.errors import InvalidArgument

        return InvalidArgument("the request body is too large")
    return RouteNotFound(f"no such API route ({exc.status} {exc.reason})")


async def authorize(call: Call) -> None:
    """Raise AccessDenied unless the caller holds the route's permission."""
    permission = call.route.permission
    principal = call.principal
    if permission is Permission.PUBLIC or permission is Permission.AUTHENTICATED:
        return
    assert principal is not None
    if permission is Permission.GLOBAL_ADMIN:
        principal.require(None, Level.ADMIN)
        return
    principal.require(call.request.match_info["repository"], _LEVEL[permission])


def make_view(route: Route) -> View:
    """The aiohttp handler of a route: authenticate, authorize, parse, then run it."""

    async def view(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        principal: Principal | None = None
        if route.permission is not Permission.PUBLIC:
            principal = await authenticate(request, services)
        call = Call(request, services, route, principal, {})
        await authorize(call)
        call.query = parse_query(request.raw_path.partition("?")[2], route.query)
        if isinstance(route.body, type):
            call.body = await read_json(request, route.body, required=route.body_required)
        return await route.handler(call)

    setattr(view, ROUTE_OF, route)
    return view


async def _unmatched(call: Call) -> web.StreamResponse:
    path = call.request.match_info.get("tail", "")
    methods = sorted({r.method for r in ROUTES if _same_shape(r.path, "/" + path)})
    if methods:
        raise MethodNotAllowed(
            f"{call.request.method} is not allowed on /api/v1/{path}; use {', '.join(methods)}"
        )
    raise RouteNotFound(f"no such API route: {call.request.method} /api/v1/{path}")


def _same_shape(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x.startswith("{") or x == y for x, y in zip(a, b,
                                                                                  strict=True))


UNMATCHED = Route("*", "/{tail:.*}", "unmatched", _unmatched, Permission.AUTHENTICATED)


def create_api_app(services: Services) -> web.Application:
    """The REST API, to be mounted at `/api/v1` (`app.add_subapp("/api/v1", ...)`)."""
    app = web.Application(middlewares=[json_errors])
    app[SERVICES] = services
    for route in ROUTES:
        app.router.add_route(route.method, route.path, make_view(route), name=route.operation_id)
    app.router.add_route(UNMATCHED.method, UNMATCHED.path, make_view(UNMATCHED))
    return app
