"""Reading a PostgreSQL metadata URL: the connection string, the schema and the pool size.

A URL is libpq's (``postgresql://user@host:5432/db?sslmode=require``) plus three parameters
lakeproxy reads itself and removes before connecting:

- ``schema=NAME``: the PostgreSQL schema that holds the store (created when missing). Without
  it, the first entry of a ``search_path`` set through ``options=-csearch_path%3DNAME`` is
  used, and ``public`` otherwise.
- ``pool_min=N`` and ``pool_max=N``: how many connections the process keeps open at least,
  and opens at most.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lakeproxy.errors import InvalidArgument

SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "public"
DEFAULT_POOL_MIN = 2
DEFAULT_POOL_MAX = 10
_MAX_POOL = 1000
_MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where a PostgreSQL metadata store lives and how many connections it may use."""

    conninfo: str
    schema: str
    pool_min: int
    pool_max: int

    @property
    def display(self) -> str:
        """The server and database, without credentials, for messages."""
        params = conninfo_to_dict(self.conninfo)
        where = f"{params.get('host', 'localhost')}:{params.get('port', '5432')}"
        return f"{where}/{params.get('dbname', '')} schema {self.schema}"


def is_postgres_url(url: str) -> bool:
    """True when `url` names a PostgreSQL server (``postgresql://`` or ``postgres://``)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme in SCHEMES


def _split_options(options: str) -> list[str]:
    """Split libpq `options` as the server does: on whitespace, with backslash escapes."""
    tokens: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


def search_path_schema(options: str) -> str | None:
    """The first schema of a ``search_path`` set in libpq ``options``, if any.

    Both ``-c search_path=x`` and ``--search_path=x`` forms are understood (a space inside a
    value is escaped with a backslash); ``$user`` entries are skipped, and double quotes around
    a name are removed.
    """
    tokens = _split_options(options)
    settings: list[str] = []
    for i, token in enumerate(tokens):
        if token == "-c" and i + 1 < len(tokens):
            settings.append(tokens[i + 1])
        elif (token.startswith("-c") and len(token) > 2) or token.startswith("--"):
            settings.append(token[2:])
    found: str | None = None
    for setting in settings:
        name, _, value = setting.partition("=")
        if name.strip().lower().replace("-", "_") != "search_path":
            continue
        for entry in value.split(","):
            entry = entry.strip()
            if entry.startswith('"') and entry.endswith('"') and len(entry) >= 2:
                entry = entry[1:-1].replace('""', '"')
            if entry and entry != "$user":
                found = entry
                break
    return found


def _pool_size(raw: str, what: str) -> int:
    try:
        size = int(raw)
    except ValueError:
        raise InvalidArgument(f"{what} must be a whole number, not {raw!r}") from None
    if not 1 <= size <= _MAX_POOL:
        raise InvalidArgument(f"{what} must be between 1 and {_MAX_POOL}, not {size}")
    return size


def validate_schema(schema: str) -> str:
    """Check a schema name: 1 to 63 bytes, no NUL. Raises InvalidArgument."""
    if not schema or len(schema.encode()) > _MAX_IDENTIFIER or "\x00" in schema:
        raise InvalidArgument(
            f"invalid PostgreSQL schema name {schema!r}: 1 to {_MAX_IDENTIFIER} bytes"
        )
    return schema


def parse_postgres_url(
    url: str, *, pool_min: int | None = None, pool_max: int | None = None
) -> PostgresTarget:
    """Split a metadata URL into a libpq connection string and lakeproxy's own settings.

    Args:
        url: ``postgresql://…`` or ``postgres://…``.
        pool_min: Connections kept open, unless the URL says ``pool_min=``.
        pool_max: Most connections open at once, unless the URL says ``pool_max=``.

    Raises:
        InvalidArgument: The URL is not a PostgreSQL URL or a parameter is invalid.
    """
    if not is_postgres_url(url):
        raise InvalidArgument("a PostgreSQL metadata URL starts with postgresql:// or postgres://")
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    own = {name: value for name, value in query if name in ("schema", "pool_min", "pool_max")}
    rest = [(name, value) for name, value in query if name not in own]
    libpq_url = urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode(rest, quote_via=urllib.parse.quote))
    )
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.ProgrammingError as exc:
        raise InvalidArgument(f"invalid PostgreSQL metadata URL: {exc}") from None
    schema = own.get("schema") or search_path_schema(str(params.get("options") or ""))
    params.setdefault("application_name", "lakeproxy")
    low = _pool_size(own["pool_min"], "pool_min") if "pool_min" in own else pool_min
    high = _pool_size(own["pool_max"], "pool_max") if "pool_max" in own else pool_max
    high = high if high is not None else max(DEFAULT_POOL_MAX, low or 0)
    low = low if low is not None else min(DEFAULT_POOL_MIN, high)
    if low > high:
        raise InvalidArgument(f"pool_min ({low}) is larger than pool_max ({high})")
    return PostgresTarget(
        make_conninfo(**params),  # type: ignore[arg-type]
        validate_schema(schema or DEFAULT_SCHEMA),
        low,
        high,
    )
