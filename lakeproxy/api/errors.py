"""The REST API's errors: the one table from exception classes to HTTP statuses, and the JSON
error body every failed request answers with (`{"message": ...}`, as lakeFS clients expect).

Lookup walks the exception's MRO, so a subclass that is not listed inherits its parent's
status; anything unknown is a 500 (logged by the middleware, never shown to the caller).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from lakeproxy import errors


class ApiError(errors.LakeproxyError):
    """A protocol-level error of the REST API (not raised by the core)."""


class Unauthorized(ApiError):
    """Missing or wrong credentials."""


class Forbidden(ApiError):
    """The operation is never allowed (deleting the default branch, say)."""


class MethodNotAllowed(ApiError):
    pass


class RouteNotFound(ApiError):
    pass


class RangeNotSatisfiable(ApiError):
    """A `Range` that starts at or past the end of the object; `size` is in the context."""


class NotSupported(errors.InvalidArgument):
    """An option lakeFS offers that lakeproxy does not (presigned URLs, squash merges, ...)."""


class Gone(ApiError):
    """The object's entry exists but its bytes are missing from the block store."""


STATUS: dict[type[BaseException], int] = {
    errors.InvalidArgument: 400,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.MergeConflict: 409,
    errors.UncommittedChanges: 400,
    errors.NoChanges: 400,
    errors.ConcurrentUpdate: 429,
    errors.ReadOnlyRef: 403,
    errors.ProtectedBranch: 403,
    errors.PreconditionFailed: 412,
    errors.StorageError: 503,
    errors.AccessDenied: 403,
    Unauthorized: 401,
    Forbidden: 403,
    MethodNotAllowed: 405,
    RouteNotFound: 404,
    RangeNotSatisfiable: 416,
    Gone: 410,
}

INTERNAL_MESSAGE = "internal server error: the server log has the details"


def status_of(exc: BaseException) -> int:
    """The HTTP status of an exception: the entry of its nearest listed class, else 500."""
    for cls in type(exc).__mro__:
        found = STATUS.get(cls)
        if found is not None:
            return found
    return 500


def json_response(body: object, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status, content_type="application/json", headers=headers,
    )


def error_response(exc: BaseException, *, head: bool = False) -> web.Response:
    """The JSON error answer for `exc` (no body for HEAD requests)."""
    status = status_of(exc)
    message = INTERNAL_MESSAGE if status == 500 else str(exc)
    headers = {"X-Content-Type-Options": "nosniff"}
    context = getattr(exc, "context", {})
    if status == 416 and "size" in context:
        headers["Content-Range"] = f"bytes */{context['size']}"
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="lakeproxy"'
    if status in (429, 503):
        headers["Retry-After"] = "1"
    body: dict[str, object] = {"message": message}
    if isinstance(exc, errors.MergeConflict):
        body["reference"] = ""
        body["conflicts"] = list(exc.conflicts)
    if head:
        return web.Response(status=status, headers={**headers,
                                                    "Content-Type": "application/json"})
    return json_response(body, status, headers)
