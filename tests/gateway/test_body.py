"""The request body decoder: plain bodies, aws-chunked framing, chunk and trailer signatures,
checksums and Content-MD5.

Bodies come from botocore itself where it can make them (AwsChunkedWrapper for boto3's
STREAMING-UNSIGNED-PAYLOAD-TRAILER uploads, header checksums from apply_request_checksum),
from the AWS documentation examples (signed chunks and signed trailers, with AWS's own
signatures), and from a small signer written here from the AWS spec.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import urlsplit

import pytest
from awscrt import checksums as crt
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpchecksum import _CHECKSUM_CLS, AwsChunkedWrapper, apply_request_checksum
from multidict import CIMultiDict, CIMultiDictProxy

from lakeproxy.gateway.body import RequestBody
from lakeproxy.gateway.errors import (
    BadDigest,
    EntityTooLarge,
    IncompleteBody,
    InvalidDigest,
    InvalidRequest,
    MissingContentLength,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from lakeproxy.gateway.sigv4 import AuthContext, PayloadMode, authenticate

AK = "AKIDLAKEPROXYTEST"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HTTP = "http://127.0.0.1:9000/bucket/key"
HTTPS = "https://127.0.0.1:9443/bucket/key"
ALGORITHMS = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"]
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


async def lookup(access_key: str) -> str | None:
    return {AK: SK}.get(access_key)


def reference_checksum(algorithm: str, data: bytes) -> str:
    """Base64 of the big-endian digest, computed independently of the decoder."""
    if algorithm in ("sha1", "sha256"):
        digest = hashlib.new(algorithm, data).digest()
    elif algorithm == "crc64nvme":
        digest = crt.crc64nvme(data).to_bytes(8, "big")
    else:
        digest = getattr(crt, algorithm)(data).to_bytes(4, "big")
    return base64.b64encode(digest).decode()


# --------------------------------------------------------------------------------------------
# Sources and consumers


async def pieces(raw: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for i in range(0, len(raw), size):
        yield raw[i : i + size]


async def random_pieces(raw: bytes, seed: int) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    i = 0
    while i < len(raw):
        n = rng.choice([1, 1, 2, 3, 5, 7, 64, 4096])
        yield raw[i : i + n]
        i += n


SPLITS = ["whole", "1", "2", "3", "7", "random1", "random2"]


def split(raw: bytes, how: str) -> AsyncIterator[bytes]:
    if how == "whole":
        return pieces(raw, max(1, len(raw)))
    if how.startswith("random"):
        return random_pieces(raw, int(how[6:]))
    return pieces(raw, int(how))


async def read_all(body: RequestBody) -> bytes:
    return b"".join([piece async for piece in body])


async def read_until_error(body: RequestBody) -> tuple[bytes, BaseException]:
    """Everything yielded before the error, and the error (the test fails if none)."""
    got = bytearray()
    try:
        async for piece in body:
            got += piece
    except Exception as error:
        return bytes(got), error
    raise AssertionError("the body was accepted")


# --------------------------------------------------------------------------------------------
# Signed requests


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: object = b"",
    *,
    signer: type = S3SigV4Auth,
    context: dict | None = None,
) -> tuple[str, str, str, CIMultiDictProxy[str]]:
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    if context:
        request.context.update(context)
    with mock.patch("botocore.auth.get_current_datetime", return_value=AT.replace(tzinfo=None)):
        signer(Credentials(AK, SK), "s3", "us-east-1").add_auth(request)
    parts = urlsplit(request.url)
    h = CIMultiDict(request.headers.items())
    h["Host"] = parts.netloc
    return method, parts.path, parts.query, CIMultiDictProxy(h)


async def auth_of(wire: tuple[str, str, str, CIMultiDictProxy[str]]) -> AuthContext:
    method, path, query, headers = wire
    return await authenticate(method, path, query, headers, lookup_secret=lookup, now=AT)


def with_headers(headers: CIMultiDictProxy[str], **changes: str | None) -> CIMultiDictProxy[str]:
    h = CIMultiDict(headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        h.popall(name, None)
        if value is not None:
            h[name] = value
    return CIMultiDictProxy(h)


async def plain_put(
    data: bytes, headers: dict[str, str] | None = None, *, unsigned: bool = False
) -> tuple[AuthContext, CIMultiDictProxy[str]]:
    headers = dict(headers or {})
    headers.setdefault("Content-Length", str(len(data)))
    context = {"client_config": Config(s3={"payload_signing_enabled": False})} if unsigned else {}
    wire = sign("PUT", HTTPS if unsigned else HTTP, headers, data, context=context)
    return await auth_of(wire), wire[3]


async def boto3_header_checksum_put(
    data: bytes, algorithm: str, *, https: bool
) -> tuple[AuthContext, CIMultiDictProxy[str]]:
    """botocore's flexible checksum in header form (its default over plain http)."""
    request_dict = {
        "headers": {"Content-Length": str(len(data))},
        "body": data,
        "context": {
            "checksum": {
                "request_algorithm": {
                    "in": "header",
                    "name": f"x-amz-checksum-{algorithm}",
                    "algorithm": algorithm,
                },
                "request_algorithm_header": {
                    "name": "x-amz-sdk-checksum-algorithm",
                    "value": algorithm.upper(),
                },
            }
        },
    }
    apply_request_checksum(request_dict)
    if https:
        # With a checksum over https botocore leaves the payload unsigned.
        request_dict["context"]["client_config"] = Config(s3={"payload_signing_enabled": False})
    wire = sign(
        "PUT",
        HTTPS if https else HTTP,
        request_dict["headers"],
        data,
        context=request_dict["context"],
    )
    return await auth_of(wire), wire[3]


async def boto3_trailer_put(
    data: bytes, algorithm: str, chunk_size: int | None = None
) -> tuple[AuthContext, CIMultiDictProxy[str], bytes]:
    """What boto3 sends for PutObject over https: STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    name = f"x-amz-checksum-{algorithm}"
    request_dict = {
        "headers": {"Content-Length": str(len(data))},
        "body": data,
        "context": {
            "checksum": {
                "request_algorithm": {"in": "trailer", "name": name, "algorithm": algorithm},
                "request_algorithm_header": {
                    "name": "x-amz-sdk-checksum-algorithm",
                    "value": algorithm.upper(),
                },
            }
        },
    }
    apply_request_checksum(request_dict)
    wrapper = request_dict["body"]
    assert isinstance(wrapper, AwsChunkedWrapper)
    if chunk_size is not None:
        wrapper = AwsChunkedWrapper(
            io.BytesIO(data),
            checksum_cls=_CHECKSUM_CLS[algorithm],
            checksum_name=name,
            chunk_size=chunk_size,
        )
    wire = sign("PUT", HTTPS, request_dict["headers"], wrapper, context=request_dict["context"])
    raw = wrapper.read()
    headers = wire[3]
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert headers["Content-Encoding"] == "aws-chunked"
    assert "Content-Length" not in headers
    return await auth_of(wire), headers, raw


def _signing_key(secret: str, date: str, region: str = "us-east-1") -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def signed_chunked_body(
    data: bytes,
    chunk_size: int,
    *,
    key: bytes,
    amz_date: str,
    scope: str,
    seed: str,
    trailer: tuple[str, str] | None = None,
) -> bytes:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] framing, per the AWS spec."""
    out = bytearray()
    previous = seed
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for chunk in chunks:
        previous = _hmac_hex(
            key,
            "\n".join(
                [
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    amz_date,
                    scope,
                    previous,
                    EMPTY_SHA256,
                    hashlib.sha256(chunk).hexdigest(),
                ]
            ),
        )
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode()
        if chunk:
            out += chunk + b"\r\n"
    if trailer is not None:
        name, value = trailer
        canonical = f"{name}:{value}\n"
        trailer_signature = _hmac_hex(
            key,
            "\n".join(
                [
                    "AWS4-HMAC-SHA256-TRAILER",
                    amz_date,
                    scope,
                    previous,
                    hashlib.sha256(canonical.encode()).hexdigest(),
                ]
            ),
        )
        out += f"{name}:{value}\r\nx-amz-trailer-signature:{trailer_signature}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


async def signed_streaming_put(
    data: bytes, chunk_size: int, *, trailer_algorithm: str | None = None
) -> tuple[AuthContext, CIMultiDictProxy[str], bytes]:
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer_algorithm else "")
    headers = {
        "X-Amz-Content-SHA256": mode,
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(data)),
    }
    trailer = None
    if trailer_algorithm:
        name = f"x-amz-checksum-{trailer_algorithm}"
        headers["X-Amz-Trailer"] = name
        trailer = (name, reference_checksum(trailer_algorithm, data))
    # The generic signer signs the X-Amz-Content-SHA256 value it is given.
    wire = sign("PUT", HTTP, headers, signer=SigV4Auth)
    ctx = await auth_of(wire)
    raw = signed_chunked_body(
        data,
        chunk_size,
        key=_signing_key(SK, "20260301"),
        amz_date="20260301T120000Z",
        scope="20260301/us-east-1/s3/aws4_request",
        seed=wire[3]["Authorization"].rsplit("Signature=", 1)[1],
        trailer=trailer,
    )
    return ctx, with_headers(wire[3], Content_Length=str(len(raw))), raw


# --------------------------------------------------------------------------------------------
# Plain bodies


@pytest.mark.parametrize("how", ["whole", "1", "random1"])
async def test_plain_signed_body(how: str) -> None:
    data = bytes(range(256)) * 40
    ctx, headers = await plain_put(data)
    body = RequestBody(split(data, how), ctx, headers)
    assert await read_all(body) == data
    assert body.size == len(data)
    assert body.checksums == {}
    assert body.content_md5 is None


async def test_plain_empty_body() -> None:
    ctx, headers = await plain_put(b"")
    body = RequestBody(pieces(b""), ctx, headers)
    assert await read_all(body) == b""
    assert body.size == 0


async def test_plain_sha_mismatch_raises_on_last_anext() -> None:
    data = b"a" * 10_000
    ctx, headers = await plain_put(data)
    tampered = b"a" * 9_999 + b"b"
    body = RequestBody(pieces(tampered, 1000), ctx, headers)
    got, error = await read_until_error(body)
    assert isinstance(error, XAmzContentSHA256Mismatch)
    assert got == tampered  # every piece was streamed, but the iteration never ended cleanly


async def test_plain_short_body() -> None:
    data = b"0123456789"
    ctx, headers = await plain_put(data)
    _, error = await read_until_error(RequestBody(pieces(data[:5]), ctx, headers))
    assert isinstance(error, IncompleteBody)


async def test_plain_long_body() -> None:
    ctx, headers = await plain_put(b"0123456789", unsigned=True)
    _, error = await read_until_error(RequestBody(pieces(b"0123456789X"), ctx, headers))
    assert isinstance(error, InvalidRequest)


async def test_plain_unsigned_body_without_content_length() -> None:
    data = b"streamed with transfer-encoding chunked"
    ctx, headers = await plain_put(data, unsigned=True)
    headers = with_headers(headers, Content_Length=None)
    assert ctx.payload_mode is PayloadMode.UNSIGNED
    assert await read_all(RequestBody(pieces(data, 3), ctx, headers)) == data


async def test_bad_content_length_header() -> None:
    ctx, headers = await plain_put(b"x", unsigned=True)
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b"x"), ctx, with_headers(headers, Content_Length="-1"))


# --------------------------------------------------------------------------------------------
# Header checksums (botocore's flexible checksums) and Content-MD5


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("https", [False, True])
async def test_header_checksum(algorithm: str, https: bool) -> None:
    data = b"flexible checksums " * 1000
    ctx, headers = await boto3_header_checksum_put(data, algorithm, https=https)
    assert ctx.payload_mode is (PayloadMode.UNSIGNED if https else PayloadMode.SIGNED_SHA256)
    body = RequestBody(split(data, "random1"), ctx, headers)
    assert await read_all(body) == data
    assert body.checksums == {algorithm: reference_checksum(algorithm, data)}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_header_checksum_mismatch(algorithm: str) -> None:
    data = b"flexible checksums " * 1000
    ctx, headers = await boto3_header_checksum_put(data, algorithm, https=True)
    tampered = data[:-1] + b"!"
    body = RequestBody(pieces(tampered, 4096), ctx, headers)
    got, error = await read_until_error(body)
    assert isinstance(error, BadDigest)
    assert got == tampered
    assert body.checksums == {}


@pytest.mark.parametrize("value", ["not base64!", "AAAA", "AAAAAAAAAAAAAAAAAAAAAA=="])
async def test_header_checksum_malformed(value: str) -> None:
    ctx, headers = await boto3_header_checksum_put(b"data", "crc32", https=True)
    with pytest.raises(InvalidDigest):
        RequestBody(pieces(b"data"), ctx, with_headers(headers, x_amz_checksum_crc32=value))


async def test_two_checksum_headers_rejected() -> None:
    ctx, headers = await boto3_header_checksum_put(b"data", "crc32", https=True)
    headers = with_headers(headers, x_amz_checksum_sha1=reference_checksum("sha1", b"data"))
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b"data"), ctx, headers)


async def test_sdk_algorithm_without_checksum_rejected() -> None:
    ctx, headers = await boto3_header_checksum_put(b"data", "crc32", https=True)
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b"data"), ctx, with_headers(headers, x_amz_checksum_crc32=None))
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b"data"), ctx, with_headers(headers, x_amz_sdk_checksum_algorithm="MD4"))


async def test_content_md5_good() -> None:
    data = b"rclone sends Content-MD5" * 50
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    ctx, headers = await plain_put(data, {"Content-MD5": md5}, unsigned=True)
    body = RequestBody(split(data, "7"), ctx, headers)
    assert await read_all(body) == data
    assert body.content_md5 == md5


async def test_content_md5_bad() -> None:
    data = b"rclone sends Content-MD5"
    md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    ctx, headers = await plain_put(data, {"Content-MD5": md5}, unsigned=True)
    _, error = await read_until_error(RequestBody(pieces(data), ctx, headers))
    assert isinstance(error, BadDigest)


@pytest.mark.parametrize("value", ["", "zzzz", "AAAA", hashlib.md5(b"x").hexdigest()])
async def test_content_md5_malformed(value: str) -> None:
    ctx, headers = await plain_put(b"x", unsigned=True)
    with pytest.raises(InvalidDigest):
        RequestBody(pieces(b"x"), ctx, with_headers(headers, Content_MD5=value))


async def test_content_md5_with_aws_chunked_body() -> None:
    data = b"0123456789" * 100
    ctx, headers, raw = await boto3_trailer_put(data, "crc32", chunk_size=64)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    body = RequestBody(pieces(raw, 5), ctx, with_headers(headers, Content_MD5=md5))
    assert await read_all(body) == data
    assert body.content_md5 == md5


# --------------------------------------------------------------------------------------------
# boto3's aws-chunked bodies with an unsigned trailer


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("how", SPLITS)
async def test_boto3_unsigned_trailer(algorithm: str, how: str) -> None:
    data = bytes(random.Random(7).randbytes(3000))
    ctx, headers, raw = await boto3_trailer_put(data, algorithm, chunk_size=1000)
    assert ctx.payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER
    assert ctx.trailer == f"x-amz-checksum-{algorithm}"
    assert ctx.decoded_length == len(data)
    body = RequestBody(split(raw, how), ctx, headers)
    assert await read_all(body) == data
    assert body.size == len(data)
    assert body.checksums == {algorithm: reference_checksum(algorithm, data)}


async def test_boto3_default_chunk_size() -> None:
    data = random.Random(1).randbytes(2_500_000)
    ctx, headers, raw = await boto3_trailer_put(data, "crc32")
    assert raw.startswith(b"100000\r\n")
    body = RequestBody(pieces(raw, 65536), ctx, headers)
    assert await read_all(body) == data
    assert body.checksums == {"crc32": reference_checksum("crc32", data)}


async def test_boto3_empty_object() -> None:
    ctx, headers, raw = await boto3_trailer_put(b"", "crc32")
    assert raw.startswith(b"0\r\nx-amz-checksum-crc32:")
    body = RequestBody(pieces(raw, 1), ctx, headers)
    assert await read_all(body) == b""
    assert body.checksums == {"crc32": reference_checksum("crc32", b"")}


async def test_unsigned_trailer_checksum_mismatch() -> None:
    data = b"x" * 5000
    ctx, headers, raw = await boto3_trailer_put(data, "crc32c", chunk_size=1000)
    good = reference_checksum("crc32c", data).encode()
    bad = reference_checksum("crc32c", b"y" * 5000).encode()
    got, error = await read_until_error(
        RequestBody(pieces(raw.replace(good, bad), 3), ctx, headers)
    )
    assert isinstance(error, BadDigest)
    assert got == data  # the data streamed, the end never came


async def test_unsigned_trailer_tampered_data() -> None:
    data = b"x" * 5000
    ctx, headers, raw = await boto3_trailer_put(data, "sha256", chunk_size=1000)
    tampered = raw.replace(b"x" * 1000, b"x" * 999 + b"z", 1)
    _, error = await read_until_error(RequestBody(pieces(tampered, 100), ctx, headers))
    assert isinstance(error, BadDigest)


async def test_unsigned_trailer_name_mismatch() -> None:
    data = b"x" * 100
    ctx, headers, raw = await boto3_trailer_put(data, "crc32")
    renamed = raw.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-crc32c:")
    _, error = await read_until_error(RequestBody(pieces(renamed), ctx, headers))
    assert isinstance(error, InvalidRequest)


async def test_unsigned_trailer_missing() -> None:
    data = b"x" * 100
    ctx, headers, raw = await boto3_trailer_put(data, "crc32")
    cut = raw[: raw.index(b"0\r\nx-amz-checksum")] + b"0\r\n\r\n"
    _, error = await read_until_error(RequestBody(pieces(cut), ctx, headers))
    assert isinstance(error, InvalidRequest)


async def test_unsigned_trailer_without_final_crlf_is_accepted() -> None:
    data = b"x" * 100
    ctx, headers, raw = await boto3_trailer_put(data, "crc32")
    assert raw.endswith(b"\r\n\r\n")
    assert await read_all(RequestBody(pieces(raw[:-2]), ctx, headers)) == data


@pytest.mark.parametrize("delta", [-1, 1])
async def test_decoded_length_mismatch(delta: int) -> None:
    data = b"x" * 1000
    ctx, headers, raw = await boto3_trailer_put(data, "crc32", chunk_size=100)
    ctx = dataclasses.replace(ctx, decoded_length=len(data) + delta)
    got, error = await read_until_error(RequestBody(pieces(raw, 10), ctx, headers))
    assert isinstance(error, IncompleteBody if delta > 0 else InvalidRequest)
    assert len(got) <= len(data) + min(delta, 0)


async def test_truncated_chunked_body() -> None:
    data = b"x" * 1000
    ctx, headers, raw = await boto3_trailer_put(data, "crc32", chunk_size=100)
    for cut in (5, len(raw) // 2, raw.index(b"0\r\nx-amz") + 1, len(raw) - 10):
        _, error = await read_until_error(RequestBody(pieces(raw[:cut], 7), ctx, headers))
        assert isinstance(error, IncompleteBody), cut


async def test_data_after_final_chunk() -> None:
    data = b"x" * 100
    ctx, headers, raw = await boto3_trailer_put(data, "crc32")
    _, error = await read_until_error(RequestBody(pieces(raw + b"5\r\nhello\r\n"), ctx, headers))
    assert isinstance(error, InvalidRequest)


@pytest.mark.parametrize(
    "frame",
    [
        b"zz\r\nab\r\n0\r\n\r\n",  # not hex
        b"2\nab\r\n0\r\n\r\n",  # bare LF
        b"2;foo=bar\r\nab\r\n0\r\n\r\n",  # unknown extension
        b"2\r\nabX\r\n0\r\n\r\n",  # data longer than the size
        b"2;chunk-signature=" + b"0" * 64 + b"\r\nab\r\n0\r\n\r\n",  # signature when unsigned
        b"12345678901234567\r\n",  # absurd size
    ],
)
async def test_malformed_framing(frame: bytes) -> None:
    ctx, headers, _ = await boto3_trailer_put(b"ab", "crc32")
    headers = with_headers(headers, x_amz_trailer=None, x_amz_sdk_checksum_algorithm=None)
    ctx = dataclasses.replace(ctx, trailer=None)
    _, error = await read_until_error(RequestBody(pieces(frame, 1), ctx, headers))
    assert isinstance(error, InvalidRequest)


async def test_oversized_chunk_header() -> None:
    ctx, headers, _ = await boto3_trailer_put(b"ab", "crc32")
    raw = b"2;" + b"a" * 10_000 + b"\r\nab\r\n"
    got, error = await read_until_error(RequestBody(pieces(raw, 1), ctx, headers))
    assert isinstance(error, InvalidRequest)
    assert got == b""


async def test_oversized_trailer_line() -> None:
    ctx, headers, _ = await boto3_trailer_put(b"ab", "crc32")
    raw = b"2\r\nab\r\n0\r\nx-amz-checksum-crc32:" + b"A" * 10_000 + b"\r\n\r\n"
    _, error = await read_until_error(RequestBody(pieces(raw, 512), ctx, headers))
    assert isinstance(error, InvalidRequest)


async def test_unsigned_chunks_stream_with_bounded_memory() -> None:
    data = b"z" * (8 << 20)
    ctx, headers, raw = await boto3_trailer_put(data, "crc32", chunk_size=len(data))
    consumed = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for piece in pieces(raw, 65536):
            consumed += len(piece)
            yield piece

    body = RequestBody(source(), ctx, headers)
    first = await body.__anext__()
    assert 0 < len(first) <= 65536
    assert consumed <= 2 * 65536  # yielded long before the 8 MiB chunk was complete
    rest = await read_all(body)
    assert first + rest == data


async def test_trailer_header_requires_trailer_mode() -> None:
    ctx, headers = await plain_put(b"x", unsigned=True)
    ctx = dataclasses.replace(ctx, trailer="x-amz-checksum-crc32")
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b"x"), ctx, headers)


async def test_unknown_trailer_rejected() -> None:
    ctx, headers, _ = await boto3_trailer_put(b"x", "crc32")
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b""), dataclasses.replace(ctx, trailer="x-amz-meta-foo"), headers)


async def test_aws_chunked_with_signed_sha256_rejected() -> None:
    ctx, headers = await plain_put(b"x")
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b"x"), ctx, with_headers(headers, Content_Encoding="aws-chunked"))


async def test_unsigned_payload_with_aws_chunked_encoding_is_decoded() -> None:
    ctx, headers = await plain_put(b"x", unsigned=True)
    raw = b"3\r\nabc\r\n0\r\n\r\n"
    headers = with_headers(headers, Content_Encoding="gzip, aws-chunked", Content_Length=None)
    assert await read_all(RequestBody(pieces(raw, 2), ctx, headers)) == b"abc"


async def test_chunked_content_length_counts_encoded_bytes() -> None:
    data = b"x" * 100
    ctx, headers, raw = await boto3_trailer_put(data, "crc32", chunk_size=30)
    ok = with_headers(headers, Content_Length=str(len(raw)))
    assert await read_all(RequestBody(pieces(raw, 9), ctx, ok)) == data
    short = with_headers(headers, Content_Length=str(len(raw) + 5))
    _, error = await read_until_error(RequestBody(pieces(raw, 9), ctx, short))
    assert isinstance(error, IncompleteBody)


# --------------------------------------------------------------------------------------------
# Signed chunks: the AWS documentation examples (signatures computed by AWS)

DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = datetime(2013, 5, 24, tzinfo=UTC)


async def _doc_ctx(trailer: bool) -> tuple[AuthContext, CIMultiDictProxy[str]]:
    from tests.gateway.test_sigv4 import aws_doc_streaming_headers

    async def doc_lookup(access_key: str) -> str | None:
        return DOC_SECRET

    headers = aws_doc_streaming_headers(trailer)
    ctx = await authenticate(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        headers,
        lookup_secret=doc_lookup,
        now=DOC_NOW,
    )
    return ctx, headers


DOC_CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
DOC_TRAILER_CHUNK_SIGNATURES = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
]
DOC_TRAILER = b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
DOC_TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"


def aws_doc_body(trailer: bool) -> bytes:
    sigs = DOC_TRAILER_CHUNK_SIGNATURES if trailer else DOC_CHUNK_SIGNATURES
    raw = (
        f"10000;chunk-signature={sigs[0]}\r\n".encode()
        + b"a" * 65536
        + b"\r\n"
        + f"400;chunk-signature={sigs[1]}\r\n".encode()
        + b"a" * 1024
        + b"\r\n"
        + f"0;chunk-signature={sigs[2]}\r\n".encode()
    )
    if trailer:
        raw += DOC_TRAILER + f"x-amz-trailer-signature:{DOC_TRAILER_SIGNATURE}\r\n".encode()
    return raw + b"\r\n"


@pytest.mark.parametrize("how", ["whole", "1", "random1", "random2"])
async def test_aws_doc_signed_chunks(how: str) -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    raw = aws_doc_body(trailer=False)
    assert len(raw) == int(headers["Content-Length"])
    body = RequestBody(split(raw, how), ctx, headers)
    assert await read_all(body) == b"a" * 66560
    assert body.size == 66560


@pytest.mark.parametrize("how", ["whole", "1", "random1"])
async def test_aws_doc_signed_trailer(how: str) -> None:
    ctx, headers = await _doc_ctx(trailer=True)
    body = RequestBody(split(aws_doc_body(trailer=True), how), ctx, headers)
    assert await read_all(body) == b"a" * 66560
    assert body.checksums == {"crc32c": "sOO8/Q=="}


async def test_aws_doc_tampered_second_chunk_is_never_yielded() -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    raw = bytearray(aws_doc_body(trailer=False))
    second = raw.index(b"400;chunk-signature")
    raw[second + 100] = ord("b")  # inside chunk 2's data
    got, error = await read_until_error(RequestBody(pieces(bytes(raw), 1000), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)
    assert got == b"a" * 65536  # chunk 1 only: chunk 2 was verified before being yielded


async def test_aws_doc_tampered_first_chunk_yields_nothing() -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    raw = bytearray(aws_doc_body(trailer=False))
    raw[raw.index(b"\r\n") + 10] = ord("b")  # inside chunk 1's data
    raw = bytes(raw)
    got, error = await read_until_error(RequestBody(pieces(raw, 1), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)
    assert got == b""


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_aws_doc_tampered_chunk_signature(index: int) -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    sig = DOC_CHUNK_SIGNATURES[index]
    raw = aws_doc_body(trailer=False).replace(sig.encode(), (sig[:-1] + "0").encode())
    _, error = await read_until_error(RequestBody(pieces(raw), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)


async def test_aws_doc_missing_chunk_signature() -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    raw = aws_doc_body(trailer=False).replace(
        f"400;chunk-signature={DOC_CHUNK_SIGNATURES[1]}".encode(), b"400"
    )
    headers = with_headers(headers, Content_Length=None)
    got, error = await read_until_error(RequestBody(pieces(raw), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)
    assert got == b"a" * 65536


async def test_aws_doc_dropped_final_chunk() -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    raw = aws_doc_body(trailer=False)
    cut = raw[: raw.index(b"0;chunk-signature")]
    headers = with_headers(headers, Content_Length=None)
    _, error = await read_until_error(RequestBody(pieces(cut), ctx, headers))
    assert isinstance(error, IncompleteBody)


async def test_aws_doc_tampered_trailer_value() -> None:
    ctx, headers = await _doc_ctx(trailer=True)
    raw = aws_doc_body(trailer=True).replace(b"sOO8/Q==", b"AAAAAA==")
    _, error = await read_until_error(RequestBody(pieces(raw), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)


async def test_aws_doc_tampered_trailer_signature() -> None:
    ctx, headers = await _doc_ctx(trailer=True)
    bad = DOC_TRAILER_SIGNATURE[:-1] + "0"
    raw = aws_doc_body(trailer=True).replace(DOC_TRAILER_SIGNATURE.encode(), bad.encode())
    _, error = await read_until_error(RequestBody(pieces(raw), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)


async def test_aws_doc_missing_trailer_signature() -> None:
    ctx, headers = await _doc_ctx(trailer=True)
    raw = aws_doc_body(trailer=True).replace(
        f"x-amz-trailer-signature:{DOC_TRAILER_SIGNATURE}\r\n".encode(), b""
    )
    _, error = await read_until_error(RequestBody(pieces(raw), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)


async def test_signed_streaming_requires_decoded_length() -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    with pytest.raises(MissingContentLength):
        RequestBody(pieces(b""), dataclasses.replace(ctx, decoded_length=None), headers)


async def test_signed_chunk_larger_than_limit() -> None:
    ctx, headers = await _doc_ctx(trailer=False)
    body = RequestBody(pieces(aws_doc_body(trailer=False)), ctx, headers, max_signed_chunk=1024)
    got, error = await read_until_error(body)
    assert isinstance(error, EntityTooLarge)
    assert got == b""


# --------------------------------------------------------------------------------------------
# Signed chunks over botocore-signed headers, with this file's spec signer


@pytest.mark.parametrize("how", SPLITS)
async def test_signed_chunks(how: str) -> None:
    data = random.Random(3).randbytes(10_000)
    ctx, headers, raw = await signed_streaming_put(data, 4096)
    assert ctx.payload_mode is PayloadMode.STREAMING_SIGNED
    body = RequestBody(split(raw, how), ctx, headers)
    assert await read_all(body) == data
    assert body.checksums == {}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_signed_chunks_with_signed_trailer(algorithm: str) -> None:
    data = random.Random(4).randbytes(10_000)
    ctx, headers, raw = await signed_streaming_put(data, 3000, trailer_algorithm=algorithm)
    assert ctx.payload_mode is PayloadMode.STREAMING_SIGNED_TRAILER
    body = RequestBody(split(raw, "random2"), ctx, headers)
    assert await read_all(body) == data
    assert body.checksums == {algorithm: reference_checksum(algorithm, data)}


async def test_signed_trailer_with_wrong_checksum_but_valid_signature() -> None:
    # The client signed a wrong checksum: the signature holds, the digest does not.
    data = b"q" * 5000
    ctx, headers, _ = await signed_streaming_put(data, 2048, trailer_algorithm="crc32")
    raw = signed_chunked_body(
        data,
        2048,
        key=_signing_key(SK, "20260301"),
        amz_date=ctx.amz_date,
        scope=ctx.scope,
        seed=headers["Authorization"].rsplit("Signature=", 1)[1],
        trailer=("x-amz-checksum-crc32", reference_checksum("crc32", b"other")),
    )
    headers = with_headers(headers, Content_Length=str(len(raw)))
    got, error = await read_until_error(RequestBody(pieces(raw, 100), ctx, headers))
    assert isinstance(error, BadDigest)
    assert got == data


async def test_signed_chunks_reordered() -> None:
    data = b"A" * 100 + b"B" * 100
    ctx, headers, raw = await signed_streaming_put(data, 100)
    first_end = raw.index(b"\r\n", raw.index(b"A" * 100)) + 2
    second_end = raw.index(b"\r\n", raw.index(b"B" * 100)) + 2
    swapped = raw[first_end:second_end] + raw[:first_end] + raw[second_end:]
    got, error = await read_until_error(RequestBody(pieces(swapped), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)
    assert got == b""


async def test_signed_chunks_wrong_key() -> None:
    data = b"k" * 300
    ctx, headers, _ = await signed_streaming_put(data, 100)
    raw = signed_chunked_body(
        data,
        100,
        key=_signing_key("some other secret", "20260301"),
        amz_date=ctx.amz_date,
        scope=ctx.scope,
        seed=ctx.seed_signature,
    )
    headers = with_headers(headers, Content_Length=str(len(raw)))
    _, error = await read_until_error(RequestBody(pieces(raw), ctx, headers))
    assert isinstance(error, SignatureDoesNotMatch)


async def test_signed_chunks_tampered_decoded_length() -> None:
    data = b"k" * 300
    ctx, headers, raw = await signed_streaming_put(data, 100)
    longer = dataclasses.replace(ctx, decoded_length=301)
    _, error = await read_until_error(RequestBody(pieces(raw), longer, headers))
    assert isinstance(error, IncompleteBody)
    shorter = dataclasses.replace(ctx, decoded_length=250)
    got, error = await read_until_error(RequestBody(pieces(raw), shorter, headers))
    assert isinstance(error, InvalidRequest)
    assert len(got) <= 250


async def test_signed_trailer_mode_requires_x_amz_trailer() -> None:
    ctx, headers = await _doc_ctx(trailer=True)
    with pytest.raises(InvalidRequest):
        RequestBody(pieces(b""), dataclasses.replace(ctx, trailer=None), headers)


async def test_trailer_signature_in_unsigned_mode_rejected() -> None:
    ctx, headers, raw = await boto3_trailer_put(b"x", "crc32")
    raw = raw[:-2] + b"x-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n"
    _, error = await read_until_error(RequestBody(pieces(raw), ctx, headers))
    assert isinstance(error, InvalidRequest)
