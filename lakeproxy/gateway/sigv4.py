"""AWS Signature Version 4 authentication for the S3 gateway.

One entry point, :func:`authenticate`, checks every signed request: the ``Authorization``
header form and the presigned query form. It returns an :class:`AuthContext` that the body
decoder (:mod:`lakeproxy.gateway.body`) needs to verify the payload (hex SHA-256, chunk
signatures, trailers).

The rules followed are the ones in ``S3_SECURITY.md`` section 2.2:

* the canonical URI is rebuilt from the *raw* path: strict percent-decoding, strict UTF-8,
  no NUL, then re-encoded once with the AWS rules (S3 does not normalise paths);
* the canonical query is rebuilt from the *raw* query: ``+`` means a space (form encoding,
  as Go clients and servers use it), bare keys become ``k=``, pairs are sorted by encoded
  name then value, ``X-Amz-Signature`` is dropped, a space is re-encoded ``%20``;
* headers are lowercased, trimmed, whitespace collapsed, duplicates comma-joined;
* SigV2 (``Authorization: AWS ...`` and ``?AWSAccessKeyId&Signature&Expires``) is handed to
  :mod:`lakeproxy.gateway.sigv2` from here, so this stays the one entry point; SigV4a,
  anonymous requests and unknown payload modes are rejected (fail closed).

Nothing here logs, and no exception message carries a secret or a signing key.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import quote

from lakeproxy.gateway.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidRequest,
    InvalidURI,
    NotImplementedOperation,
    RequestTimeTooSkewed,
    S3ProtocolError,
    SignatureDoesNotMatch,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4A_ALGORITHM = "AWS4-ECDSA-P256-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_CLOCK_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 604800  # seven days, in seconds
SERVICE = "s3"
TERMINATOR = "aws4_request"

ONE_MECHANISM = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
    "query string parameter or the Authorization header should be specified"
)

_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_SCOPE_DATE_RE = re.compile(r"[0-9]{8}")
_REGION_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
_HEADER_NAME_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


class HeaderMultiMap(Protocol):
    """What :func:`authenticate` needs from request headers (``multidict.CIMultiDictProxy``).

    Lookups must be case-insensitive; ``getall`` returns every value of a repeated header in
    the order received; iterating yields the names (SigV2 signs every ``x-amz-*`` header).
    """

    def getall(self, key: str, default: list[str], /) -> list[str]: ...

    def __iter__(self) -> Iterator[str]: ...


class PayloadMode(enum.Enum):
    """What ``x-amz-content-sha256`` (or the presigned equivalent) announces for the body."""

    SIGNED_SHA256 = "SHA256"  # a hex SHA-256 of the whole body: check at EOF
    UNSIGNED = "UNSIGNED-PAYLOAD"
    STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"

    @property
    def streaming(self) -> bool:
        return self.value.startswith("STREAMING-")

    @property
    def signed_chunks(self) -> bool:
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)

    @property
    def has_trailer(self) -> bool:
        return self in (
            PayloadMode.STREAMING_UNSIGNED_TRAILER,
            PayloadMode.STREAMING_SIGNED_TRAILER,
        )


@dataclass(frozen=True)
class AuthContext:
    """The outcome of a successful :func:`authenticate`.

    ``signing_key`` and ``seed_signature`` are what the body decoder needs to verify chunk and
    trailer signatures; they are kept out of ``repr``.
    """

    access_key_id: str
    region: str
    amz_date: str  # yyyymmddThhmmssZ, the timestamp of the string to sign
    scope: str  # yyyymmdd/region/s3/aws4_request
    signing_key: bytes = field(repr=False)
    seed_signature: str = field(repr=False)
    payload_mode: PayloadMode
    expected_sha256: str | None  # lowercase hex when payload_mode is SIGNED_SHA256
    decoded_length: int | None  # x-amz-decoded-content-length
    trailer: str | None  # x-amz-trailer, lowercased
    presigned: bool = False
    signed_headers: frozenset[str] = frozenset()
    signature_version: int = 4  # 2 for SigV2: region, scope, signing_key, seed are then empty


SecretLookup = Callable[[str], Awaitable[str | None]]


# --------------------------------------------------------------------------------------------
# Raw path and query parsing (use these in the router too, so routing and signing agree)


def split_raw_target(raw_target: str) -> tuple[str, str]:
    """Split aiohttp's ``request.raw_path`` (which includes the query) into path and query."""
    path, _, query = raw_target.partition("?")
    path, _, _fragment = path.partition("#")
    return path, query.partition("#")[0]


_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]*")


def _check_ascii(raw: str, what: str) -> None:
    if not _VISIBLE_ASCII.fullmatch(raw):
        raise InvalidURI(f"the request {what} contains a character that must be %-encoded")


def _pct_decode(raw: str, what: str) -> bytes:
    """Strict percent-decoding to bytes: every ``%`` must start a two-hex-digit escape."""
    if "%" not in raw:
        return raw.encode("ascii")
    out = bytearray()
    i = 0
    while True:
        j = raw.find("%", i)
        if j < 0:
            out += raw[i:].encode("ascii")
            return bytes(out)
        out += raw[i:j].encode("ascii")
        pair = raw[j + 1 : j + 3]
        if len(pair) != 2 or not (pair[0] in _HEXDIGITS and pair[1] in _HEXDIGITS):
            raise InvalidURI(f"the request {what} contains a malformed %-escape")
        out.append(int(pair, 16))
        i = j + 3


def _utf8(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURI(f"the request {what} does not decode to valid UTF-8") from None
    if "\x00" in text:
        raise InvalidURI(f"the request {what} contains a NUL character")
    return text


def decode_path(raw_path: str) -> str:
    """Decode a raw (on-the-wire) request path: strict %-decoding, strict UTF-8, no NUL.

    Dot segments and ``//`` are kept as they are: S3 keys may contain them.
    """
    if not raw_path.startswith("/"):
        raise InvalidURI("the request path must start with '/'")
    _check_ascii(raw_path, "path")
    return _utf8(_pct_decode(raw_path, "path"), "path")


def canonical_uri(raw_path: str) -> str:
    """The SigV4 canonical URI for S3: decode once, encode once, no normalisation."""
    return quote(decode_path(raw_path), safe="/")


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Parse a raw query string into (name, value) pairs, in order.

    ``+`` is a space (form encoding); a bare ``k`` is ``("k", "")``; empty segments are
    skipped. Strict %-decoding and strict UTF-8, like the path.
    """
    if not raw_query:
        return []
    _check_ascii(raw_query, "query")
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (
                _utf8(_pct_decode(name.replace("+", " "), "query"), "query"),
                _utf8(_pct_decode(value.replace("+", " "), "query"), "query"),
            )
        )
    return pairs


def _aws_quote(text: str) -> str:
    return quote(text, safe="")


def canonical_query(pairs: Sequence[tuple[str, str]], *, drop_signature: bool = False) -> str:
    encoded = sorted(
        (_aws_quote(k), _aws_quote(v))
        for k, v in pairs
        if not (drop_signature and k == "X-Amz-Signature")
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


# --------------------------------------------------------------------------------------------
# Headers


def header_values(headers: HeaderMultiMap, name: str) -> list[str]:
    values = headers.getall(name, [])
    for value in values:
        if "\r" in value or "\n" in value:
            raise InvalidRequest(f"header {name} contains a line break (obsolete line folding)")
    return values


def single_header(headers: HeaderMultiMap, name: str) -> str | None:
    values = header_values(headers, name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"header {name} must not be repeated")
    return values[0].strip()


def _canonical_headers(headers: HeaderMultiMap, signed: Sequence[str]) -> str:
    lines = []
    for name in signed:
        values = header_values(headers, name)
        if not values:
            raise AccessDenied(
                f"header {name} is listed in SignedHeaders but missing from the request"
            )
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def _parse_signed_headers(value: str, error: type[S3ProtocolError]) -> list[str]:
    names = value.split(";")
    if not value or any(not n or not _HEADER_NAME_RE.fullmatch(n) for n in names):
        raise error("SignedHeaders must be a ';'-separated list of lowercase header names")
    if len(set(names)) != len(names):
        raise error("SignedHeaders lists a header twice")
    return sorted(names)


# --------------------------------------------------------------------------------------------
# Dates, credentials, keys


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def _parse_amz_date(value: str) -> datetime | None:
    if not _AMZ_DATE_RE.fullmatch(value):
        return None
    try:  # the format is fixed (checked above): no need for strptime's generality
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]),
                        int(value[11:13]), int(value[13:15]), tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Credential:
    access_key_id: str
    date: str
    region: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{SERVICE}/{TERMINATOR}"


def _parse_credential(value: str, error: type[S3ProtocolError]) -> _Credential:
    parts = value.split("/")
    if len(parts) != 5:
        raise error("the Credential must be <access-key>/<yyyymmdd>/<region>/s3/aws4_request")
    access_key, date, region, service, terminator = parts
    if not access_key:
        raise error("the Credential has an empty access key id")
    if not _SCOPE_DATE_RE.fullmatch(date):
        raise error("the Credential date must be yyyymmdd")
    if not _REGION_RE.fullmatch(region):
        raise error("the Credential region is malformed")
    if service != SERVICE:
        raise error(f"the Credential service must be 's3', not {service!r}")
    if terminator != TERMINATOR:
        raise error("the Credential must end with 'aws4_request'")
    return _Credential(access_key, date, region)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def derive_signing_key(secret: str, date: str, region: str) -> bytes:
    k_date = _hmac(f"AWS4{secret}".encode(), date)
    return _hmac(_hmac(_hmac(k_date, region), SERVICE), TERMINATOR)


# Stands in for the secret of an access key that does not exist, so that a request naming
# one costs what a request naming a real key costs (its signing key is cached the same way).
_UNKNOWN_SECRET = secrets.token_hex(20)


@functools.lru_cache(maxsize=1024)
def _remembered_signing_key(secret: str, date: str, region: str) -> bytes:
    return derive_signing_key(secret, date, region)


def cached_signing_key(secret: str | None, date: str, region: str) -> bytes:
    """The signing key of (secret, date, region), derived once per day and region: the four
    chained HMACs are the same for every request signed with one scope."""
    return _remembered_signing_key(
        _UNKNOWN_SECRET if secret is None else secret, date, region
    )


def sign_hex(signing_key: bytes, string_to_sign: str) -> str:
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def require_match(*, key_known: bool, matches: bool) -> None:
    """The outcome of a signature check, decided only after the full (constant-time) work."""
    if not key_known:
        raise InvalidAccessKeyId(
            "The AWS Access Key Id you provided does not exist in our records."
        )
    if not matches:
        raise SignatureDoesNotMatch(
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method."
        )


def signatures_equal(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


def _payload_mode(value: str) -> tuple[PayloadMode, str | None]:
    if _HEX64_RE.fullmatch(value):
        return PayloadMode.SIGNED_SHA256, value.lower()
    for mode in PayloadMode:
        if mode is not PayloadMode.SIGNED_SHA256 and value == mode.value:
            return mode, None
    if value.startswith("STREAMING-AWS4-ECDSA-P256-SHA256"):
        raise NotImplementedOperation("SigV4a (ECDSA) streaming payloads are not supported")
    raise InvalidRequest(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
        "or the hex SHA-256 of the payload"
    )


def _decoded_length(headers: HeaderMultiMap) -> int | None:
    value = single_header(headers, "x-amz-decoded-content-length")
    if value is None:
        return None
    if not _DIGITS_RE.fullmatch(value) or len(value) > 18:
        raise InvalidRequest("x-amz-decoded-content-length must be a non-negative integer")
    return int(value)


def _trailer(headers: HeaderMultiMap) -> str | None:
    value = single_header(headers, "x-amz-trailer")
    return value.lower() if value is not None else None


# --------------------------------------------------------------------------------------------
# Authentication


async def authenticate(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: HeaderMultiMap,
    *,
    lookup_secret: SecretLookup,
    now: datetime | None = None,
    host_bucket: str | None = None,
) -> AuthContext:
    """Authenticate one S3 request: SigV4 or SigV2, header or presigned query form.

    ``raw_path`` and ``raw_query`` are exactly as on the wire (percent-encoded, no ``?``);
    ``host_bucket`` is the bucket a virtual-host request named in its Host header (SigV2
    signs it as the first segment of the resource; SigV4 signs the path as sent).
    ``headers`` is a case-insensitive multi-mapping. ``lookup_secret`` maps an access key id
    to its secret, or None when the key is unknown. Raises an
    :class:`~lakeproxy.gateway.errors.S3ProtocolError` subclass on any failure.
    """
    current = _utc(now)
    pairs = parse_query(raw_query)
    names = {k for k, _ in pairs}
    lowered = {k.lower() for k in names}
    v4_query = bool(lowered & {"x-amz-algorithm", "x-amz-credential", "x-amz-signature"})
    v2_query = bool(names & {"Signature", "AWSAccessKeyId"})
    authorization = header_values(headers, "Authorization")
    if (authorization and (v4_query or v2_query)) or (v4_query and v2_query):
        raise InvalidRequest(ONE_MECHANISM)
    # SigV2 lives in its own module, which builds on this one (hence the late import).
    from lakeproxy.gateway import sigv2

    v2_path = f"/{_aws_quote(host_bucket)}{raw_path}" if host_bucket else raw_path
    if authorization:
        if sigv2.is_v2_authorization(authorization):
            return await sigv2.authenticate_header(
                method, v2_path, raw_query, pairs, headers, authorization, lookup_secret,
                current,
            )
        return await _authenticate_header(
            method, raw_path, pairs, headers, authorization, lookup_secret, current
        )
    if v4_query:
        return await _authenticate_query(method, raw_path, pairs, headers, lookup_secret, current)
    if v2_query:
        return await sigv2.authenticate_query(
            method, v2_path, raw_query, pairs, headers, lookup_secret, current
        )
    raise AccessDenied("Anonymous access is not allowed: sign requests with AWS Signature V4")


def _parse_authorization(values: list[str]) -> tuple[_Credential, list[str], str]:
    err = AuthorizationHeaderMalformed
    if len(values) > 1:
        raise err("more than one Authorization header")
    value = values[0].strip()
    scheme, _, rest = value.partition(" ")
    if scheme == SIGV4A_ALGORITHM:
        raise NotImplementedOperation("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported")
    if scheme != ALGORITHM:
        raise InvalidRequest("Unsupported Authorization Type: use AWS4-HMAC-SHA256")
    fields: dict[str, str] = {}
    for component in rest.split(","):
        component = component.strip()
        if not component:
            continue
        key, eq, val = component.partition("=")
        key = key.strip()
        if not eq or key not in ("Credential", "SignedHeaders", "Signature") or key in fields:
            raise err("the Authorization header must hold Credential, SignedHeaders, Signature")
        fields[key] = val.strip()
    if len(fields) != 3:
        raise err("the Authorization header must hold Credential, SignedHeaders and Signature")
    credential = _parse_credential(fields["Credential"], err)
    signed = _parse_signed_headers(fields["SignedHeaders"], err)
    signature = fields["Signature"].lower()
    if not _SIGNATURE_RE.fullmatch(signature):
        raise err("the Signature must be 64 hex digits")
    return credential, signed, signature


async def _authenticate_header(
    method: str,
    raw_path: str,
    pairs: list[tuple[str, str]],
    headers: HeaderMultiMap,
    authorization: list[str],
    lookup_secret: SecretLookup,
    now: datetime,
) -> AuthContext:
    err = AuthorizationHeaderMalformed
    credential, signed, signature = _parse_authorization(authorization)

    amz_date_header = single_header(headers, "x-amz-date")
    if amz_date_header is not None:
        when = _parse_amz_date(amz_date_header)
        date_header = "x-amz-date"
    else:
        http_date = single_header(headers, "date")
        when = None
        if http_date is not None:
            try:
                when = parsedate_to_datetime(http_date)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)  # "-0000" (botocore's formatdate): UTC
        date_header = "date"
    if when is None:
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    when = when.astimezone(UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    for required in ("host", "x-amz-content-sha256", date_header):
        if required not in signed:
            raise err(f"SignedHeaders must include {required}")

    content_sha = single_header(headers, "x-amz-content-sha256")
    if content_sha is None:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    mode, expected = _payload_mode(content_sha)

    if credential.date != amz_date[:8]:
        raise err("the Credential date does not match the request date")
    if abs(now - when) > MAX_CLOCK_SKEW:
        raise RequestTimeTooSkewed(
            "The difference between the request time and the server's time is too large"
        )

    canonical = _canonical_request(
        method, raw_path, pairs, headers, signed, content_sha, presigned=False
    )
    return await _verify(
        canonical, credential, amz_date, signature, lookup_secret, mode=mode,
        expected_sha256=expected, headers=headers, signed=signed, presigned=False,
    )


def _canonical_request(
    method: str,
    raw_path: str,
    pairs: list[tuple[str, str]],
    headers: HeaderMultiMap,
    signed: list[str],
    content_sha: str,
    *,
    presigned: bool,
) -> str:
    """SigV4's canonical request (a presigned URL's own signature is left out of it)."""
    return "\n".join([
        method,
        canonical_uri(raw_path),
        canonical_query(pairs, drop_signature=presigned),
        _canonical_headers(headers, signed),
        ";".join(signed),
        content_sha,
    ])


def _one_query_param(pairs: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in pairs if k == name]
    if not values:
        raise AuthorizationQueryParametersError(
            f"Query-string authentication version 4 requires the {name} parameter"
        )
    if len(values) > 1:
        raise AuthorizationQueryParametersError(f"the {name} parameter must appear once")
    return values[0]


def _parse_expires(value: str) -> int:
    err = AuthorizationQueryParametersError
    if not _DIGITS_RE.fullmatch(value):
        if value.startswith("-") and _DIGITS_RE.fullmatch(value[1:]):
            raise err("X-Amz-Expires must be non-negative")
        raise err("X-Amz-Expires should be a number")
    if len(value.lstrip("0")) > 7 or int(value) > MAX_PRESIGN_EXPIRES:
        raise err(
            f"X-Amz-Expires must be less than a week (in seconds) that is; {MAX_PRESIGN_EXPIRES}"
        )
    expires = int(value)
    if expires < 1:
        raise err("X-Amz-Expires must be greater than 0")
    return expires


async def _authenticate_query(
    method: str,
    raw_path: str,
    pairs: list[tuple[str, str]],
    headers: HeaderMultiMap,
    lookup_secret: SecretLookup,
    now: datetime,
) -> AuthContext:
    err = AuthorizationQueryParametersError
    algorithm = _one_query_param(pairs, "X-Amz-Algorithm")
    if algorithm == SIGV4A_ALGORITHM:
        raise NotImplementedOperation("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported")
    if algorithm != ALGORITHM:
        raise err('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    credential = _parse_credential(_one_query_param(pairs, "X-Amz-Credential"), err)
    amz_date = _one_query_param(pairs, "X-Amz-Date")
    when = _parse_amz_date(amz_date)
    if when is None:
        raise err("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires = _parse_expires(_one_query_param(pairs, "X-Amz-Expires"))
    signed = _parse_signed_headers(_one_query_param(pairs, "X-Amz-SignedHeaders"), err)
    if "host" not in signed:
        raise err("X-Amz-SignedHeaders must include host")
    signature = _one_query_param(pairs, "X-Amz-Signature").lower()
    if not _SIGNATURE_RE.fullmatch(signature):
        raise err("X-Amz-Signature must be 64 hex digits")
    if credential.date != amz_date[:8]:
        raise err("Invalid credential date. Date is not the same as X-Amz-Date.")

    # The payload hash: the X-Amz-Content-Sha256 query parameter, else the header, else
    # UNSIGNED-PAYLOAD (the botocore and MinIO order).
    query_sha = [v for k, v in pairs if k.lower() == "x-amz-content-sha256"]
    if len(query_sha) > 1:
        raise err("X-Amz-Content-Sha256 must appear once")
    content_sha = query_sha[0] if query_sha else single_header(headers, "x-amz-content-sha256")
    if content_sha is None:
        content_sha = PayloadMode.UNSIGNED.value
    mode, expected = _payload_mode(content_sha)

    # Valid while X-Amz-Date <= now + 15 min and now <= X-Amz-Date + X-Amz-Expires (AWS).
    if when > now + MAX_CLOCK_SKEW:
        raise AccessDenied("Request is not valid yet")
    if now > when + timedelta(seconds=expires):
        raise AccessDenied("Request has expired")

    canonical = _canonical_request(
        method, raw_path, pairs, headers, signed, content_sha, presigned=True
    )
    return await _verify(
        canonical, credential, amz_date, signature, lookup_secret, mode=mode,
        expected_sha256=expected, headers=headers, signed=signed, presigned=True,
    )


async def _verify(
    canonical_request: str,
    credential: _Credential,
    amz_date: str,
    signature: str,
    lookup_secret: SecretLookup,
    *,
    mode: PayloadMode,
    expected_sha256: str | None,
    headers: HeaderMultiMap,
    signed: list[str],
    presigned: bool,
) -> AuthContext:
    decoded_length = _decoded_length(headers)
    trailer = _trailer(headers)
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            amz_date,
            credential.scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    secret = await lookup_secret(credential.access_key_id)
    # An unknown key costs the same lookups and HMAC as a known one.
    key = cached_signing_key(secret, credential.date, credential.region)
    expected = sign_hex(key, string_to_sign)
    require_match(key_known=secret is not None, matches=signatures_equal(expected, signature))
    return AuthContext(
        access_key_id=credential.access_key_id,
        region=credential.region,
        amz_date=amz_date,
        scope=credential.scope,
        signing_key=key,
        seed_signature=signature,
        payload_mode=mode,
        expected_sha256=expected_sha256,
        decoded_length=decoded_length,
        trailer=trailer,
        presigned=presigned,
        signed_headers=frozenset(signed),
    )
