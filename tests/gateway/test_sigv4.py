"""SigV4 authentication, with botocore's own signers as the oracle.

Every accepted request here was signed by botocore (S3SigV4Auth / S3SigV4QueryAuth), then
taken apart into exactly what aiohttp would hand the gateway: method, raw path, raw query and
a case-insensitive multi-mapping of headers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import (
    HmacV1Auth,
    HmacV1QueryAuth,
    S3SigV4Auth,
    S3SigV4QueryAuth,
    SigV4Auth,
)
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from multidict import CIMultiDict, CIMultiDictProxy

from lakeproxy.gateway.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidRequest,
    InvalidURI,
    NotImplementedOperation,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from lakeproxy.gateway.sigv4 import (
    EMPTY_SHA256,
    AuthContext,
    PayloadMode,
    authenticate,
    canonical_query,
    canonical_uri,
    decode_path,
    derive_signing_key,
    parse_query,
    split_raw_target,
)

AK = "AKIDLAKEPROXYTEST"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HTTP = "http://127.0.0.1:9000"
HTTPS = "https://127.0.0.1:9443"


async def lookup(access_key: str) -> str | None:
    return {AK: SK}.get(access_key)


@dataclass
class Wire:
    """A request as the gateway sees it."""

    method: str
    raw_path: str
    raw_query: str
    headers: CIMultiDictProxy[str]
    body: bytes = b""

    async def auth(self, now: datetime = AT, lookup_secret=lookup) -> AuthContext:
        return await authenticate(
            self.method,
            self.raw_path,
            self.raw_query,
            self.headers,
            lookup_secret=lookup_secret,
            now=now,
        )

    def with_headers(self, **changes: str | None) -> Wire:
        headers = CIMultiDict(self.headers)
        for name, value in changes.items():
            name = name.replace("_", "-")
            headers.popall(name, None)
            if value is not None:
                headers[name] = value
        return Wire(self.method, self.raw_path, self.raw_query, CIMultiDictProxy(headers))

    def with_query(self, raw_query: str) -> Wire:
        return Wire(self.method, self.raw_path, raw_query, self.headers, self.body)


def to_wire(request: AWSRequest, body: bytes = b"") -> Wire:
    parts = urlsplit(request.url)
    headers = CIMultiDict(request.headers.items())
    headers["Host"] = parts.netloc
    return Wire(request.method, parts.path, parts.query, CIMultiDictProxy(headers), body)


def signed(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    secret: str = SK,
    access_key: str = AK,
    region: str = "us-east-1",
    at: datetime = AT,
    signer: type = S3SigV4Auth,
    service: str = "s3",
    unsigned_payload: bool = False,
    extra_headers: list[tuple[str, str]] = (),
) -> Wire:
    """Sign with botocore's header signer at time `at`."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    for name, value in extra_headers:
        request.headers[name] = value  # HTTPHeaders appends: duplicates are kept
    if unsigned_payload:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        signer(Credentials(access_key, secret), service, region).add_auth(request)
    return to_wire(request, body)


def presigned(
    method: str,
    url: str,
    *,
    expires: object = 3600,
    at: datetime = AT,
    secret: str = SK,
    headers: dict[str, str] | None = None,
) -> Wire:
    request = AWSRequest(method=method, url=url, headers=headers or {})
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        S3SigV4QueryAuth(Credentials(AK, secret), "s3", "us-east-1", expires=expires).add_auth(
            request
        )
    return to_wire(request)


def key_url(key: str, base: str = HTTP, bucket: str = "bucket") -> str:
    # What botocore's S3 serializer does with a {Key+} label.
    return f"{base}/{bucket}/{percent_encode(key, safe='/~')}"


# --------------------------------------------------------------------------------------------
# Accepted requests


async def test_simple_get() -> None:
    wire = signed("GET", f"{HTTP}/bucket/key.txt")
    ctx = await wire.auth()
    assert ctx.access_key_id == AK
    assert ctx.region == "us-east-1"
    assert ctx.amz_date == "20260301T120000Z"
    assert ctx.scope == "20260301/us-east-1/s3/aws4_request"
    assert ctx.payload_mode is PayloadMode.SIGNED_SHA256
    assert ctx.expected_sha256 == EMPTY_SHA256
    assert ctx.signing_key == derive_signing_key(SK, "20260301", "us-east-1")
    assert ctx.seed_signature in wire.headers["Authorization"]
    assert not ctx.presigned
    assert {"host", "x-amz-date", "x-amz-content-sha256"} <= ctx.signed_headers
    # Secrets never show up in the repr.
    assert ctx.seed_signature not in repr(ctx)
    assert SK not in repr(ctx)
    assert "signing_key" not in repr(ctx)


async def test_put_signed_payload() -> None:
    body = b"hello world\n" * 100
    wire = signed("PUT", f"{HTTP}/bucket/dir/obj", {"Content-Type": "text/plain"}, body)
    ctx = await wire.auth()
    assert ctx.payload_mode is PayloadMode.SIGNED_SHA256
    assert ctx.expected_sha256 == hashlib.sha256(body).hexdigest()


async def test_unsigned_payload() -> None:
    wire = signed("PUT", f"{HTTPS}/bucket/obj", body=b"data", unsigned_payload=True)
    assert wire.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    ctx = await wire.auth()
    assert ctx.payload_mode is PayloadMode.UNSIGNED
    assert ctx.expected_sha256 is None


async def test_other_region_derives_key_with_request_region() -> None:
    ctx = await signed("GET", f"{HTTP}/bucket/k", region="eu-west-3").auth()
    assert ctx.region == "eu-west-3"
    assert ctx.signing_key == derive_signing_key(SK, "20260301", "eu-west-3")


async def test_date_header_instead_of_x_amz_date() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k", {"Date": "Sun, 01 Mar 2026 11:00:00 GMT"})
    assert "x-amz-date" not in wire.headers
    ctx = await wire.auth()
    assert ctx.amz_date == "20260301T120000Z"


async def test_date_header_must_be_signed_and_x_amz_date_wins() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k")
    # x-amz-date wins over a Date header added later (and unsigned).
    ok = wire.with_headers(Date="Mon, 02 Mar 2026 09:00:00 GMT")
    assert (await ok.auth()).amz_date == "20260301T120000Z"
    # Without x-amz-date, an unsigned Date is not enough.
    no_amz = wire.with_headers(x_amz_date=None, Date="Sun, 01 Mar 2026 12:00:00 GMT")
    with pytest.raises(AuthorizationHeaderMalformed):
        await no_amz.auth()
    with pytest.raises(AccessDenied, match="Date"):
        await wire.with_headers(x_amz_date=None).auth()
    with pytest.raises(AccessDenied, match="Date"):
        await wire.with_headers(x_amz_date="2026-03-01T12:00:00Z").auth()


async def test_host_with_port_is_signed() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k")
    assert wire.headers["Host"] == "127.0.0.1:9000"
    await wire.auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_headers(Host="127.0.0.1").auth()


KEYS = [
    "plain.txt",
    "with space.txt",
    "a+b.txt",
    "100%.txt",
    "%ff%fe",
    "tilde~name",
    "bang!star*quote'paren()",
    "colon:equals=amp&",
    "question?mark",
    "ümlaut/日本語/emoji-🦆",
    "double//slash",
    "./dot",
    "a/./b",
    "../up",
    "a/../b",
    "trailing/",
    "semi;comma,at@dollar$",
    'brackets[]{}<>|\\^`"#',
]


@pytest.mark.parametrize("key", KEYS)
async def test_keys_header_auth(key: str) -> None:
    wire = signed("PUT", key_url(key), body=b"x")
    assert decode_path(wire.raw_path) == f"/bucket/{key}"
    await wire.auth()


@pytest.mark.parametrize("key", KEYS)
async def test_keys_presigned(key: str) -> None:
    wire = presigned("GET", key_url(key))
    assert decode_path(wire.raw_path) == f"/bucket/{key}"
    ctx = await wire.auth(now=AT + timedelta(minutes=5))
    assert ctx.presigned


async def test_dot_segments_and_double_slash_are_not_normalised() -> None:
    wire = signed("GET", key_url("a/../b//c"))
    assert wire.raw_path == "/bucket/a/../b//c"
    await wire.auth()
    # The normalised path is a different resource: the signature does not carry over.
    with pytest.raises(SignatureDoesNotMatch):
        await Wire("GET", "/bucket/b/c", "", wire.headers).auth()


async def test_literal_percent_and_invalid_utf8_do_not_collide() -> None:
    assert canonical_uri("/b/%25ff%25fe") == "/b/%25ff%25fe"
    with pytest.raises(InvalidURI):
        canonical_uri("/b/%ff%fe")
    wire = signed("GET", key_url("%ff%fe"))
    assert wire.raw_path == "/bucket/%25ff%25fe"
    await wire.auth()


@pytest.mark.parametrize(
    "raw_path", ["/b/%ff", "/b/a%00b", "/b/%2", "/b/%zz", "b/no-slash", "/b/raw space", "/b/ü"]
)
async def test_bad_raw_paths_are_rejected(raw_path: str) -> None:
    wire = signed("GET", f"{HTTP}/b/x")
    with pytest.raises(InvalidURI):
        await Wire("GET", raw_path, "", wire.headers).auth()


def test_path_reencoding_single_and_uppercase() -> None:
    # Decode then re-encode once with AWS rules (uppercase hex, unreserved kept).
    assert canonical_uri("/b/%7e%2a%41") == "/b/~%2AA"
    assert canonical_uri("/b/a%2Fb") == "/b/a/b"


@pytest.mark.parametrize(
    "query",
    [
        "uploads",
        "delete",
        "uploadId=abc%2Fdef&partNumber=3",
        "list-type=2&prefix=a%2Bb",
        "list-type=2&prefix=a%20b&delimiter=%2F&encoding-type=url",
        "prefix=&max-keys=10",
        "a=2&a=1&a=10&b=",
        "versionId=null",
        "k%C3%BC=%E2%9C%93",
    ],
)
async def test_query_strings(query: str) -> None:
    wire = signed("GET", f"{HTTP}/bucket/key?{query}")
    assert wire.raw_query == query
    await wire.auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_query(query + "&extra=1").auth()


async def test_query_from_botocore_params_encoding() -> None:
    params = {"list-type": "2", "prefix": "a+b c/d~e*", "start-after": "ü"}
    wire = signed("GET", f"{HTTP}/bucket?{percent_encode_sequence(params)}")
    await wire.auth()
    assert dict(parse_query(wire.raw_query)) == params


async def test_raw_plus_in_query_means_space() -> None:
    # Go clients (minio-go, aws-sdk-go) send url.Values.Encode() output: a space is '+'.
    wire = signed("GET", f"{HTTP}/bucket?prefix=a%20b")
    await wire.with_query("prefix=a+b").auth()
    # AWS SDK for Java v1 signs RFC 3986 but sends form encoding ('+', '*' raw, '~' as %7E);
    # AWS canonicalises the received query, so both forms must verify.
    java = signed("GET", f"{HTTP}/bucket?prefix=a%20b%2Ac~d")
    await java.with_query("prefix=a+b*c%7Ed").auth()
    with pytest.raises(SignatureDoesNotMatch):
        await java.with_query("prefix=a%2Bb*c%7Ed").auth()
    assert parse_query("x=%2B+") == [("x", "+ ")]
    assert canonical_query(parse_query("x=%2B+&uploads")) == "uploads=&x=%2B%20"


def test_canonical_query_sorting_and_signature_drop() -> None:
    pairs = parse_query("b=2&a=2&a=1&X-Amz-Signature=abc&A=0")
    assert canonical_query(pairs) == "A=0&X-Amz-Signature=abc&a=1&a=2&b=2"
    assert canonical_query(pairs, drop_signature=True) == "A=0&a=1&a=2&b=2"


def test_split_raw_target() -> None:
    assert split_raw_target("/b/k%3Fx?uploads&a=1") == ("/b/k%3Fx", "uploads&a=1")
    assert split_raw_target("/b/k") == ("/b/k", "")


async def test_header_whitespace_and_duplicates() -> None:
    wire = signed(
        "PUT",
        f"{HTTP}/bucket/k",
        {"X-Amz-Meta-Note": "  several   spaces  here "},
        extra_headers=[("X-Amz-Meta-Multi", "one"), ("X-Amz-Meta-Multi", "two")],
    )
    assert wire.headers.getall("x-amz-meta-multi") == ["one", "two"]
    await wire.auth()
    # Collapsing whitespace is part of canonicalisation...
    await wire.with_headers(x_amz_meta_note="several spaces here").auth()
    # ...but order and content of duplicates are signed.
    swapped = CIMultiDict(wire.headers)
    swapped.popall("x-amz-meta-multi")
    swapped.add("X-Amz-Meta-Multi", "two")
    swapped.add("X-Amz-Meta-Multi", "one")
    with pytest.raises(SignatureDoesNotMatch):
        await Wire("PUT", wire.raw_path, "", CIMultiDictProxy(swapped)).auth()


async def test_obs_fold_rejected() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k", {"X-Amz-Meta-A": "x"})
    with pytest.raises(InvalidRequest):
        await wire.with_headers(x_amz_meta_a="x\r\n y").auth()


# --------------------------------------------------------------------------------------------
# Presigned URLs


async def test_presigned_get_and_put() -> None:
    get = presigned("GET", f"{HTTP}/bucket/k")
    ctx = await get.auth(now=AT + timedelta(minutes=59))
    assert ctx.presigned and ctx.payload_mode is PayloadMode.UNSIGNED
    assert ctx.seed_signature == dict(parse_query(get.raw_query))["X-Amz-Signature"]
    put = presigned("PUT", f"{HTTP}/bucket/k")
    ctx = await put.auth(now=AT + timedelta(seconds=3600))
    assert ctx.payload_mode is PayloadMode.UNSIGNED
    # The method is signed.
    with pytest.raises(SignatureDoesNotMatch):
        await Wire("DELETE", put.raw_path, put.raw_query, put.headers).auth()


async def test_presigned_used_long_after_signing_follows_aws() -> None:
    wire = presigned("GET", f"{HTTP}/bucket/k", expires=6 * 3600)
    await wire.auth(now=AT + timedelta(hours=5, minutes=59))


async def test_presigned_expired() -> None:
    wire = presigned("GET", f"{HTTP}/bucket/k", expires=60)
    await wire.auth(now=AT + timedelta(seconds=60))
    with pytest.raises(AccessDenied, match="Request has expired"):
        await wire.auth(now=AT + timedelta(seconds=61))


async def test_presigned_not_yet_valid() -> None:
    wire = presigned("GET", f"{HTTP}/bucket/k")
    await wire.auth(now=AT - timedelta(minutes=14))
    with pytest.raises(AccessDenied, match="not valid yet"):
        await wire.auth(now=AT - timedelta(minutes=16))


@pytest.mark.parametrize("expires", [0, -1, 604801, "abc", "1e3", " 5", "99999999999999999999"])
async def test_presigned_bad_expires(expires: object) -> None:
    wire = presigned("GET", f"{HTTP}/bucket/k", expires=expires)
    with pytest.raises(AuthorizationQueryParametersError):
        await wire.auth()


async def test_presigned_max_expires() -> None:
    wire = presigned("GET", f"{HTTP}/bucket/k", expires=604800)
    await wire.auth(now=AT + timedelta(days=7))
    with pytest.raises(AccessDenied):
        await wire.auth(now=AT + timedelta(days=7, seconds=1))


async def test_presigned_with_operation_query() -> None:
    wire = presigned("GET", f"{HTTP}/bucket?list-type=2&prefix=a%2Bb%20c")
    await wire.auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_query(wire.raw_query.replace("a%2Bb", "a%2Bc")).auth()


async def test_presigned_tampered_or_missing_params() -> None:
    wire = presigned("GET", f"{HTTP}/bucket/k")
    pairs = parse_query(wire.raw_query)
    tampered = wire.raw_query.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200")
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_query(tampered).auth()
    for name, _ in pairs:
        rest = "&".join(p for p in wire.raw_query.split("&") if not p.startswith(name + "="))
        with pytest.raises(AuthorizationQueryParametersError):
            await wire.with_query(rest).auth()
    doubled = wire.raw_query + "&X-Amz-Date=20260301T120000Z"
    with pytest.raises(AuthorizationQueryParametersError):
        await wire.with_query(doubled).auth()
    wrong_algo = wire.raw_query.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")
    with pytest.raises(AuthorizationQueryParametersError):
        await wire.with_query(wrong_algo).auth()


async def test_presigned_signed_header_must_match() -> None:
    wire = presigned("PUT", f"{HTTP}/bucket/k", headers={"X-Amz-Meta-Owner": "alice"})
    assert "x-amz-meta-owner" in dict(parse_query(wire.raw_query))["X-Amz-SignedHeaders"]
    await wire.auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_headers(x_amz_meta_owner="mallory").auth()
    with pytest.raises(AccessDenied, match="missing"):
        await wire.with_headers(x_amz_meta_owner=None).auth()


async def test_presigned_wrong_secret_and_unknown_key() -> None:
    with pytest.raises(SignatureDoesNotMatch):
        await presigned("GET", f"{HTTP}/bucket/k", secret="not-the-secret").auth()
    wire = presigned("GET", f"{HTTP}/bucket/k")
    with pytest.raises(InvalidAccessKeyId):
        await wire.auth(lookup_secret=_no_keys)


# --------------------------------------------------------------------------------------------
# Rejected header-auth requests


@pytest.mark.parametrize("minutes", [-16, 16])
async def test_clock_skew_rejected(minutes: int) -> None:
    wire = signed("GET", f"{HTTP}/bucket/k")
    with pytest.raises(RequestTimeTooSkewed):
        await wire.auth(now=AT + timedelta(minutes=minutes))


@pytest.mark.parametrize("minutes", [-14, 14])
async def test_clock_skew_accepted(minutes: int) -> None:
    await signed("GET", f"{HTTP}/bucket/k").auth(now=AT + timedelta(minutes=minutes))


async def test_wrong_secret() -> None:
    with pytest.raises(SignatureDoesNotMatch) as info:
        await signed("GET", f"{HTTP}/bucket/k", secret="wrong").auth()
    assert SK not in str(info.value) and "wrong" not in str(info.value)


async def _no_keys(access_key: str) -> str | None:
    return None


async def test_unknown_key() -> None:
    with pytest.raises(InvalidAccessKeyId):
        await signed("GET", f"{HTTP}/bucket/k", access_key="AKIDUNKNOWN").auth()


async def test_a_changed_secret_takes_effect_at_once() -> None:
    """Signing keys are derived once per scope, but never outlive the secret they came from:
    after a key's secret changes, requests signed with the old one fail."""
    wire = signed("GET", f"{HTTP}/bucket/k")
    assert (await wire.auth()).access_key_id == AK  # the old secret's key is derived now

    async def rotated(access_key: str) -> str | None:
        return {AK: "a-new-secret-for-the-same-key"}.get(access_key)

    with pytest.raises(SignatureDoesNotMatch):
        await wire.auth(lookup_secret=rotated)
    with pytest.raises(InvalidAccessKeyId):  # and a deleted key is unknown at once
        await wire.auth(lookup_secret=_no_keys)
    renewed = signed("GET", f"{HTTP}/bucket/k", secret="a-new-secret-for-the-same-key")
    assert (await renewed.auth(lookup_secret=rotated)).access_key_id == AK


async def test_tampered_header() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k", {"Range": "bytes=0-9"})
    await wire.auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_headers(Range="bytes=0-99").auth()


async def test_tampered_payload_hash() -> None:
    wire = signed("PUT", f"{HTTP}/bucket/k", body=b"abc")
    other = hashlib.sha256(b"abd").hexdigest()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_headers(x_amz_content_sha256=other).auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_headers(x_amz_content_sha256="UNSIGNED-PAYLOAD").auth()


async def test_tampered_path_method_and_query() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k?list-type=2&prefix=a")
    await wire.auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_query("list-type=2&prefix=b").auth()
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_query("list-type=2").auth()
    with pytest.raises(SignatureDoesNotMatch):
        await Wire("GET", "/bucket/K", wire.raw_query, wire.headers).auth()
    with pytest.raises(SignatureDoesNotMatch):
        await Wire("HEAD", wire.raw_path, wire.raw_query, wire.headers).auth()


async def test_missing_signed_header() -> None:
    wire = signed("PUT", f"{HTTP}/bucket/k", {"X-Amz-Meta-A": "1"}, b"x")
    with pytest.raises(AccessDenied, match="x-amz-meta-a"):
        await wire.with_headers(x_amz_meta_a=None).auth()


def _drop_signed(authorization: str, name: str) -> str:
    head, _, rest = authorization.partition("SignedHeaders=")
    names, _, tail = rest.partition(",")
    kept = ";".join(n for n in names.split(";") if n != name)
    return f"{head}SignedHeaders={kept},{tail}"


@pytest.mark.parametrize("name", ["host", "x-amz-date", "x-amz-content-sha256"])
async def test_required_headers_must_be_signed(name: str) -> None:
    wire = signed("GET", f"{HTTP}/bucket/k")
    authorization = _drop_signed(wire.headers["Authorization"], name)
    with pytest.raises(AuthorizationHeaderMalformed, match=name):
        await wire.with_headers(Authorization=authorization).auth()


async def test_generic_sigv4_without_content_sha256_rejected() -> None:
    # botocore's non-S3 signer does not send x-amz-content-sha256.
    wire = signed("GET", f"{HTTP}/bucket/k", signer=SigV4Auth)
    assert "x-amz-content-sha256" not in wire.headers
    with pytest.raises(AuthorizationHeaderMalformed):
        await wire.auth()


def _sign_with_content_sha(value: str) -> Wire:
    # The generic signer signs whatever X-Amz-Content-SHA256 header it is given.
    return signed(
        "PUT", f"{HTTP}/bucket/k", {"X-Amz-Content-SHA256": value}, b"x", signer=SigV4Auth
    )


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PayloadMode.STREAMING_SIGNED),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.STREAMING_UNSIGNED_TRAILER),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.STREAMING_SIGNED_TRAILER),
        ("UNSIGNED-PAYLOAD", PayloadMode.UNSIGNED),
        (hashlib.sha256(b"x").hexdigest().upper(), PayloadMode.SIGNED_SHA256),
    ],
)
async def test_payload_modes(value: str, mode: PayloadMode) -> None:
    ctx = await _sign_with_content_sha(value).auth()
    assert ctx.payload_mode is mode
    if mode is PayloadMode.SIGNED_SHA256:
        assert ctx.expected_sha256 == hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    "value", ["GARBAGE", "unsigned-payload", "STREAMING-UNSIGNED-PAYLOAD", "abc123", ""]
)
async def test_unknown_payload_mode_fails_closed(value: str) -> None:
    with pytest.raises(InvalidRequest):
        await _sign_with_content_sha(value).auth()


async def test_sigv4a_streaming_payload_not_implemented() -> None:
    with pytest.raises(NotImplementedOperation):
        await _sign_with_content_sha("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD").auth()


async def test_credential_scope_checks() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k")
    authorization = wire.headers["Authorization"]
    for bad in [
        authorization.replace("/20260301/", "/20260302/"),
        authorization.replace("/s3/", "/iam/"),
        authorization.replace("/aws4_request", "/aws4_reqest"),
        authorization.replace(f"{AK}/", f"{AK}/extra/"),
        authorization.replace("Signature=", "Signature=00"),
        authorization.replace(", Signature=", ", Sig="),
        authorization + ", Signature=" + "0" * 64,
    ]:
        with pytest.raises(AuthorizationHeaderMalformed):
            await wire.with_headers(Authorization=bad).auth()
    iam = signed("GET", f"{HTTP}/bucket/k", service="iam")
    with pytest.raises(AuthorizationHeaderMalformed, match="service"):
        await iam.auth()


async def test_repeated_authorization_header() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k")
    headers = CIMultiDict(wire.headers)
    headers.add("Authorization", wire.headers["Authorization"])
    with pytest.raises(AuthorizationHeaderMalformed):
        await Wire("GET", wire.raw_path, "", CIMultiDictProxy(headers)).auth()


async def test_both_query_and_header_auth() -> None:
    header = signed("GET", f"{HTTP}/bucket/k")
    query = presigned("GET", f"{HTTP}/bucket/k")
    both = Wire("GET", query.raw_path, query.raw_query, header.headers)
    with pytest.raises(InvalidRequest, match="Only one auth mechanism"):
        await both.auth()
    v2_and_header = header.with_query("AWSAccessKeyId=AK&Signature=x&Expires=1")
    with pytest.raises(InvalidRequest, match="Only one auth mechanism"):
        await v2_and_header.auth()


async def test_sigv2_header_accepted_and_checked() -> None:
    # SigV2 goes through the same entry point (details in test_sigv2.py).
    request = AWSRequest(method="GET", url=f"{HTTP}/bucket/k")
    HmacV1Auth(Credentials(AK, SK)).add_auth(request)
    wire = to_wire(request)
    assert wire.headers["Authorization"].startswith("AWS ")
    ctx = await wire.auth(now=datetime.now(UTC))
    assert ctx.signature_version == 2
    assert ctx.payload_mode is PayloadMode.UNSIGNED
    assert not ctx.presigned
    with pytest.raises(RequestTimeTooSkewed):
        await wire.auth(now=datetime.now(UTC) + timedelta(minutes=20))
    tampered = wire.headers["Authorization"][:-6] + "AAAAA="
    with pytest.raises(SignatureDoesNotMatch):
        await wire.with_headers(Authorization=tampered).auth(now=datetime.now(UTC))
    bad_secret = AWSRequest(method="GET", url=f"{HTTP}/bucket/k")
    HmacV1Auth(Credentials(AK, "wrong")).add_auth(bad_secret)
    with pytest.raises(SignatureDoesNotMatch):
        await to_wire(bad_secret).auth(now=datetime.now(UTC))
    unknown = AWSRequest(method="GET", url=f"{HTTP}/bucket/k")
    HmacV1Auth(Credentials("AKUNKNOWN", SK)).add_auth(unknown)
    with pytest.raises(InvalidAccessKeyId):
        await to_wire(unknown).auth(now=datetime.now(UTC))


async def test_sigv2_query_accepted_and_checked() -> None:
    request = AWSRequest(method="GET", url=f"{HTTP}/bucket/k")
    HmacV1QueryAuth(Credentials(AK, SK), expires=60).add_auth(request)
    wire = to_wire(request)
    assert "Signature=" in wire.raw_query
    ctx = await wire.auth(now=datetime.now(UTC))
    assert ctx.signature_version == 2
    assert ctx.presigned
    assert ctx.payload_mode is PayloadMode.UNSIGNED
    with pytest.raises(AccessDenied, match="expired"):
        await wire.auth(now=datetime.now(UTC) + timedelta(minutes=2))
    with pytest.raises(SignatureDoesNotMatch):
        await Wire("GET", "/bucket/other", wire.raw_query, wire.headers).auth(
            now=datetime.now(UTC)
        )
    with pytest.raises(SignatureDoesNotMatch):
        await Wire("DELETE", wire.raw_path, wire.raw_query, wire.headers).auth(
            now=datetime.now(UTC)
        )


async def test_sigv2_and_sigv4_query_mixed() -> None:
    query = presigned("GET", f"{HTTP}/bucket/k")
    with pytest.raises(InvalidRequest, match="Only one auth mechanism"):
        await query.with_query(query.raw_query + "&AWSAccessKeyId=AK&Signature=x").auth()
    v2 = AWSRequest(method="GET", url=f"{HTTP}/bucket/k")
    HmacV1Auth(Credentials(AK, SK)).add_auth(v2)
    with pytest.raises(InvalidRequest, match="Only one auth mechanism"):
        await to_wire(v2).with_query(query.raw_query).auth()


async def test_other_authorization_schemes_rejected() -> None:
    wire = signed("GET", f"{HTTP}/bucket/k")
    with pytest.raises(InvalidRequest):
        await wire.with_headers(Authorization="Bearer abc").auth()
    sigv4a = wire.headers["Authorization"].replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
    with pytest.raises(NotImplementedOperation):
        await wire.with_headers(Authorization=sigv4a).auth()


async def test_anonymous_rejected() -> None:
    with pytest.raises(AccessDenied, match="Anonymous"):
        await Wire("GET", "/bucket/k", "", CIMultiDictProxy(CIMultiDict(Host="h"))).auth()
    with pytest.raises(AccessDenied):
        await Wire("GET", "/bucket/k", "list-type=2", CIMultiDictProxy(CIMultiDict())).auth()


async def test_decoded_length_and_trailer_in_context() -> None:
    wire = signed(
        "PUT",
        f"{HTTP}/bucket/k",
        {
            "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "X-Amz-Decoded-Content-Length": "42",
            "X-Amz-Trailer": "X-Amz-Checksum-CRC32",
        },
        signer=SigV4Auth,
    )
    ctx = await wire.auth()
    assert ctx.decoded_length == 42
    assert ctx.trailer == "x-amz-checksum-crc32"
    bad = signed(
        "PUT",
        f"{HTTP}/bucket/k",
        {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "X-Amz-Decoded-Content-Length": "-1"},
        signer=SigV4Auth,
    )
    with pytest.raises(InvalidRequest):
        await bad.auth()


# --------------------------------------------------------------------------------------------
# The AWS documentation examples (sigv4-streaming.html, sigv4-streaming-trailers.html)

DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = datetime(2013, 5, 24, tzinfo=UTC)


async def _doc_lookup(access_key: str) -> str | None:
    return DOC_SECRET if access_key == "AKIAIOSFODNN7EXAMPLE" else None


def aws_doc_streaming_headers(trailer: bool) -> CIMultiDictProxy[str]:
    if trailer:
        signed_headers = (
            "content-encoding;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer"
        )
        signature = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
    else:
        signed_headers = (
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class"
        )
        signature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    headers = CIMultiDict(
        {
            "Host": "s3.amazonaws.com",
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "Authorization": (
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                f"aws4_request,SignedHeaders={signed_headers},Signature={signature}"
            ),
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
        }
    )
    if trailer:
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
    else:
        headers["x-amz-content-sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        headers["Content-Length"] = "66824"
    return CIMultiDictProxy(headers)


@pytest.mark.parametrize("trailer", [False, True])
async def test_aws_documentation_seed_signatures(trailer: bool) -> None:
    headers = aws_doc_streaming_headers(trailer)
    ctx = await authenticate(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        headers,
        lookup_secret=_doc_lookup,
        now=DOC_NOW,
    )
    assert ctx.payload_mode is (
        PayloadMode.STREAMING_SIGNED_TRAILER if trailer else PayloadMode.STREAMING_SIGNED
    )
    assert ctx.decoded_length == 66560
