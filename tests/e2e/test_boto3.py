"""boto3 (current release, default settings) against a real `lake serve`."""

from __future__ import annotations

import hashlib
import http.client
import io
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.e2e.conftest import s3_client
from tests.server import Server


def code_of(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_buckets_are_repositories(s3: Any, bucket: str) -> None:
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket in names
    s3.head_bucket(Bucket=bucket)
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket="no-such-repo")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy(Bucket=bucket)
    assert code_of(err) == "NoSuchBucketPolicy"
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert code_of(err) == "NoSuchCORSConfiguration"
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=bucket)
    assert code_of(err) == "BucketAlreadyOwnedByYou"


def test_put_get_head_delete(s3: Any, bucket: str) -> None:
    body = b"hello lakeproxy\n" * 100
    put = s3.put_object(Bucket=bucket, Key="main/dir/file.txt", Body=body,
                        ContentType="text/plain", Metadata={"run": "42"},
                        CacheControl="max-age=60")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="main/dir/file.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"run": "42"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="main/dir/file.txt")
    assert head["ContentLength"] == len(body)
    assert "VersionId" not in head
    s3.delete_object(Bucket=bucket, Key="main/dir/file.txt")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="main/dir/file.txt")
    assert code_of(err) == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="main/dir/file.txt")  # idempotent


def test_odd_keys_round_trip(s3: Any, bucket: str) -> None:
    keys = ["main/with space", "main/plus+sign", "main/a&b=c", "main/100%", "main/üñí©ødé",
            "main/dir/", "main/tilde~!*'()", "main/q?x", "main/dot/./x", "main/dd/../y"]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=f"v{i}".encode())
    for i, key in enumerate(keys):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"v{i}".encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="main/")["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())


def test_range_and_conditional_reads(s3: Any, bucket: str) -> None:
    data = bytes(range(256)) * 40
    etag = s3.put_object(Bucket=bucket, Key="main/blob", Body=data)["ETag"]
    part = s3.get_object(Bucket=bucket, Key="main/blob", Range="bytes=10-19")
    assert part["Body"].read() == data[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert s3.get_object(Bucket=bucket, Key="main/blob", Range="bytes=-5")["Body"].read() \
        == data[-5:]
    assert s3.get_object(Bucket=bucket, Key="main/blob", Range="bytes=10000-")["Body"].read() \
        == data[10000:]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="main/blob", Range="bytes=999999-")
    assert code_of(err) == "InvalidRange"
    assert s3.get_object(Bucket=bucket, Key="main/blob", IfMatch=etag)["Body"].read() == data
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="main/blob", IfMatch='"0123"')
    assert code_of(err) in ("PreconditionFailed", "412")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="main/blob", IfNoneMatch=etag)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="main/blob", Body=b"x", IfNoneMatch="*")
    assert code_of(err) == "PreconditionFailed"


def test_multipart_upload_file_and_download(s3: Any, bucket: str, tmp: Path) -> None:
    src = tmp / "big.bin"
    src.write_bytes(hashlib.sha256(b"seed").digest() * (13 * 1024 * 1024 // 32))
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024,
                            multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(src), bucket, "main/big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="main/big.bin")
    assert head["ContentLength"] == src.stat().st_size
    assert head["ETag"].endswith('-3"')
    dst = tmp / "down.bin"
    s3.download_file(bucket, "main/big.bin", str(dst), Config=config)
    assert dst.read_bytes() == src.read_bytes()


def test_multipart_errors(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="main/mp")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="main/mp", UploadId=upload, PartNumber=1,
                        Body=b"a" * 1024)
    p2 = s3.upload_part(Bucket=bucket, Key="main/mp", UploadId=upload, PartNumber=2,
                        Body=b"b" * 1024)
    parts = s3.list_parts(Bucket=bucket, Key="main/mp", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="main/mp", UploadId=upload,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": 1, "ETag": p1["ETag"]},
                                         {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert code_of(err) == "EntityTooSmall"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="main/mp", UploadId=upload,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": 2, "ETag": p2["ETag"]},
                                         {"PartNumber": 1, "ETag": p1["ETag"]}]})
    assert code_of(err) == "InvalidPartOrder"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="main/mp", UploadId=upload,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": 1, "ETag": '"00"'}]})
    assert code_of(err) == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="main/mp", UploadId=upload,
                                        MultipartUpload={"Parts": [
                                            {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert done["ETag"].endswith('-1"')
    assert s3.get_object(Bucket=bucket, Key="main/mp")["Body"].read() == b"b" * 1024
    upload2 = s3.create_multipart_upload(Bucket=bucket, Key="main/mp2")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="main/mp2", UploadId=upload2)
    with pytest.raises(ClientError) as err:
        s3.list_parts(Bucket=bucket, Key="main/mp2", UploadId=upload2)
    assert code_of(err) == "NoSuchUpload"


def test_paginated_listing_over_1000_keys(s3: Any, bucket: str) -> None:
    keys = [f"main/many/{i:05d}" for i in range(1105)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"."), keys))
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="main/"))
    assert len(pages) == 2
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=bucket, Prefix="main/many/",
                                                          PaginationConfig={"PageSize": 500}))
    assert [o["Key"] for p in v1 for o in p["Contents"]] == keys
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["main/"]
    sub = s3.list_objects_v2(Bucket=bucket, Prefix="main/", Delimiter="/")
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["main/many/"]


def test_copy_between_branches_and_from_a_tag(s3: Any, bucket: str, server: Server) -> None:
    s3.put_object(Bucket=bucket, Key="main/src.txt", Body=b"original", Metadata={"a": "1"})
    # Branch and tag through the core of the same data directory is the CLI's job; here the
    # copy source names main and the destination a new key on main.
    s3.copy_object(Bucket=bucket, Key="main/copy.txt",
                   CopySource={"Bucket": bucket, "Key": "main/src.txt"})
    got = s3.get_object(Bucket=bucket, Key="main/copy.txt")
    assert got["Body"].read() == b"original" and got["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket=bucket, Key="main/replaced.txt", MetadataDirective="REPLACE",
                   Metadata={"b": "2"}, ContentType="text/x-new",
                   CopySource={"Bucket": bucket, "Key": "main/src.txt"})
    got = s3.head_object(Bucket=bucket, Key="main/replaced.txt")
    assert got["Metadata"] == {"b": "2"} and got["ContentType"] == "text/x-new"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="main/x", CopySource={"Bucket": bucket,
                                                                "Key": "main/missing"})
    assert code_of(err) == "NoSuchKey"


def test_delete_objects(s3: Any, bucket: str) -> None:
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"main/d/{i}", Body=b"x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": f"main/d/{i}"} for i in range(5)] + [{"Key": "v1/tagged"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == [f"main/d/{i}" for i in range(5)]
    assert [e["Key"] for e in result["Errors"]] == ["v1/tagged"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="main/d/")
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Quiet": True,
                                                     "Objects": [{"Key": "main/none"}]})
    assert "Deleted" not in quiet


def _urlopen_error(request: urllib.request.Request | str) -> tuple[int, bytes]:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    try:
        return err.value.code, err.value.read()
    finally:
        err.value.close()


def test_presigned_get_and_put_default_client(s3: Any, bucket: str) -> None:
    """boto3 with default settings (us-east-1, custom endpoint) presigns with SigV2
    (`choose-signer.s3`); the URLs work with a plain HTTP client (urllib)."""
    put_url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": "main/pre v2+ü.txt",
                "ContentType": "application/octet-stream"},
        ExpiresIn=300,
    )
    assert "AWSAccessKeyId=" in put_url and "Signature=" in put_url and "Expires=" in put_url
    assert "X-Amz-" not in put_url
    # SigV2 signs Content-Type: send the one the URL was signed with (urllib would otherwise
    # add application/x-www-form-urlencoded to a request with a body).
    request = urllib.request.Request(put_url, data=b"presigned v2 body", method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "main/pre v2+ü.txt"}, ExpiresIn=300
    )
    assert "AWSAccessKeyId=" in get_url
    with urllib.request.urlopen(get_url) as response:
        assert response.read() == b"presigned v2 body"
    override = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "main/pre v2+ü.txt",
                "ResponseContentType": "text/plain"},
        ExpiresIn=300,
    )
    with urllib.request.urlopen(override) as response:
        assert response.headers["Content-Type"] == "text/plain"
    head_url = s3.generate_presigned_url(
        "head_object", Params={"Bucket": bucket, "Key": "main/pre v2+ü.txt"}, ExpiresIn=300
    )
    head = urllib.request.Request(head_url, method="HEAD")
    with urllib.request.urlopen(head) as response:
        assert response.headers["Content-Length"] == str(len(b"presigned v2 body"))
    assert s3.get_object(Bucket=bucket, Key="main/pre v2+ü.txt")["Body"].read() == \
        b"presigned v2 body"
    delete_url = s3.generate_presigned_url(
        "delete_object", Params={"Bucket": bucket, "Key": "main/pre v2+ü.txt"}, ExpiresIn=300
    )
    with urllib.request.urlopen(urllib.request.Request(delete_url, method="DELETE")) as resp:
        assert resp.status == 204
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="main/pre v2+ü.txt")


def test_presigned_default_client_put_without_content_type(
    s3: Any, server: Server, bucket: str
) -> None:
    # A client that sends no Content-Type (curl -T, requests, http.client) needs nothing
    # more than the URL.
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "main/bare.txt"}, ExpiresIn=300
    )
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("PUT", f"{parts.path}?{parts.query}", body=b"bare")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()
    assert s3.get_object(Bucket=bucket, Key="main/bare.txt")["Body"].read() == b"bare"
    # urllib adds Content-Type: application/x-www-form-urlencoded, which was not signed.
    request = urllib.request.Request(url, data=b"form", method="PUT")
    status, body = _urlopen_error(request)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body


def test_presigned_default_client_refusals(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="main/x", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "main/x"},
                                    ExpiresIn=300)
    query = parse_qs(urlsplit(url).query)
    signature = query["Signature"][0]
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    tampered = url.replace(quote(signature, safe=""), quote(flipped, safe=""))
    assert tampered != url
    status, body = _urlopen_error(tampered)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    status, body = _urlopen_error(url.replace("/main/x?", "/main/y?"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    status, body = _urlopen_error(urllib.request.Request(url, method="DELETE"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    expired = s3.generate_presigned_url("get_object",
                                        Params={"Bucket": bucket, "Key": "main/x"},
                                        ExpiresIn=-10)
    status, body = _urlopen_error(expired)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    too_long = s3.generate_presigned_url("get_object",
                                         Params={"Bucket": bucket, "Key": "main/x"},
                                         ExpiresIn=8 * 24 * 3600)
    status, body = _urlopen_error(too_long)
    assert status == 400 and b"<Code>AuthorizationQueryParametersError</Code>" in body
    assert s3.get_object(Bucket=bucket, Key="main/x")["Body"].read() == b"x"


def test_presigned_get_and_put_sigv4(server: Server, bucket: str) -> None:
    s3 = s3_client(server, signature_version="s3v4")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket,
                                                              "Key": "main/pre.txt"},
                                        ExpiresIn=300)
    assert "X-Amz-Signature=" in put_url
    request = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                              "Key": "main/pre.txt"},
                                        ExpiresIn=300)
    with urllib.request.urlopen(get_url) as response:
        assert response.read() == b"presigned body"
    assert "X-Amz-Signature=" in get_url
    sig_at = get_url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "1" if get_url[sig_at] == "0" else "0"
    tampered = get_url[:sig_at] + flipped + get_url[sig_at + 1:]
    status, _ = _urlopen_error(tampered)
    assert status == 403


def test_sigv2_header_auth_client(server: Server, bucket: str) -> None:
    """boto3 with signature_version='s3' (Authorization: AWS AK:signature)."""
    v2 = s3_client(server, signature_version="s3")
    body = b"v2 body " * 1000
    v2.put_object(Bucket=bucket, Key="main/v2 dir/ü+%.txt", Body=body,
                  ContentType="text/plain", Metadata={"run": "7"})
    got = v2.get_object(Bucket=bucket, Key="main/v2 dir/ü+%.txt")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"run": "7"}
    assert v2.get_object(Bucket=bucket, Key="main/v2 dir/ü+%.txt",
                         Range="bytes=0-1")["Body"].read() == b"v2"
    assert v2.head_object(Bucket=bucket, Key="main/v2 dir/ü+%.txt")["ContentLength"] == len(body)
    listed = v2.list_objects_v2(Bucket=bucket, Prefix="main/v2 dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["main/v2 dir/ü+%.txt"]
    assert [o["Key"] for o in v2.list_objects(Bucket=bucket, Prefix="main/v2")["Contents"]] \
        == ["main/v2 dir/ü+%.txt"]
    v2.head_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in v2.list_buckets()["Buckets"]]
    v2.copy_object(Bucket=bucket, Key="main/v2 copy",
                   CopySource={"Bucket": bucket, "Key": "main/v2 dir/ü+%.txt"})
    upload = v2.create_multipart_upload(Bucket=bucket, Key="main/v2 mpu")
    part = v2.upload_part(Bucket=bucket, Key="main/v2 mpu", UploadId=upload["UploadId"],
                          PartNumber=1, Body=b"part one")
    v2.complete_multipart_upload(
        Bucket=bucket, Key="main/v2 mpu", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert v2.get_object(Bucket=bucket, Key="main/v2 mpu")["Body"].read() == b"part one"
    deleted = v2.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "main/v2 copy"}]})
    assert [d["Key"] for d in deleted["Deleted"]] == ["main/v2 copy"]
    v2.delete_object(Bucket=bucket, Key="main/v2 mpu")
    wrong = s3_client(Server(server.endpoint, server.data_dir, server.access_key, "wrong"),
                      signature_version="s3")
    with pytest.raises(ClientError) as err:
        wrong.list_objects_v2(Bucket=bucket)
    assert code_of(err) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as err:
        wrong.put_object(Bucket=bucket, Key="main/evil", Body=b"evil")
    assert code_of(err) == "SignatureDoesNotMatch"
    unknown = s3_client(Server(server.endpoint, server.data_dir, "AKLPUNKNOWN000000000",
                               server.secret_key), signature_version="s3")
    with pytest.raises(ClientError) as err:
        unknown.get_object(Bucket=bucket, Key="main/v2 dir/ü+%.txt")
    assert code_of(err) == "InvalidAccessKeyId"


def test_signature_failures(server: Server, bucket: str) -> None:
    wrong = s3_client(Server(server.endpoint, server.data_dir, server.access_key, "wrong"))
    with pytest.raises(ClientError) as err:
        wrong.list_objects_v2(Bucket=bucket)
    assert code_of(err) == "SignatureDoesNotMatch"
    unknown = s3_client(Server(server.endpoint, server.data_dir, "AKLPUNKNOWN000000000",
                               server.secret_key))
    with pytest.raises(ClientError) as err:
        unknown.list_objects_v2(Bucket=bucket)
    assert code_of(err) == "InvalidAccessKeyId"
    with pytest.raises(urllib.error.HTTPError) as anon:
        urllib.request.urlopen(f"{server.endpoint}/{bucket}/main/x")
    assert anon.value.code == 403
    anon.value.close()


def test_writes_to_refs_that_are_not_branches_fail(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="nobranch/file", Body=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] in (403, 404)
    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="main", Body=b"x")


def test_upload_fileobj_streams(s3: Any, bucket: str) -> None:
    data = io.BytesIO(b"z" * (6 * 1024 * 1024 + 3))
    s3.upload_fileobj(data, bucket, "main/stream.bin")
    assert s3.head_object(Bucket=bucket, Key="main/stream.bin")["ContentLength"] == \
        6 * 1024 * 1024 + 3
