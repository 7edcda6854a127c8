"""Malformed and hostile input, sent as correctly signed raw HTTP to a real `lake serve`.

Every rejection must be an S3 XML error with the right code and status, nothing half-written
may become visible, and the server must keep serving afterwards.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.rawhttp import Reply, call, md5_b64, send, send_then_disconnect, sign
from tests.server import Server

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Delete><Object><Key>&lol9;</Key></Object></Delete>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""

MALFORMED = [
    b"<Delete><Object><Key>main/a</Key></Object>",  # unclosed
    b"not xml at all",
    b"",
    b"<Delete><Object><Key>main/a</Key></Object></Delete><extra/>",
    b"<Wrong><Object><Key>main/a</Key></Object></Wrong>",
    b"<Delete><Object></Object></Delete>",  # no Key
    b"\xff\xfe<\x00D\x00",
]


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.is_s3_error(code), reply.body
    assert reply.header("x-amz-request-id")
    assert reply.header("x-amz-version-id") is None
    assert reply.header("Content-Type") == "application/xml"


def assert_alive(server: Server, bucket: str) -> None:
    reply = call(server, "GET", f"/{bucket}?list-type=2")
    assert reply.status == 200, reply.body


@pytest.fixture
def repo(s3: Any) -> str:
    name = f"bad-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def delete_objects(server: Server, bucket: str, body: bytes) -> Reply:
    return call(server, "POST", f"/{bucket}?delete=", body,
                headers={"Content-MD5": md5_b64(body), "Content-Type": "application/xml"})


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_delete_objects_xml(server: Server, repo: str, s3: Any, body: bytes) -> None:
    s3.put_object(Bucket=repo, Key="main/a", Body=b"a")
    assert_error(delete_objects(server, repo, body), 400, "MalformedXML")
    assert s3.get_object(Bucket=repo, Key="main/a")["Body"].read() == b"a"
    assert_alive(server, repo)


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "xxe"])
def test_entity_expansion_is_refused(server: Server, repo: str, s3: Any, body: bytes) -> None:
    assert_error(delete_objects(server, repo, body), 400, "MalformedXML")
    upload = s3.create_multipart_upload(Bucket=repo, Key="main/mp")["UploadId"]
    s3.upload_part(Bucket=repo, Key="main/mp", UploadId=upload, PartNumber=1, Body=b"x")
    complete = body.replace(b"<Delete>", b"<CompleteMultipartUpload>").replace(
        b"</Delete>", b"</CompleteMultipartUpload>")
    reply = call(server, "POST", f"/{repo}/main/mp?uploadId={upload}", complete)
    assert_error(reply, 400, "MalformedXML")
    assert_alive(server, repo)
    # the upload is still there and can be completed normally
    parts = s3.list_parts(Bucket=repo, Key="main/mp", UploadId=upload)["Parts"]
    s3.complete_multipart_upload(Bucket=repo, Key="main/mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": parts[0]["ETag"]}]})
    assert s3.get_object(Bucket=repo, Key="main/mp")["Body"].read() == b"x"


def test_malformed_complete_multipart_xml(server: Server, repo: str, s3: Any) -> None:
    upload = s3.create_multipart_upload(Bucket=repo, Key="main/mp")["UploadId"]
    for body in (b"<CompleteMultipartUpload><Part>", b"<Other/>",
                 b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber>"
                 b"<ETag>e</ETag></Part></CompleteMultipartUpload>"):
        reply = call(server, "POST", f"/{repo}/main/mp?uploadId={upload}", body)
        assert_error(reply, 400, "MalformedXML")
    assert_alive(server, repo)


def test_oversized_xml_is_refused(server: Server, repo: str) -> None:
    keys = b"".join(b"<Object><Key>main/" + b"k" * 900 + b"%d</Key></Object>" % i
                    for i in range(2600))
    body = b"<Delete>" + keys + b"</Delete>"
    assert len(body) > 2 * 1024 * 1024
    assert_error(delete_objects(server, repo, body), 400, "MaxMessageLengthExceeded")
    # without a Content-Length (HTTP chunked) the limit holds while reading
    target = f"/{repo}?delete="
    headers = sign(server, "POST", target, body=body, unsigned_payload=True,
                   headers={"Transfer-Encoding": "chunked", "Content-MD5": md5_b64(body)})
    step = 64 * 1024
    framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                      for i in range(0, len(body), step)) + b"0\r\n\r\n"
    assert_error(send(server, "POST", target, headers, framed), 400, "MaxMessageLengthExceeded")
    # more than 1000 keys in a small document
    many = b"<Delete>" + b"".join(b"<Object><Key>main/%d</Key></Object>" % i
                                  for i in range(1001)) + b"</Delete>"
    assert_error(delete_objects(server, repo, many), 400, "MalformedXML")
    assert_alive(server, repo)


def test_delete_objects_needs_an_integrity_header(server: Server, repo: str) -> None:
    body = b"<Delete><Object><Key>main/a</Key></Object></Delete>"
    assert_error(call(server, "POST", f"/{repo}?delete=", body), 400, "InvalidRequest")
    reply = call(server, "POST", f"/{repo}?delete=", body,
                 headers={"Content-MD5": md5_b64(b"other")})
    assert_error(reply, 400, "BadDigest")


def test_key_too_long(server: Server, repo: str, s3: Any) -> None:
    ok = "k" * 1024
    assert call(server, "PUT", f"/{repo}/main/{ok}", b"fits").status == 200
    long = "k" * 1025
    assert_error(call(server, "PUT", f"/{repo}/main/{long}", b"x"), 400, "KeyTooLongError")
    multibyte = "é" * 513  # 1026 bytes in UTF-8
    encoded = "".join(f"%{b:02X}" for b in multibyte.encode())
    assert_error(call(server, "PUT", f"/{repo}/main/{encoded}", b"x"), 400, "KeyTooLongError")
    assert_error(call(server, "POST", f"/{repo}/main/{long}?uploads="), 400, "KeyTooLongError")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=repo).get("Contents", [])]
    assert keys == [f"main/{ok}"]


@pytest.mark.parametrize("path", ["/{b}/main/%ff", "/{b}/main/a%C3", "/{b}/main/%00x",
                                  "/{b}/main/bad%zz", "/{b}/main/%c0%af"])
def test_invalid_path_encoding(server: Server, repo: str, path: str) -> None:
    target = path.format(b=repo)
    for method in ("GET", "PUT", "HEAD"):
        reply = call(server, method, target, b"x" if method == "PUT" else b"")
        assert reply.status == 400, (method, reply.body)
        assert reply.header("x-amz-request-id")
        if method != "HEAD":
            assert reply.code in ("InvalidURI", "InvalidArgument"), reply.body
    assert_alive(server, repo)


def test_missing_content_length(server: Server, repo: str, s3: Any) -> None:
    reply = call(server, "PUT", f"/{repo}/main/nolen", b"", content_length=False)
    assert_error(reply, 411, "MissingContentLength")
    reply = call(server, "POST", f"/{repo}/main/nolen?uploads=", content_length=False)
    assert reply.status == 200  # CreateMultipartUpload has no body: no length needed
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=repo, Key="main/nolen")


def tmp_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blocks").rglob("*")
            if p.is_file() and ".tmp" in p.relative_to(data_dir).parts]


def block_files(data_dir: Path) -> set[Path]:
    return {p for p in (data_dir / "blocks").rglob("*") if p.is_file()}


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.mark.parametrize("unsigned", [False, True], ids=["sha256", "unsigned"])
def test_disconnect_mid_upload_leaves_nothing(server: Server, repo: str, s3: Any,
                                              unsigned: bool) -> None:
    s3.put_object(Bucket=repo, Key="main/existing", Body=b"e")
    before = block_files(server.data_dir)
    full = b"z" * (3 * 1024 * 1024)
    headers = sign(server, "PUT", f"/{repo}/main/partial", body=full,
                   headers={"Content-Length": str(len(full))}, unsigned_payload=unsigned)
    send_then_disconnect(server, "PUT", f"/{repo}/main/partial", headers, full[:1024 * 1024])
    assert wait_for(lambda: not tmp_files(server.data_dir)), tmp_files(server.data_dir)
    assert wait_for(lambda: block_files(server.data_dir) == before)
    reply = call(server, "HEAD", f"/{repo}/main/partial")
    assert reply.status == 404
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=repo).get("Contents", [])]
    assert keys == ["main/existing"]
    assert_alive(server, repo)


def test_disconnect_mid_part_leaves_nothing(server: Server, repo: str, s3: Any) -> None:
    upload = s3.create_multipart_upload(Bucket=repo, Key="main/mp")["UploadId"]
    full = b"p" * (2 * 1024 * 1024)
    target = f"/{repo}/main/mp?partNumber=1&uploadId={upload}"
    headers = sign(server, "PUT", target, body=full, headers={"Content-Length": str(len(full))})
    send_then_disconnect(server, "PUT", target, headers, full[:4096])
    assert wait_for(lambda: not tmp_files(server.data_dir)), tmp_files(server.data_dir)
    assert s3.list_parts(Bucket=repo, Key="main/mp", UploadId=upload).get("Parts", []) == []


def test_wrong_content_md5(server: Server, repo: str, s3: Any) -> None:
    before = block_files(server.data_dir)
    reply = call(server, "PUT", f"/{repo}/main/md5", b"payload",
                 headers={"Content-MD5": md5_b64(b"other")})
    assert_error(reply, 400, "BadDigest")
    reply = call(server, "PUT", f"/{repo}/main/md5", b"payload",
                 headers={"Content-MD5": "not-base64!"})
    assert_error(reply, 400, "InvalidDigest")
    assert call(server, "HEAD", f"/{repo}/main/md5").status == 404
    assert wait_for(lambda: block_files(server.data_dir) == before)
    good = call(server, "PUT", f"/{repo}/main/md5", b"payload",
                headers={"Content-MD5": md5_b64(b"payload")})
    assert good.status == 200
    assert good.header("ETag") == f'"{hashlib.md5(b"payload").hexdigest()}"'


def test_wrong_checksum_header(server: Server, repo: str) -> None:
    reply = call(server, "PUT", f"/{repo}/main/crc", b"payload",
                 headers={"x-amz-checksum-crc32": "AAAAAA==",
                          "x-amz-sdk-checksum-algorithm": "CRC32"})
    assert_error(reply, 400, "BadDigest")
    assert call(server, "HEAD", f"/{repo}/main/crc").status == 404


def test_unknown_query_parameters_are_ignored(server: Server, repo: str, s3: Any) -> None:
    s3.put_object(Bucket=repo, Key="main/q.txt", Body=b"query")
    for query in ("x-id=GetObject", "foo=bar", "foo", "a=1&b=2&c", "response-foo=bar"):
        reply = call(server, "GET", f"/{repo}/main/q.txt?{query}")
        assert reply.status == 200, (query, reply.body)
        assert reply.body == b"query"
    reply = call(server, "GET", f"/{repo}/main/q.txt?response-content-type=text%2Fx-test")
    assert reply.header("Content-Type") == "text/x-test"


def test_range_past_the_end(server: Server, repo: str, s3: Any) -> None:
    s3.put_object(Bucket=repo, Key="main/r", Body=b"0123456789")
    reply = call(server, "GET", f"/{repo}/main/r", headers={"Range": "bytes=10-20"})
    assert_error(reply, 416, "InvalidRange")
    assert reply.header("Content-Range") == "bytes */10"
    reply = call(server, "GET", f"/{repo}/main/r", headers={"Range": "bytes=5-100"})
    assert reply.status == 206 and reply.body == b"56789"
    assert reply.header("Content-Range") == "bytes 5-9/10"
    reply = call(server, "GET", f"/{repo}/main/r", headers={"Range": "bytes=-3"})
    assert reply.status == 206 and reply.body == b"789"
    reply = call(server, "GET", f"/{repo}/main/r", headers={"Range": "bytes=-0"})
    assert_error(reply, 416, "InvalidRange")
    # a range S3 does not understand is ignored: the whole object
    reply = call(server, "GET", f"/{repo}/main/r", headers={"Range": "bytes=1-2,4-5"})
    assert reply.status == 200 and reply.body == b"0123456789"


def test_version_ids(server: Server, repo: str, s3: Any) -> None:
    s3.put_object(Bucket=repo, Key="main/v", Body=b"v")
    for method in ("GET", "HEAD"):
        reply = call(server, method, f"/{repo}/main/v?versionId=null")
        assert reply.status == 200
        assert reply.header("x-amz-version-id") is None
        reply = call(server, method, f"/{repo}/main/v?versionId=3HL4kqtJlcpXroDTDmJ")
        assert reply.status == 400
    reply = call(server, "GET", f"/{repo}/main/v?versionId=abc")
    assert_error(reply, 400, "InvalidRequest")
    assert_error(call(server, "PUT", f"/{repo}/main/v?versionId=abc", b"w"), 400,
                 "InvalidRequest")
    assert_error(call(server, "DELETE", f"/{repo}/main/v?versionId=abc"), 400, "InvalidRequest")
    assert call(server, "GET", f"/{repo}/main/v").body == b"v"
    assert call(server, "DELETE", f"/{repo}/main/v?versionId=null").status == 204
    assert call(server, "HEAD", f"/{repo}/main/v").status == 404


def test_every_response_has_a_request_id_and_no_version_id(server: Server, repo: str,
                                                           s3: Any) -> None:
    upload = s3.create_multipart_upload(Bucket=repo, Key="main/mp")["UploadId"]
    replies = [
        call(server, "GET", "/"),
        call(server, "HEAD", f"/{repo}"),
        call(server, "GET", f"/{repo}?list-type=2"),
        call(server, "GET", f"/{repo}"),
        call(server, "GET", f"/{repo}?location="),
        call(server, "PUT", f"/{repo}/main/x", b"x"),
        call(server, "GET", f"/{repo}/main/x"),
        call(server, "HEAD", f"/{repo}/main/x"),
        call(server, "GET", f"/{repo}/main/x", headers={"Range": "bytes=0-0"}),
        call(server, "PUT", f"/{repo}/main/y", headers={"x-amz-copy-source": f"/{repo}/main/x"}),
        call(server, "PUT", f"/{repo}/main/mp?partNumber=1&uploadId={upload}", b"p"),
        call(server, "GET", f"/{repo}/main/mp?uploadId={upload}"),
        call(server, "DELETE", f"/{repo}/main/mp?uploadId={upload}"),
        call(server, "DELETE", f"/{repo}/main/x"),
        # errors
        call(server, "GET", f"/{repo}/main/missing"),
        call(server, "HEAD", f"/{repo}/main/missing"),
        call(server, "GET", "/no-such-bucket/main/x"),
        call(server, "GET", f"/{repo}?policy="),
        call(server, "PUT", f"/{repo}?acl=", b""),
        call(server, "PATCH", f"/{repo}/main/x"),
        call(server, "GET", f"/{repo}/main/y", headers={"If-None-Match": "*"}),
        call(server, "GET", f"/{repo}/main/y", headers={"If-Match": '"nope"'}),
        call(server, "GET", f"/{repo}/main/y", secret_key="wrong-secret"),
    ]
    statuses = [r.status for r in replies]
    assert statuses == [200, 200, 200, 200, 200, 200, 200, 200, 206, 200, 200, 200, 204, 204,
                        404, 404, 404, 404, 501, 405, 304, 412, 403], statuses
    for reply in replies:
        assert reply.header("x-amz-request-id"), reply
        assert reply.header("x-amz-version-id") is None, reply
    for reply, code in zip(replies[14:], ["NoSuchKey", None, "NoSuchBucket", "NoSuchBucketPolicy",
                                          "NotImplemented", "MethodNotAllowed", None,
                                          "PreconditionFailed", "SignatureDoesNotMatch"],
                           strict=True):
        if code is not None:
            assert reply.is_s3_error(code), reply.body
    # ids are unique
    ids = [r.header("x-amz-request-id") for r in replies]
    assert len(set(ids)) == len(ids)


def test_payload_hash_mismatch_leaves_nothing(server: Server, repo: str) -> None:
    headers = sign(server, "PUT", f"/{repo}/main/sha", body=b"signed body",
                   headers={"Content-Length": "11"})
    reply = send(server, "PUT", f"/{repo}/main/sha", headers, b"other body!")
    assert_error(reply, 400, "XAmzContentSHA256Mismatch")
    assert call(server, "HEAD", f"/{repo}/main/sha").status == 404


def test_bytes_after_the_body_are_never_stored(server: Server, repo: str) -> None:
    # The HTTP framing says 4 bytes; the rest is a (garbage) pipelined request, which aiohttp
    # answers with a plain 400 and a closed connection, possibly before the PUT's answer.
    headers = sign(server, "PUT", f"/{repo}/main/short", body=b"abcd",
                   headers={"Content-Length": "4"})
    reply = send(server, "PUT", f"/{repo}/main/short", headers, b"abcd" + b"EXTRA BYTES\r\n\r\n")
    assert reply.status in (200, 400)
    got = call(server, "GET", f"/{repo}/main/short")
    assert (got.status, got.body) == (200, b"abcd") or got.status == 404
    assert_alive(server, repo)


def test_bad_copy_source(server: Server, repo: str, s3: Any) -> None:
    s3.put_object(Bucket=repo, Key="main/src", Body=b"s")
    for source in ("", "/", f"/{repo}", f"/{repo}/main", f"/{repo}/main/%ff",
                   f"/{repo}/main/src?versionId=abc"):
        reply = call(server, "PUT", f"/{repo}/main/dst", headers={"x-amz-copy-source": source})
        assert reply.status == 400, (source, reply.body)
        assert reply.code in ("InvalidArgument", "InvalidRequest"), reply.body
    assert call(server, "HEAD", f"/{repo}/main/dst").status == 404


def test_ref_root_keys(server: Server, repo: str, s3: Any) -> None:
    """`main` and `main/` name no object: an empty `main/` marker (pyarrow's create_dir) is
    accepted and stores nothing; anything else is refused."""
    assert call(server, "PUT", f"/{repo}/main/", b"").status == 200
    assert_error(call(server, "PUT", f"/{repo}/main/", b"data"), 400, "InvalidArgument")
    assert_error(call(server, "PUT", f"/{repo}/main", b""), 400, "InvalidArgument")
    assert_error(call(server, "PUT", f"/{repo}/nobranch/", b""), 404, "NoSuchKey")
    for key in ("main", "main/"):
        assert call(server, "HEAD", f"/{repo}/{key}").status == 404
        assert_error(call(server, "GET", f"/{repo}/{key}"), 404, "NoSuchKey")
        assert call(server, "DELETE", f"/{repo}/{key}").status == 204
    assert "Contents" not in s3.list_objects_v2(Bucket=repo)
