"""AWS Signature Version 2 (HMAC-SHA1) for the S3 gateway: header and presigned query forms.

Only :func:`lakeproxy.gateway.sigv4.authenticate` calls into this module; it stays the single
authentication entry point. SigV2 is accepted because boto3 with default settings (region
``us-east-1``, custom endpoint) presigns URLs with it (``?AWSAccessKeyId&Signature&Expires``),
and ``signature_version='s3'`` signs requests with ``Authorization: AWS AK:signature``.

The string to sign is the one botocore's ``HmacV1Auth`` / ``HmacV1QueryAuth`` build::

    METHOD \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    [x-amz-name:value \\n ...] CanonicalizedResource

* ``Content-MD5``, ``Content-Type`` and the ``x-amz-*`` headers are always taken from the
  request *headers*, never from query parameters (botocore copies them into a presigned URL,
  but a parameter the server ignores must not stand in for a header that it obeys: the client
  has to send them as headers, exactly as signed, or the signature fails: fail closed).
* ``x-amz-*`` names are lowercased and sorted; the values of one name are stripped and
  comma-joined.
* The date line is the ``Date`` header (empty when absent, as when only ``x-amz-date`` is sent)
  for header auth, and the ``Expires`` parameter as sent for query auth.
* The canonical resource is the raw path as sent on the wire (botocore signs the quoted path;
  a boto3 client signs a bucket-only ``/bucket`` as ``/bucket/``, so both are accepted) plus
  the signed S3 sub-resources of the query (botocore's ``QSAOfInterest``), sorted by name.
  Sub-resource names and values are read the way the router reads them (``parse_query``), so a
  differently encoded name (``%75ploadId``) cannot slip an unsigned sub-resource past the check.

SigV2 does not sign the payload: the body is ``UNSIGNED`` (Content-MD5 and
``x-amz-checksum-*`` still verify it in :mod:`lakeproxy.gateway.body`), or checked against a
hex ``x-amz-content-sha256`` header when one is sent (it is a signed ``x-amz-*`` header).
Streaming (aws-chunked) payloads need SigV4 chunk signing and are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from lakeproxy.gateway.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidRequest,
    RequestTimeTooSkewed,
)
from lakeproxy.gateway.sigv4 import (
    MAX_CLOCK_SKEW,
    MAX_PRESIGN_EXPIRES,
    ONE_MECHANISM,
    AuthContext,
    HeaderMultiMap,
    PayloadMode,
    SecretLookup,
    decode_path,
    header_values,
    parse_query,
    require_match,
    single_header,
)

SCHEME = "AWS"

# The query parameters SigV2 signs (botocore ``HmacV1Auth.QSAOfInterest``); every other
# parameter (prefix, list-type, max-keys, ...) is unsigned in SigV2.
SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "cors",
        "defaultObjectAcl",
        "location",
        "logging",
        "partNumber",
        "policy",
        "requestPayment",
        "torrent",
        "versioning",
        "versionId",
        "versions",
        "website",
        "uploads",
        "uploadId",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "delete",
        "lifecycle",
        "tagging",
        "restore",
        "storageClass",
        "notification",
        "replication",
        "analytics",
        "metrics",
        "inventory",
        "select",
        "select-type",
        "object-lock",
    }
)

# The parameters of the presigned form; they are never part of the canonical resource.
QUERY_AUTH_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
# SigV4 query parameters must not be mixed into a SigV2 request.
_V4_QUERY_PARAMS = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-signature",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
    }
)

_DIGITS_RE = re.compile(r"[0-9]{1,12}")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")

EXPIRED = "Request has expired"


def is_v2_authorization(values: list[str]) -> bool:
    """Whether an ``Authorization`` header uses the SigV2 scheme (``AWS AK:signature``)."""
    return any(v.strip().partition(" ")[0] == SCHEME for v in values)


# --------------------------------------------------------------------------------------------
# The string to sign


def _subresources(raw_query: str, pairs: list[tuple[str, str]]) -> list[str]:
    # pairs come from sigv4.parse_query(raw_query): same order, same skipping of empty
    # segments; zip them with the raw segments to know which ones carried a '='. Names and
    # values are the decoded ones the router uses.
    segments = [s for s in raw_query.split("&") if s] if raw_query else []
    if len(segments) != len(pairs):  # pragma: no cover - parse_query keeps them aligned
        raise InvalidRequest("the query string could not be parsed")
    signed = [
        (name, f"{name}={value}" if "=" in segment else name)
        for segment, (name, value) in zip(segments, pairs, strict=True)
        if name in SUBRESOURCES
    ]
    signed.sort(key=lambda item: item[0])
    return [text for _, text in signed]


def canonical_resource(
    raw_path: str,
    raw_query: str,
    pairs: list[tuple[str, str]] | None = None,
    *,
    bucket_slash: bool = False,
) -> str:
    """The raw path plus the signed sub-resources, sorted by name (stable, as botocore).

    A boto3 client signs a bucket-only path (``/bucket``) as ``/bucket/`` (its ``authPath``);
    botocore's bare ``HmacV1Auth`` signs it as sent. ``bucket_slash`` picks the former.

    A parameter sent without ``=`` (``?uploads``) is signed bare; one sent with ``=`` and an
    empty value (``?uploads=``) is signed as ``uploads=``, as botocore does.
    """
    if pairs is None:
        pairs = parse_query(raw_query)
    decode_path(raw_path)  # strict %-decoding and UTF-8, no NUL: as the router and SigV4
    resource = raw_path
    if bucket_slash and resource.count("/") == 1 and len(resource) > 1:
        resource += "/"
    subresources = _subresources(raw_query, pairs)
    if subresources:
        return f"{resource}?{'&'.join(subresources)}"
    return resource


def canonical_amz_headers(headers: HeaderMultiMap) -> str:
    """``x-amz-*`` headers: lowercased names, sorted; values stripped, comma-joined."""
    names = sorted({name.lower() for name in _header_names(headers)
                    if name.lower().startswith("x-amz-")})
    return "".join(
        f"{name}:{','.join(v.strip() for v in header_values(headers, name))}\n"
        for name in names
    )


def _header_names(headers: HeaderMultiMap) -> list[str]:
    return [str(k) for k in headers]


def strings_to_sign(
    method: str,
    raw_path: str,
    raw_query: str,
    pairs: list[tuple[str, str]],
    headers: HeaderMultiMap,
    date_line: str,
) -> list[str]:
    """The string to sign; two for a bucket-only path (``/bucket/`` and ``/bucket``), which
    name the same resource either way."""
    content_md5 = single_header(headers, "Content-MD5") or ""
    content_type = single_header(headers, "Content-Type") or ""
    head = (
        f"{method}\n{content_md5}\n{content_type}\n{date_line}\n"
        f"{canonical_amz_headers(headers)}"
    )
    resources = [canonical_resource(raw_path, raw_query, pairs, bucket_slash=True)]
    plain = canonical_resource(raw_path, raw_query, pairs)
    if plain != resources[0]:
        resources.append(plain)
    return [head + resource for resource in resources]


def sign(secret: str, text: str) -> str:
    """Base64 of the HMAC-SHA1 of ``text`` with ``secret`` (botocore ``sign_string``)."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# --------------------------------------------------------------------------------------------
# Checks shared by both forms


def _check_no_v4(pairs: list[tuple[str, str]]) -> None:
    if any(name.lower() in _V4_QUERY_PARAMS for name, _ in pairs):
        raise InvalidRequest(ONE_MECHANISM)


def _payload(headers: HeaderMultiMap) -> tuple[PayloadMode, str | None]:
    """The payload mode of a SigV2 request: UNSIGNED, or a signed hex SHA-256 header."""
    encodings = [
        token.strip().lower()
        for value in header_values(headers, "Content-Encoding")
        for token in value.split(",")
    ]
    if "aws-chunked" in encodings:
        raise InvalidRequest(
            "aws-chunked payloads need AWS Signature Version 4; "
            "Signature Version 2 requests cannot stream"
        )
    for name in ("x-amz-decoded-content-length", "x-amz-trailer"):
        if header_values(headers, name):
            raise InvalidRequest(
                f"{name} is only valid with AWS Signature Version 4 streaming payloads"
            )
    content_sha = single_header(headers, "x-amz-content-sha256")
    if content_sha is None or content_sha == PayloadMode.UNSIGNED.value:
        return PayloadMode.UNSIGNED, None
    if _HEX64_RE.fullmatch(content_sha):
        return PayloadMode.SIGNED_SHA256, content_sha.lower()
    raise InvalidRequest(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or the hex SHA-256 of the payload with "
        "Signature Version 2; streaming payloads need Signature Version 4"
    )


async def _verify(
    access_key_id: str,
    signature: str,
    texts: list[str],
    lookup_secret: SecretLookup,
) -> None:
    secret = await lookup_secret(access_key_id)
    # An unknown key costs the same HMAC as a known one; every candidate is computed.
    key = secret if secret is not None else secrets.token_hex(20)
    given = signature.encode("utf-8")
    results = [hmac.compare_digest(sign(key, text).encode("ascii"), given) for text in texts]
    require_match(key_known=secret is not None, matches=any(results))


def _context(
    access_key_id: str,
    mode: PayloadMode,
    expected_sha256: str | None,
    *,
    amz_date: str,
    presigned: bool,
    headers: HeaderMultiMap,
) -> AuthContext:
    signed = {"content-md5", "content-type"}
    signed.update(n.lower() for n in _header_names(headers) if n.lower().startswith("x-amz-"))
    if not presigned:
        signed.add("date")
    return AuthContext(
        access_key_id=access_key_id,
        region="",
        amz_date=amz_date,
        scope="",  # SigV4 only: never used for UNSIGNED / SIGNED_SHA256 bodies
        signing_key=b"",
        seed_signature="",
        payload_mode=mode,
        expected_sha256=expected_sha256,
        decoded_length=None,
        trailer=None,
        presigned=presigned,
        signed_headers=frozenset(signed),
        signature_version=2,
    )


# --------------------------------------------------------------------------------------------
# Header form: Authorization: AWS AK:signature


def _parse_http_date(value: str) -> datetime | None:
    if _AMZ_DATE_RE.fullmatch(value):
        try:
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000": UTC
    return when.astimezone(UTC)


def _parse_authorization(values: list[str]) -> tuple[str, str]:
    err = AuthorizationHeaderMalformed
    if len(values) > 1:
        raise err("more than one Authorization header")
    scheme, _, credentials = values[0].strip().partition(" ")
    if scheme != SCHEME:  # pragma: no cover - the caller checked
        raise err("not a Signature Version 2 Authorization header")
    access_key_id, colon, signature = credentials.strip().rpartition(":")
    if not colon or not access_key_id or not signature or " " in access_key_id:
        raise err("the Authorization header must be 'AWS <access-key-id>:<signature>'")
    return access_key_id, signature.strip()


async def authenticate_header(
    method: str,
    raw_path: str,
    raw_query: str,
    pairs: list[tuple[str, str]],
    headers: HeaderMultiMap,
    authorization: list[str],
    lookup_secret: SecretLookup,
    now: datetime,
) -> AuthContext:
    """``Authorization: AWS AK:signature``; ``x-amz-date`` (or ``Date``) within ±15 minutes."""
    access_key_id, signature = _parse_authorization(authorization)
    _check_no_v4(pairs)
    mode, expected_sha256 = _payload(headers)

    # x-amz-date wins over Date; whichever is checked is signed (x-amz-* header or date line).
    amz_date = single_header(headers, "x-amz-date")
    date_header = single_header(headers, "Date")
    stamp = amz_date if amz_date is not None else date_header
    when = _parse_http_date(stamp) if stamp is not None else None
    if when is None:
        raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    if abs(now - when) > MAX_CLOCK_SKEW:
        raise RequestTimeTooSkewed(
            "The difference between the request time and the server's time is too large"
        )

    texts = strings_to_sign(method, raw_path, raw_query, pairs, headers, date_header or "")
    await _verify(access_key_id, signature, texts, lookup_secret)
    return _context(
        access_key_id,
        mode,
        expected_sha256,
        amz_date=when.strftime("%Y%m%dT%H%M%SZ"),
        presigned=False,
        headers=headers,
    )


# --------------------------------------------------------------------------------------------
# Query form: ?AWSAccessKeyId=AK&Signature=...&Expires=<epoch>


def _one(pairs: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in pairs if k == name]
    if not values:
        raise AuthorizationQueryParametersError(
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId "
            "parameters"
        )
    if len(values) > 1:
        raise AuthorizationQueryParametersError(f"the {name} parameter must appear once")
    return values[0]


async def authenticate_query(
    method: str,
    raw_path: str,
    raw_query: str,
    pairs: list[tuple[str, str]],
    headers: HeaderMultiMap,
    lookup_secret: SecretLookup,
    now: datetime,
) -> AuthContext:
    """A SigV2 presigned URL: valid until ``Expires`` (epoch seconds), at most seven days."""
    err = AuthorizationQueryParametersError
    _check_no_v4(pairs)
    access_key_id = _one(pairs, "AWSAccessKeyId")
    # A raw '+' in the query is a space to the query parser; base64 never holds a space.
    signature = _one(pairs, "Signature").replace(" ", "+")
    expires_raw = _one(pairs, "Expires")
    if not access_key_id:
        raise err("AWSAccessKeyId must not be empty")
    if not _DIGITS_RE.fullmatch(expires_raw):
        raise err("Expires must be a number of seconds since the epoch")
    # Compared as epoch seconds: a 12-digit Expires is past datetime's year 9999.
    expires = int(expires_raw)
    current = now.timestamp()
    if current > expires:
        raise AccessDenied(EXPIRED)
    # Seven days, like X-Amz-Expires, plus the clock skew SigV4 tolerates on X-Amz-Date.
    if expires > current + MAX_PRESIGN_EXPIRES + MAX_CLOCK_SKEW.total_seconds():
        raise err(
            "Expires must be less than a week (in seconds) that is; "
            f"{MAX_PRESIGN_EXPIRES} in the future"
        )
    mode, expected_sha256 = _payload(headers)

    texts = strings_to_sign(method, raw_path, raw_query, pairs, headers, expires_raw)
    await _verify(access_key_id, signature, texts, lookup_secret)
    return _context(
        access_key_id, mode, expected_sha256, amz_date="", presigned=True, headers=headers
    )
