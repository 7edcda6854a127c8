"""What a REST handler receives (`Call`), and the parsing every handler shares: the query
string (strict UTF-8, typed by the route's declaration), JSON bodies (closed schemas), object
paths and the pagination envelope; and the serializers of the big listings, which build
their JSON straight from encoded entries and encode it with orjson."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pydantic
from aiohttp import web

from lakeproxy.api.routing import Param, ParamKind, Route
from lakeproxy.auth.model import Principal
from lakeproxy.errors import InvalidArgument
from lakeproxy.gateway.context import Services
from lakeproxy.graveler import Graveler
from lakeproxy.graveler.ids import validate_key
from lakeproxy.graveler.objects import listed_fields

MAX_PER_PAGE = 1000
DEFAULT_AMOUNT = 100
MAX_JSON_BODY = 1024 * 1024


@dataclass(slots=True)
class Call:
    """One authenticated request to the API, parsed once."""

    request: web.Request
    services: Services
    route: Route
    principal: Principal | None
    query: dict[str, Any]
    body: Any = None

    @property
    def g(self) -> Graveler:
        return self.services.graveler

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def repository(self) -> str:
        return self.request.match_info["repository"]

    @property
    def committer(self) -> str:
        return self.principal.access_key_id if self.principal is not None else ""


def parse_query(raw: str, params: Sequence[Param]) -> dict[str, Any]:
    """The route's declared parameters, typed; undeclared parameters are ignored.

    Raises InvalidArgument for bad UTF-8, a missing required parameter, or a value of the
    wrong type or out of range.
    """
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument("the query string is not valid UTF-8") from None
    except ValueError as e:
        raise InvalidArgument(f"malformed query string: {e}") from None
    given: dict[str, list[str]] = {}
    for key, value in pairs:
        given.setdefault(key, []).append(value)
    out: dict[str, Any] = {}
    for param in params:
        values = given.get(param.name)
        if not values:
            if param.required:
                raise InvalidArgument(f"the query parameter {param.name!r} is required")
            out[param.name] = [] if param.kind is ParamKind.ARRAY else param.default
            continue
        out[param.name] = _typed(param, values)
    return out


def _typed(param: Param, values: list[str]) -> Any:
    if param.kind is ParamKind.ARRAY:
        for value in values:
            _no_nul(param.name, value)
        return values
    value = values[0]
    _no_nul(param.name, value)
    if param.kind is ParamKind.BOOLEAN:
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0", ""):
            return False
        raise InvalidArgument(f"{param.name} must be true or false, got {value!r}")
    if param.kind is ParamKind.INTEGER:
        try:
            number = int(value.strip())
        except ValueError:
            raise InvalidArgument(f"{param.name} must be an integer, got {value!r}") from None
        if param.minimum is not None and number < param.minimum:
            raise InvalidArgument(f"{param.name} must be at least {param.minimum}, got {number}")
        if param.maximum is not None and number > param.maximum:
            raise InvalidArgument(f"{param.name} must be at most {param.maximum}, got {number}")
        return number
    if param.enum and value not in param.enum:
        raise InvalidArgument(
            f"{param.name} must be one of {', '.join(param.enum)}; got {value!r}"
        )
    return value


def _no_nul(name: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidArgument(f"{name} must not contain a NUL character")


async def read_json(request: web.Request, model: type[pydantic.BaseModel] | None,
                    *, required: bool = True) -> Any:
    """The request's JSON body validated against `model` (unknown fields are refused)."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise InvalidArgument(f"the JSON body is larger than {MAX_JSON_BODY} bytes")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise InvalidArgument(f"the JSON body is larger than {MAX_JSON_BODY} bytes")
    if not raw.strip():
        if required:
            raise InvalidArgument("this operation needs a JSON body")
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidArgument("the request body is not valid UTF-8") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"malformed JSON body: {e}") from None
    if model is None:
        return data
    if not isinstance(data, dict):
        raise InvalidArgument("the JSON body must be an object")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise InvalidArgument(f"invalid request body: {describe(e)}") from None


def describe(error: pydantic.ValidationError) -> str:
    """A short, readable summary of a validation error (at most three problems)."""
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        kind = item["type"]
        if kind == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif kind == "missing":
            parts.append(f"field {where!r} is required")
        else:
            parts.append(f"{where}: {item['msg']}")
    more = len(error.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def object_path(value: str, name: str = "path") -> str:
    """Check an object path from a query parameter: UTF-8, no NUL, no `..` segment."""
    if "\x00" in value:
        raise InvalidArgument(f"{name} must not contain a NUL character")
    if any(part == ".." for part in value.split("/")):
        raise InvalidArgument(f"{name} {value!r} must not contain a '..' segment")
    validate_key(value)
    return value


def amount_of(query: Mapping[str, Any]) -> int:
    """The page size: `amount` (already range-checked); -1 and 0 mean the default."""
    amount = query.get("amount")
    if amount is None or amount <= 0:
        return DEFAULT_AMOUNT
    return min(int(amount), MAX_PER_PAGE)


def page(results: list[Any], has_more: bool, next_offset: str) -> dict[str, Any]:
    """The pagination envelope. `next_offset` is the sort key of the last result."""
    if has_more and not next_offset:
        raise AssertionError("a page with more results must say where to continue")
    return {
        "pagination": {
            "has_more": has_more,
            "next_offset": next_offset if has_more else "",
            "results": len(results),
            "max_per_page": MAX_PER_PAGE,
        },
        "results": results,
    }


def json_ok(body: object, status: int = 200) -> web.Response:
    """A JSON answer encoded with orjson (UTF-8, compact: what `json_response` writes)."""
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")


def listed_objects(namespace: str, keys: Sequence[str], values: Sequence[bytes | None], *,
                   user_metadata: bool = True) -> list[dict[str, Any]]:
    """`ObjectStats` of a listing page (`Graveler.list_raw`), common prefixes included.

    The same objects `schemas.object_stats` and `schemas.common_prefix_stats` build, read
    from the encoded entries directly.
    """
    base = namespace.rstrip("/") + "/"
    out: list[dict[str, Any]] = []
    append = out.append
    for key, raw in zip(keys, values, strict=True):
        if raw is None:
            append({"path": key, "path_type": "common_prefix", "physical_address": "",
                    "checksum": "", "mtime": 0})
            continue
        address, size, etag, mtime, content_type, metadata = listed_fields(raw)
        append({
            "path": key,
            "path_type": "object",
            "physical_address": address if "://" in address else base + address,
            "checksum": etag,
            "size_bytes": size,
            "mtime": int(mtime),
            "metadata": metadata if user_metadata else {},
            "content_type": content_type,
        })
    return out


def raw_diff_item(path: str, kind: str, left: bytes | None, right: bytes | None,
                  include_right: bool) -> dict[str, Any]:
    """A `Diff` object of one change whose entries are still encoded."""
    item: dict[str, Any] = {"type": kind, "path": path, "path_type": "object"}
    side = right or left
    if side:
        _address, size, etag, mtime, content_type, metadata = listed_fields(side)
        item["size_bytes"] = size
        if include_right and right:
            item["right"] = {"checksum": etag, "mtime": int(mtime),
                             "content_type": content_type, "metadata": metadata}
    return item
