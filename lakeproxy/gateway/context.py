"""What every S3 operation handler receives, and the helpers they share."""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web

from lakeproxy.auth.keys import KeyStore
from lakeproxy.auth.model import Principal
from lakeproxy.errors import InvalidArgument
from lakeproxy.gateway import sigv4
from lakeproxy.gateway.addressing import Target
from lakeproxy.gateway.errors import InvalidRequest, KeyTooLong
from lakeproxy.graveler import Entry, Graveler

MAX_KEY_BYTES = 1024  # of the path after `REF/`, in UTF-8, as S3 limits whole keys


class KeyLookup(Protocol):
    async def __call__(self, access_key_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """How the gateway presents itself."""

    region: str = "us-east-1"
    domain: str | None = None  # enables virtual-host addressing: BUCKET.DOMAIN
    allow_create_bucket: bool = True


@dataclass(frozen=True, slots=True)
class Services:
    graveler: Graveler
    lookup_secret: KeyLookup
    config: GatewayConfig
    keys: KeyStore  # access keys and their grants, shared by every process on the store


@dataclass(slots=True)
class Ctx:
    """One authenticated request, parsed once: handlers never re-parse the URL."""

    request: web.Request
    services: Services
    target: Target
    query: dict[str, str]
    request_id: str
    access_key_id: str
    auth: object  # the sigv4 AuthContext, needed to decode the body
    principal: Principal  # the caller's rights, checked before the handler runs

    @property
    def g(self) -> Graveler:
        return self.services.graveler

    @property
    def bucket(self) -> str:
        return self.target.bucket

    def ref_and_path(self) -> tuple[str, str]:
        """Split the S3 key `REF/path` into the ref and the object's path."""
        ref, sep, path = self.target.key.partition("/")
        if not sep or not path:
            raise InvalidArgument(
                f"object keys have the form REF/path (for example main/data/file.csv); "
                f"{self.target.key!r} names no path under a branch, tag or commit",
                key=self.target.key,
            )
        if len(path.encode()) > MAX_KEY_BYTES:
            raise KeyTooLong(
                f"Your key is too long: the path after {ref!r}/ is {len(path.encode())} bytes; "
                f"the maximum is {MAX_KEY_BYTES}", key=self.target.key[:64] + "...",
            )
        return ref, path


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]


def parse_query(raw_query: str) -> dict[str, str]:
    """Query parameters as the signature check read them; the first of repeated keys wins."""
    out: dict[str, str] = {}
    for key, value in sigv4.parse_query(raw_query):
        out.setdefault(key, value)
    return out


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def quoted(etag: str) -> str:
    return f'"{etag}"'


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match header value names `etag` (or is `*`)."""
    for candidate in header.split(","):
        value = candidate.strip()
        if value.startswith("W/"):
            value = value[2:]
        if value == "*" or value.strip('"') == etag:
            return True
    return False


# Standard headers S3 keeps with an object, stored in the entry's metadata under these
# capitalised names (user metadata names are lowercase, so the two never collide).
STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding",
                  "Content-Language", "Expires")
META_PREFIX = "x-amz-meta-"
MAX_METADATA_BYTES = 2048


def metadata_from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """User metadata (`x-amz-meta-*`, names lowercased) plus the stored standard headers."""
    meta: dict[str, str] = {}
    size = 0
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(META_PREFIX) and len(lower) > len(META_PREFIX):
            meta[lower[len(META_PREFIX):]] = value
            size += len(lower) - len(META_PREFIX) + len(value.encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(
            f"user metadata is {size} bytes; S3 allows at most {MAX_METADATA_BYTES}"
        )
    for name in STORED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "Content-Encoding":
            kept = [v.strip() for v in value.split(",") if v.strip().lower() != "aws-chunked"]
            value = ", ".join(kept)
            if not value:
                continue
        meta[name] = value
    return meta


def object_headers(entry: Entry, *, checksum_mode: bool = False,
                   ranged: bool = False) -> dict[str, str]:
    """The headers GET and HEAD answer with for an entry."""
    headers = {
        "ETag": quoted(entry.etag),
        "Last-Modified": http_date(entry.last_modified),
        "Content-Type": entry.content_type,
        "Accept-Ranges": "bytes",
    }
    for name, value in entry.metadata.items():
        if name in STORED_HEADERS:
            headers[name] = value
        else:
            headers[META_PREFIX + name] = value
    if checksum_mode and not ranged:
        for algorithm, value in entry.checksums.items():
            headers[f"x-amz-checksum-{algorithm}"] = value
            if value.endswith(tuple(f"-{n}" for n in range(1, 10001))):
                headers["x-amz-checksum-type"] = "COMPOSITE"
            else:
                headers["x-amz-checksum-type"] = "FULL_OBJECT"
    return headers


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a `Range: bytes=...` header; None to serve the whole object.

    Raises InvalidRange (416) when the range cannot be satisfied.
    """
    from lakeproxy.gateway.errors import InvalidRange

    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # S3 ignores ranges it does not support and sends the whole object
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0:
                raise InvalidRange("The requested range is not satisfiable")
            return max(0, size - suffix), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or start < 0:
        raise InvalidRange("The requested range is not satisfiable", size=size)
    if end <= start:
        return None
    return start, min(end, size)


def require_int(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, got {raw!r}") from None
    if value < lo:
        raise InvalidArgument(f"{name} must be at least {lo}")
    return min(value, hi)


def now_utc() -> datetime:
    return datetime.now(UTC)


def reject_version_id(query: Mapping[str, str]) -> None:
    """Accept `versionId=null` (S3's id for unversioned objects); refuse any other id."""
    version = query.get("versionId")
    if version is not None and version != "null":
        raise InvalidRequest(
            "this bucket does not keep S3 object versions (use branches, tags and commit ids "
            "in the key instead); only versionId=null is accepted"
        )
