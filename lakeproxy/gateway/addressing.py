"""Where a request points: bucket (repository) and key, parsed once from the raw URL.

The raw path is split and percent-decoded to bytes by hand: aiohttp's decoded `path` leaves
invalid UTF-8 percent-encoded (so `%25ff` and `%ff` would collide) and turns `%2F` into `/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from lakeproxy.gateway.errors import InvalidURI


@dataclass(frozen=True, slots=True)
class Target:
    """The bucket and key a request names ("" when absent)."""

    bucket: str
    key: str
    from_host: bool = False  # virtual-host addressing: the bucket came from the Host header


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def decode_component(raw: str) -> str:
    """Percent-decode one URL component to strict UTF-8; NUL bytes and malformed escapes
    (a `%` not followed by two hex digits) are refused, as the signature check does."""
    if _BAD_ESCAPE.search(raw):
        raise InvalidURI(f"the request path contains a malformed %-escape: {raw[:100]!r}")
    data = unquote_to_bytes(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI(f"the request path is not valid UTF-8: {raw[:100]!r}") from None
    if "\x00" in text:
        raise InvalidURI("the request path contains a NUL character")
    return text


def parse_target(raw_path: str, host: str, domain: str | None) -> Target:
    """Bucket and key from the raw path, or from the Host for virtual-host addressing.

    With a configured `domain`, `Host: BUCKET.DOMAIN[:port]` names the bucket and the whole
    path is the key; otherwise the first path segment is the bucket.
    """
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        raise InvalidURI("the request path must start with '/'")
    if domain:
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        suffix = "." + domain.lower()
        if hostname.lower().endswith(suffix):
            bucket = hostname[: -len(suffix)]
            return Target(bucket, decode_component(path[1:]), from_host=True)
    bucket_raw, _, key_raw = path[1:].partition("/")
    return Target(decode_component(bucket_raw), decode_component(key_raw))
