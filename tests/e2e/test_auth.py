"""Every kind of signature failure, through real HTTP to a real `lake serve`.

Header auth (bad signature, unknown key, clock skew, missing or unsigned headers, payload hash
mismatch), presigned URLs (expired, not yet valid, tampered, malformed), anonymous requests,
and SigV2 (accepted when correctly signed; refused when tampered, expired, skewed or unknown).
Each must fail with the S3 error code AWS uses, before any effect or information (existence,
ETag, 304/412) leaks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from email.utils import formatdate
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.rawhttp import Reply, call, presign, send, sign, utcnow
from tests.server import Server

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module")
def repo(s3: Any) -> str:
    name = f"auth-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="main/secret.txt", Body=b"secret")
    return name


def assert_error(reply: Reply, status: int, code: str | None) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.header("x-amz-request-id")
    if code is not None:
        assert reply.is_s3_error(code), reply.body


def unchanged(server: Server, repo: str) -> None:
    got = call(server, "GET", f"/{repo}/main/secret.txt")
    assert (got.status, got.body) == (200, b"secret")
    assert call(server, "HEAD", f"/{repo}/main/new.txt").status == 404


# -- header auth ----------------------------------------------------------------------------


def test_valid_header_auth_works(server: Server, repo: str) -> None:
    assert call(server, "GET", f"/{repo}/main/secret.txt").body == b"secret"
    assert call(server, "GET", f"/{repo}/main/secret.txt", unsigned_payload=True).status == 200
    put = call(server, "PUT", f"/{repo}/main/unsigned.txt", b"u", unsigned_payload=True)
    assert put.status == 200


def test_bad_signature(server: Server, repo: str) -> None:
    reply = call(server, "GET", f"/{repo}/main/secret.txt", secret_key="wrong")
    assert_error(reply, 403, "SignatureDoesNotMatch")
    reply = call(server, "PUT", f"/{repo}/main/new.txt", b"x", secret_key="wrong")
    assert_error(reply, 403, "SignatureDoesNotMatch")
    headers = sign(server, "GET", f"/{repo}/main/secret.txt")
    # a flipped signature digit
    auth = headers["Authorization"]
    headers["Authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    assert_error(send(server, "GET", f"/{repo}/main/secret.txt", headers), 403,
                 "SignatureDoesNotMatch")
    unchanged(server, repo)


def test_signature_bound_to_method_path_query_and_headers(server: Server, repo: str) -> None:
    headers = sign(server, "GET", f"/{repo}/main/secret.txt")
    for method, target in (("HEAD", f"/{repo}/main/secret.txt"),
                           ("DELETE", f"/{repo}/main/secret.txt"),
                           ("GET", f"/{repo}/main/other.txt"),
                           ("GET", f"/{repo}/main/secret.txt?x=1")):
        reply = send(server, method, target, headers)
        assert reply.status == 403, (method, target)
    # a signed header changed in flight
    signed = sign(server, "GET", f"/{repo}/main/secret.txt", headers={"Range": "bytes=0-1"})
    signed["Range"] = "bytes=0-5"
    assert_error(send(server, "GET", f"/{repo}/main/secret.txt", signed), 403,
                 "SignatureDoesNotMatch")
    # a signed header removed
    del signed["Range"]
    assert send(server, "GET", f"/{repo}/main/secret.txt", signed).status in (400, 403)
    unchanged(server, repo)


def test_unknown_access_key(server: Server, repo: str) -> None:
    reply = call(server, "GET", f"/{repo}/main/secret.txt", access_key="AKLPUNKNOWN000000000")
    assert_error(reply, 403, "InvalidAccessKeyId")
    reply = call(server, "GET", "/no-such-repo/main/x", access_key="AKLPUNKNOWN000000000")
    assert_error(reply, 403, "InvalidAccessKeyId")  # not NoSuchBucket: nothing leaks


@pytest.mark.parametrize("minutes", [16, -16, 60 * 24])
def test_clock_skew(server: Server, repo: str, minutes: int) -> None:
    at = utcnow() + dt.timedelta(minutes=minutes)
    reply = call(server, "GET", f"/{repo}/main/secret.txt", at=at)
    assert_error(reply, 403, "RequestTimeTooSkewed")
    reply = call(server, "PUT", f"/{repo}/main/new.txt", b"x", at=at)
    assert_error(reply, 403, "RequestTimeTooSkewed")
    unchanged(server, repo)


@pytest.mark.parametrize("minutes", [14, -14])
def test_skew_within_15_minutes_is_accepted(server: Server, repo: str, minutes: int) -> None:
    at = utcnow() + dt.timedelta(minutes=minutes)
    assert call(server, "GET", f"/{repo}/main/secret.txt", at=at).status == 200


def test_missing_date(server: Server, repo: str) -> None:
    headers = sign(server, "GET", f"/{repo}/main/secret.txt")
    del headers["X-Amz-Date"]
    assert_error(send(server, "GET", f"/{repo}/main/secret.txt", headers), 403, "AccessDenied")


def test_malformed_date(server: Server, repo: str) -> None:
    headers = sign(server, "GET", f"/{repo}/main/secret.txt")
    headers["X-Amz-Date"] = "yesterday"
    assert send(server, "GET", f"/{repo}/main/secret.txt", headers).status in (400, 403)


def test_missing_content_sha256(server: Server, repo: str) -> None:
    # signed with it, then dropped: a signed header is missing
    headers = sign(server, "GET", f"/{repo}/main/secret.txt")
    del headers["X-Amz-Content-SHA256"]
    reply = send(server, "GET", f"/{repo}/main/secret.txt", headers)
    assert reply.status == 400 and reply.code in ("AuthorizationHeaderMalformed",
                                                  "InvalidRequest"), reply.body
    # never signed: SignedHeaders must include it
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=f"{server.endpoint}/{repo}/main/secret.txt")
    SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", "us-east-1").add_auth(
        request)
    plain = {"Host": server.endpoint.split("//")[1], **dict(request.headers.items())}
    assert "X-Amz-Content-SHA256" not in plain
    assert_error(send(server, "GET", f"/{repo}/main/secret.txt", plain), 400,
                 "AuthorizationHeaderMalformed")


@pytest.mark.parametrize("value", ["STREAMING-SOMETHING-NEW", "abc", "UNSIGNED-PAYLOAD-X",
                                   "0" * 63, "g" * 64, ""])
def test_unsupported_content_sha256_values(server: Server, repo: str, value: str) -> None:
    reply = call(server, "PUT", f"/{repo}/main/new.txt", b"x", content_sha256=value)
    assert reply.status == 400, reply.body
    assert reply.code in ("InvalidRequest", "InvalidArgument"), reply.body
    unchanged(server, repo)


def test_streaming_modes_need_their_framing(server: Server, repo: str) -> None:
    # signed streaming without aws-chunked framing or decoded length: refused, never stored
    for value in ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER"):
        reply = call(server, "PUT", f"/{repo}/main/new.txt", b"raw bytes", content_sha256=value)
        assert reply.status in (400, 403, 411), (value, reply.body)
    unchanged(server, repo)


def test_unsigned_payload_still_checks_the_signature(server: Server, repo: str) -> None:
    reply = call(server, "PUT", f"/{repo}/main/new.txt", b"x", unsigned_payload=True,
                 secret_key="wrong")
    assert_error(reply, 403, "SignatureDoesNotMatch")
    unchanged(server, repo)


def test_payload_hash_mismatch(server: Server, repo: str) -> None:
    headers = sign(server, "PUT", f"/{repo}/main/new.txt", body=b"good",
                   headers={"Content-Length": "4"})
    reply = send(server, "PUT", f"/{repo}/main/new.txt", headers, b"evil")
    assert_error(reply, 400, "XAmzContentSHA256Mismatch")
    unchanged(server, repo)


def test_malformed_authorization_headers(server: Server, repo: str) -> None:
    base = sign(server, "GET", f"/{repo}/main/secret.txt")
    auth = base["Authorization"]
    cases = {
        "AWS4-HMAC-SHA256": 400,
        auth.replace("Credential=", "Cred="): 400,
        auth.replace("/s3/", "/ec2/"): 400,
        auth.replace("aws4_request", "aws5_request"): 400,
        auth.replace("SignedHeaders=", "SignedHeaders=zzz;"): 403,  # signed but not sent
        auth.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"): 400,
        auth + ", Signature=" + "0" * 64: 400,
        f"AWS {server.access_key}": 400,  # SigV2 without a signature
    }
    for value, status in cases.items():
        headers = {**base, "Authorization": value}
        reply = send(server, "GET", f"/{repo}/main/secret.txt", headers)
        assert reply.status == status, (value, reply.body)
        assert reply.code in ("AuthorizationHeaderMalformed", "InvalidRequest",
                              "AccessDenied"), reply.body
    # A well-formed SigV2 header with a wrong signature.
    headers = {**base, "Authorization": f"AWS {server.access_key}:c2lnbmF0dXJlc2lnbmF0dXJl"}
    reply = send(server, "GET", f"/{repo}/main/secret.txt", headers)
    assert_error(reply, 403, "SignatureDoesNotMatch")


def test_wrong_credential_date_or_region(server: Server, repo: str) -> None:
    headers = sign(server, "GET", f"/{repo}/main/secret.txt")
    today = headers["X-Amz-Date"][:8]
    yesterday = (utcnow() - dt.timedelta(days=1)).strftime("%Y%m%d")
    bad_date = {**headers, "Authorization": headers["Authorization"].replace(today, yesterday)}
    reply = send(server, "GET", f"/{repo}/main/secret.txt", bad_date)
    assert_error(reply, 400, "AuthorizationHeaderMalformed")
    other_region = {**headers,
                    "Authorization": headers["Authorization"].replace("us-east-1", "eu-west-1")}
    reply = send(server, "GET", f"/{repo}/main/secret.txt", other_region)
    assert_error(reply, 403, "SignatureDoesNotMatch")


def test_two_auth_mechanisms_at_once(server: Server, repo: str) -> None:
    url = presign(server, "GET", f"/{repo}/main/secret.txt")
    headers = sign(server, "GET", url)
    assert_error(send(server, "GET", url, headers), 400, "InvalidRequest")


# -- presigned URLs -------------------------------------------------------------------------


def plain_get(server: Server, target: str, method: str = "GET", body: bytes = b"",
              headers: dict[str, str] | None = None) -> Reply:
    out = {"Host": server.endpoint.split("//")[1], **(headers or {})}
    if body or method == "PUT":
        out["Content-Length"] = str(len(body))
    return send(server, method, target, out, body)


def test_presigned_get_and_put(server: Server, repo: str) -> None:
    url = presign(server, "GET", f"/{repo}/main/secret.txt")
    assert plain_get(server, url).body == b"secret"
    put = presign(server, "PUT", f"/{repo}/main/presigned.txt")
    assert plain_get(server, put, "PUT", b"via url").status == 200
    assert plain_get(server, presign(server, "GET", f"/{repo}/main/presigned.txt")).body == \
        b"via url"
    listing = plain_get(server, presign(server, "GET", f"/{repo}?list-type=2"))
    assert listing.status == 200 and b"presigned.txt" in listing.body


def test_presigned_expired(server: Server, repo: str) -> None:
    url = presign(server, "GET", f"/{repo}/main/secret.txt", expires=60,
                  at=utcnow() - dt.timedelta(minutes=5))
    reply = plain_get(server, url)
    assert_error(reply, 403, "AccessDenied")
    assert b"expired" in reply.body.lower()


def test_presigned_signed_long_ago_but_still_valid(server: Server, repo: str) -> None:
    # AWS: valid while now <= X-Amz-Date + X-Amz-Expires, even long after signing
    url = presign(server, "GET", f"/{repo}/main/secret.txt", expires=7200,
                  at=utcnow() - dt.timedelta(minutes=30))
    assert plain_get(server, url).body == b"secret"


def test_presigned_not_yet_valid(server: Server, repo: str) -> None:
    url = presign(server, "GET", f"/{repo}/main/secret.txt",
                  at=utcnow() + dt.timedelta(minutes=20))
    assert_error(plain_get(server, url), 403, "AccessDenied")


def test_presigned_tampered(server: Server, repo: str) -> None:
    url = presign(server, "GET", f"/{repo}/main/secret.txt")
    at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = url[:at] + ("1" if url[at] == "0" else "0") + url[at + 1:]
    assert_error(plain_get(server, flipped), 403, "SignatureDoesNotMatch")
    other_key = url.replace("/main/secret.txt", "/main/other.txt")
    assert_error(plain_get(server, other_key), 403, "SignatureDoesNotMatch")
    longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=600")
    assert_error(plain_get(server, longer), 403, "SignatureDoesNotMatch")
    extra = url + "&response-content-type=text%2Fhtml"
    assert_error(plain_get(server, extra), 403, "SignatureDoesNotMatch")
    as_put = presign(server, "GET", f"/{repo}/main/new.txt")
    assert_error(plain_get(server, as_put, "PUT", b"x"), 403, "SignatureDoesNotMatch")
    as_delete = presign(server, "GET", f"/{repo}/main/secret.txt")
    assert_error(plain_get(server, as_delete, "DELETE"), 403, "SignatureDoesNotMatch")
    unchanged(server, repo)


@pytest.mark.parametrize("expires", ["0", "-1", "604801", "abc", "99999999999"])
def test_presigned_bad_expires(server: Server, repo: str, expires: str) -> None:
    url = presign(server, "GET", f"/{repo}/main/secret.txt")
    bad = url.replace("X-Amz-Expires=300", f"X-Amz-Expires={expires}")
    assert_error(plain_get(server, bad), 400, "AuthorizationQueryParametersError")


@pytest.mark.parametrize("param", ["X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                                   "X-Amz-SignedHeaders", "X-Amz-Algorithm"])
def test_presigned_missing_parameter(server: Server, repo: str, param: str) -> None:
    path, query = presign(server, "GET", f"/{repo}/main/secret.txt").split("?", 1)
    kept = "&".join(p for p in query.split("&") if not p.startswith(param + "="))
    assert_error(plain_get(server, f"{path}?{kept}"), 400, "AuthorizationQueryParametersError")


def test_presigned_signed_header_must_be_sent(server: Server, repo: str) -> None:
    url = presign(server, "GET", f"/{repo}/main/secret.txt", headers={"x-amz-meta-a": "1"})
    assert "x-amz-meta-a" in url
    assert plain_get(server, url, headers={"x-amz-meta-a": "1"}).status == 200
    assert plain_get(server, url).status in (400, 403)
    assert plain_get(server, url, headers={"x-amz-meta-a": "2"}).status == 403


# -- SigV2 (boto3's default presigner in us-east-1; signature_version='s3') ----------------


def presign_v2(server: Server, method: str, target: str, *, expires: int = 300,
               at: dt.datetime | None = None, access_key: str | None = None,
               secret_key: str | None = None) -> str:
    """A SigV2 presigned path+query (botocore HmacV1QueryAuth), `expires` after `at`."""
    request = AWSRequest(method=method, url=server.endpoint + target)
    creds = Credentials(access_key or server.access_key, secret_key or server.secret_key)
    signed_at = (at or utcnow()).replace(tzinfo=dt.UTC).timestamp()
    with mock.patch.object(HmacV1QueryAuth, "_get_date",
                           return_value=str(int(signed_at) + expires)):
        HmacV1QueryAuth(creds, expires=expires).add_auth(request)
    parts = urlsplit(request.url)
    return f"{parts.path}?{parts.query}"


def sign_v2(server: Server, method: str, target: str, *, at: dt.datetime | None = None,
            headers: dict[str, str] | None = None, access_key: str | None = None,
            secret_key: str | None = None) -> dict[str, str]:
    """Host, Date and `Authorization: AWS AK:sig` headers (botocore HmacV1Auth) at `at`."""
    request = AWSRequest(method=method, url=server.endpoint + target, headers=headers or {})
    creds = Credentials(access_key or server.access_key, secret_key or server.secret_key)
    date = formatdate((at or utcnow()).replace(tzinfo=dt.UTC).timestamp(), usegmt=True)
    with mock.patch.object(HmacV1Auth, "_get_date", return_value=date):
        HmacV1Auth(creds).add_auth(request)
    return {"Host": urlsplit(server.endpoint).netloc, **dict(request.headers.items())}


def test_presigned_sigv2_accepted(server: Server, repo: str) -> None:
    url = presign_v2(server, "GET", f"/{repo}/main/secret.txt")
    assert "AWSAccessKeyId=" in url and "X-Amz-" not in url
    assert plain_get(server, url).body == b"secret"
    put = presign_v2(server, "PUT", f"/{repo}/main/v2.txt")
    assert plain_get(server, put, "PUT", b"via v2 url").status == 200
    assert plain_get(server, presign_v2(server, "GET", f"/{repo}/main/v2.txt")).body == \
        b"via v2 url"
    # Signed long ago, still valid: only Expires counts.
    old = presign_v2(server, "GET", f"/{repo}/main/secret.txt", expires=7200,
                     at=utcnow() - dt.timedelta(hours=1))
    assert plain_get(server, old).body == b"secret"
    delete = presign_v2(server, "DELETE", f"/{repo}/main/v2.txt")
    assert plain_get(server, delete, "DELETE").status == 204


def test_presigned_sigv2_refused_when_wrong(server: Server, repo: str) -> None:
    target = f"/{repo}/main/secret.txt"
    forged = (f"{target}?AWSAccessKeyId={server.access_key}"
              f"&Signature=c2lnbmF0dXJlc2lnbmF0dXJl&Expires={int(utcnow().timestamp()) + 60}")
    assert_error(plain_get(server, forged), 403, "SignatureDoesNotMatch")
    expired = presign_v2(server, "GET", target, expires=60,
                         at=utcnow() - dt.timedelta(minutes=5))
    reply = plain_get(server, expired)
    assert_error(reply, 403, "AccessDenied")
    assert b"expired" in reply.body.lower()
    eight_days = presign_v2(server, "GET", target, expires=8 * 86400)
    assert_error(plain_get(server, eight_days), 400, "AuthorizationQueryParametersError")
    assert_error(plain_get(server, f"{target}?AWSAccessKeyId=AK&Signature=x&Expires=9999999999"),
                 400, "AuthorizationQueryParametersError")
    url = presign_v2(server, "GET", target)
    assert_error(plain_get(server, url.replace("/main/secret.txt", "/main/other.txt")), 403,
                 "SignatureDoesNotMatch")
    assert_error(plain_get(server, url + "&response-content-type=text%2Fhtml"), 403,
                 "SignatureDoesNotMatch")
    assert_error(plain_get(server, url, "DELETE"), 403, "SignatureDoesNotMatch")
    put = presign_v2(server, "PUT", f"/{repo}/main/new.txt")
    assert_error(plain_get(server, put, "PUT", b"x",
                           headers={"x-amz-copy-source": f"/{repo}/main/secret.txt"}),
                 403, "SignatureDoesNotMatch")
    wrong = presign_v2(server, "GET", target, secret_key="wrong")
    assert_error(plain_get(server, wrong), 403, "SignatureDoesNotMatch")
    unknown = presign_v2(server, "GET", target, access_key="AKLPUNKNOWN000000000")
    assert_error(plain_get(server, unknown), 403, "InvalidAccessKeyId")
    mixed = presign(server, "GET", target) + "&AWSAccessKeyId=AK&Signature=x&Expires=1"
    assert_error(plain_get(server, mixed), 400, "InvalidRequest")
    unchanged(server, repo)


def test_sigv2_header_auth(server: Server, repo: str) -> None:
    target = f"/{repo}/main/secret.txt"
    assert send(server, "GET", target, sign_v2(server, "GET", target)).body == b"secret"
    put_target = f"/{repo}/main/v2-header.txt"
    headers = sign_v2(server, "PUT", put_target, headers={"Content-Type": "text/plain",
                                                          "Content-Length": "2"})
    assert send(server, "PUT", put_target, headers, b"ok").status == 200
    assert send(server, "GET", put_target, sign_v2(server, "GET", put_target)).body == b"ok"
    skewed = sign_v2(server, "GET", target, at=utcnow() - dt.timedelta(minutes=20))
    assert_error(send(server, "GET", target, skewed), 403, "RequestTimeTooSkewed")
    future = sign_v2(server, "GET", target, at=utcnow() + dt.timedelta(minutes=20))
    assert_error(send(server, "GET", target, future), 403, "RequestTimeTooSkewed")
    wrong = sign_v2(server, "GET", target, secret_key="wrong")
    assert_error(send(server, "GET", target, wrong), 403, "SignatureDoesNotMatch")
    unknown = sign_v2(server, "GET", target, access_key="AKLPUNKNOWN000000000")
    assert_error(send(server, "GET", target, unknown), 403, "InvalidAccessKeyId")
    other_path = sign_v2(server, "GET", f"/{repo}/main/other.txt")
    assert_error(send(server, "GET", target, other_path), 403, "SignatureDoesNotMatch")
    evil = sign_v2(server, "PUT", f"/{repo}/main/new.txt",
                   headers={"Content-Length": "4"})
    assert_error(send(server, "PUT", f"/{repo}/main/new.txt",
                      {**evil, "x-amz-meta-unsigned": "1"}, b"evil"),
                 403, "SignatureDoesNotMatch")
    chunked = sign_v2(server, "PUT", f"/{repo}/main/new.txt", headers={
        "Content-Length": "4", "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
    assert_error(send(server, "PUT", f"/{repo}/main/new.txt", chunked, b"evil"), 400,
                 "InvalidRequest")
    both = sign_v2(server, "GET", presign_v2(server, "GET", target))
    assert_error(send(server, "GET", presign_v2(server, "GET", target), both), 400,
                 "InvalidRequest")
    unchanged(server, repo)


# -- anonymous --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "target"), [
    ("GET", "/"),
    ("GET", "/{b}"),
    ("GET", "/{b}?list-type=2"),
    ("HEAD", "/{b}"),
    ("PUT", "/{b}"),
    ("DELETE", "/{b}"),
    ("GET", "/{b}/main/secret.txt"),
    ("HEAD", "/{b}/main/secret.txt"),
    ("PUT", "/{b}/main/new.txt"),
    ("DELETE", "/{b}/main/secret.txt"),
    ("POST", "/{b}?delete="),
    ("POST", "/{b}/main/new.txt?uploads="),
    ("GET", "/{b}?policy="),
    ("GET", "/no-such-repo/main/x"),
    ("PATCH", "/{b}/main/secret.txt"),
])
def test_anonymous_requests_are_refused(server: Server, repo: str, method: str,
                                        target: str) -> None:
    reply = plain_get(server, target.format(b=repo), method,
                      b"x" if method in ("PUT", "POST") else b"")
    assert_error(reply, 403, None if method == "HEAD" else "AccessDenied")
    unchanged(server, repo)


def test_anonymous_conditional_reads_leak_nothing(server: Server, repo: str, s3: Any) -> None:
    etag = s3.head_object(Bucket=repo, Key="main/secret.txt")["ETag"]
    for headers in ({"If-None-Match": etag}, {"If-Match": '"wrong"'},
                    {"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"},
                    {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
                    {"Range": "bytes=999-"}):
        for method in ("GET", "HEAD"):
            reply = plain_get(server, f"/{repo}/main/secret.txt", method, headers=headers)
            assert reply.status == 403, (headers, method, reply.status)
            assert reply.header("ETag") is None and reply.header("Last-Modified") is None
    # and with a bad signature too
    reply = call(server, "GET", f"/{repo}/main/secret.txt", headers={"If-None-Match": etag},
                 secret_key="wrong")
    assert reply.status == 403 and reply.header("ETag") is None


def test_internal_metadata_headers_are_not_stored(server: Server, repo: str, s3: Any) -> None:
    reply = call(server, "PUT", f"/{repo}/main/meta.txt", b"m", headers={
        "x-lakeproxy-internal": "1", "x-amz-meta-ok": "yes", "x-amz-server-side-encryption-x": "1",
    })
    assert reply.status == 200
    head = s3.head_object(Bucket=repo, Key="main/meta.txt")
    assert head["Metadata"] == {"ok": "yes"}
    raw = call(server, "HEAD", f"/{repo}/main/meta.txt")
    assert raw.header("x-lakeproxy-internal") is None
