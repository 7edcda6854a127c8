"""The REST API's route table: every route names its handler, the permission it needs, its
query parameters and its body. The auth middleware, the query parser and the OpenAPI document
all read this one table, so a route cannot exist without a declared permission."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from lakeproxy.api.context import Call


class Permission(enum.Enum):
    """What a caller needs for a route. Repository permissions apply to `{repository}`."""

    PUBLIC = "public"  # no credentials at all (health check, login)
    AUTHENTICATED = "authenticated"  # any valid key; the handler filters what it shows
    REPO_READ = "repository:read"
    REPO_WRITE = "repository:write"
    REPO_ADMIN = "repository:admin"
    GLOBAL_ADMIN = "admin"  # server-wide: key management, creating repositories


class ParamKind(enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ARRAY = "array"  # repeated `name=a&name=b`


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter. Integers are checked against [minimum, maximum]."""

    name: str
    kind: ParamKind = ParamKind.STRING
    required: bool = False
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""
    enum: tuple[str, ...] = ()


class Body(enum.Enum):
    NONE = "none"
    RAW = "raw"  # an object's bytes (raw or multipart/form-data `content`)
    STAGING = "staging"


Handler = Callable[["Call"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the API.

    `body` is a pydantic model class for JSON bodies, or a `Body` marker. `responses` maps a
    status to the name of a component schema (None: no body; "text": a plain string).
    """

    method: str
    path: str
    operation_id: str
    handler: Handler
    permission: Permission
    query: tuple[Param, ...] = ()
    body: Any = Body.NONE
    body_required: bool = True
    responses: Mapping[int, str | None] = field(default_factory=dict)
    tag: str = ""
    summary: str = ""


# Shared parameters.
AFTER = Param("after", description="return items after this value")
AMOUNT = Param("amount", ParamKind.INTEGER, default=100, minimum=-1, maximum=1000,
               description="how many items to return (-1 or 0: the default of 100)")
PREFIX = Param("prefix", description="return items prefixed with this value")
DELIMITER = Param("delimiter", description="delimiter used to group common prefixes by")
PAGING = (PREFIX, AFTER, AMOUNT)
FORCE = Param("force", ParamKind.BOOLEAN, default=False)
PATH = Param("path", required=True, description="relative to the ref")
