"""boto3 (current release, default settings) against a real `lake serve`."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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


def test_presigned_get_and_put_with_a_plain_http_client(server: Server, bucket: str) -> None:
    # botocore presigns S3 URLs with SigV2 by default in us-east-1 (`choose-signer.s3`
    # hook); lakeproxy accepts only SigV4, so ask for it explicitly, as AWS recommends.
    s3 = s3_client(server, signature_version="s3v4")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket,
                                                              "Key": "main/pre.txt"},
                                        ExpiresIn=300)
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
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(tampered)
    assert err.value.code == 403
    err.value.close()


def test_presigned_sigv2_default_is_refused_explicitly(s3: Any, bucket: str) -> None:
    """boto3's default S3 presigner in us-east-1 is SigV2: refused with a clear 400."""
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "main/x"},
                                    ExpiresIn=300)
    assert "AWSAccessKeyId=" in url
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url)
    assert err.value.code == 400
    assert b"<Code>InvalidRequest</Code>" in err.value.read()
    err.value.close()


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
