"""Faults of the S3 endpoint: throttling, stalls and connections cut mid-body.

A real fault-injecting proxy (tests/faultproxy.py) stands between lakeproxy and moto's S3
server. Transient faults must be retried until the operation succeeds (the proxy counts the
retries); persistent ones must end in a retryable error (a StorageError in the block store,
`503` with `Retry-After` through the gateway and the REST API), with nothing half-written
visible, and the same server must serve normally once the fault is lifted. Every wait is
bounded by the short timeouts and attempts configured here.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lakeproxy.blockstore import BlockStat, S3Settings
from lakeproxy.blockstore.s3 import S3BlockStore
from lakeproxy.config import ConfigError, Settings
from lakeproxy.errors import InvalidArgument, StorageError
from tests.faultproxy import FaultProxy, s3_operation
from tests.s3server import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, REGION
from tests.server import Server, lake_serve

pytestmark = pytest.mark.s3

MiB = 1 << 20
ATTEMPTS = 3
READ_TIMEOUT = 2.0  # seconds: a stall of STALL seconds is always a timeout
STALL = 5.0
PART = 5 * MiB


def pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def chunked(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read(store: S3BlockStore, path: str, **span: int) -> bytes:
    return b"".join([chunk async for chunk in store.get(path, **span)])


def objects(s3_admin: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def pending_uploads(s3_admin: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as running:
        yield running


def proxied(settings: S3Settings, proxy: FaultProxy) -> S3Settings:
    return S3Settings(
        proxy.url, settings.region, settings.access_key_id, settings.secret_access_key,
        max_attempts=ATTEMPTS, connect_timeout=2.0, read_timeout=READ_TIMEOUT,
    )


@pytest.fixture
async def store(s3_settings: S3Settings, proxy: FaultProxy,
                s3_bucket: str) -> AsyncIterator[S3BlockStore]:
    """The S3 block store through the proxy: 3 attempts, a short read timeout, 5 MiB parts."""
    async with S3BlockStore(s3_bucket, "ns", proxied(s3_settings, proxy),
                            multipart_threshold=PART, part_size=PART) as opened:
        yield opened


# -- settings ------------------------------------------------------------------------------


def test_s3_retry_settings_come_from_the_environment() -> None:
    settings = Settings.load(env={"LAKE_S3_MAX_ATTEMPTS": "7", "LAKE_S3_READ_TIMEOUT": "2.5",
                                  "LAKE_S3_CONNECT_TIMEOUT": "3"})
    assert (settings.s3.max_attempts, settings.s3.read_timeout,
            settings.s3.connect_timeout) == (7, 2.5, 3.0)
    defaults = Settings.load(env={}).s3
    assert (defaults.max_attempts, defaults.read_timeout, defaults.connect_timeout) == (
        5, 60.0, 10.0)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LAKE_S3_MAX_ATTEMPTS", "0", "s3_max_attempts must be at least 1"),
        ("LAKE_S3_MAX_ATTEMPTS", "two", "LAKE_S3_MAX_ATTEMPTS"),
        ("LAKE_S3_READ_TIMEOUT", "0", "must be positive"),
        ("LAKE_S3_CONNECT_TIMEOUT", "-1", "must be positive"),
    ],
)
def test_bad_s3_retry_settings_are_refused(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(env={variable: value})
    with pytest.raises(InvalidArgument):
        S3Settings(max_attempts=0)


# -- the proxy itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "operation"),
    [
        ("PUT", "/b/k", "PutObject"),
        ("PUT", "/b/k?partNumber=2&uploadId=u", "UploadPart"),
        ("POST", "/b/k?uploads", "CreateMultipartUpload"),
        ("POST", "/b/k?uploadId=u", "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", "AbortMultipartUpload"),
        ("GET", "/b/k?uploadId=u", "ListParts"),
        ("GET", "/b/dir/k", "GetObject"),
        ("HEAD", "/b/k", "HeadObject"),
        ("DELETE", "/b/k", "DeleteObject"),
        ("GET", "/b?list-type=2&prefix=x", "ListObjectsV2"),
        ("PUT", "/b", "CreateBucket"),
    ],
)
def test_proxy_names_the_s3_operation(method: str, target: str, operation: str) -> None:
    path, _, query = target.partition("?")
    assert s3_operation(method, path, query) == operation


def test_proxy_forwards_byte_for_byte_and_counts(proxy: FaultProxy, s3_bucket: str) -> None:
    client = boto3.client(
        "s3", endpoint_url=proxy.url, region_name=REGION,
        aws_access_key_id=FAKE_ACCESS_KEY_ID, aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    data = pattern(3 * MiB + 7)
    client.put_object(Bucket=s3_bucket, Key="a/b.bin", Body=data)
    assert client.get_object(Bucket=s3_bucket, Key="a/b.bin")["Body"].read() == data
    assert client.head_object(Bucket=s3_bucket, Key="a/b.bin")["ContentLength"] == len(data)
    assert (proxy.forwarded("PutObject"), proxy.forwarded("GetObject")) == (1, 1)
    rule = proxy.slowdown(operation="GetObject", times=1)
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=s3_bucket, Key="a/b.bin")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert (rule.injected, proxy.injected("GetObject"), proxy.forwarded("GetObject")) == (1, 1, 1)
    assert client.get_object(Bucket=s3_bucket, Key="a/b.bin")["Body"].read() == data
    client.close()


# -- the block store: transient faults are retried ------------------------------------------


async def put_small(store: S3BlockStore) -> None:
    data = pattern(300_000, 1)
    assert await store.put("small", chunked(data)) == len(data)
    assert await read(store, "small") == data


async def put_multipart(store: S3BlockStore) -> None:
    data = pattern(2 * PART + 123, 2)
    assert await store.put("big", chunked(data, MiB)) == len(data)
    assert await read(store, "big") == data


async def get_object(store: S3BlockStore) -> None:
    assert await read(store, "ready") == pattern(2 * MiB + 5, 3)
    assert await read(store, "ready", start=MiB, end=MiB + 10) == pattern(2 * MiB + 5, 3)[
        MiB : MiB + 10]


async def head_object(store: S3BlockStore) -> None:
    assert await store.stat("ready") == BlockStat("ready", 2 * MiB + 5)


async def list_objects(store: S3BlockStore) -> None:
    assert [s async for s in store.list()] == [BlockStat("ready", 2 * MiB + 5)]


async def delete_object(store: S3BlockStore) -> None:
    await store.delete("ready")
    assert await store.stat("ready") is None


async def gateway_multipart(store: S3BlockStore) -> None:
    upload = await store.create_multipart("mp")
    await store.put_part("mp", upload, 1, chunked(pattern(PART, 4)))
    await store.put_part("mp", upload, 2, chunked(b"tail"))
    assert await store.complete_multipart("mp", upload, [1, 2]) == PART + 4
    assert await read(store, "mp") == pattern(PART, 4) + b"tail"


async def abort_multipart(store: S3BlockStore) -> None:
    upload = await store.create_multipart("gone")
    await store.put_part("gone", upload, 1, chunked(b"x"))
    await store.abort_multipart("gone", upload)


TRANSIENT: list[tuple[str, Callable[[S3BlockStore], Awaitable[None]]]] = [
    ("PutObject", put_small),
    ("UploadPart", put_multipart),
    ("CreateMultipartUpload", put_multipart),
    ("CompleteMultipartUpload", put_multipart),
    ("GetObject", get_object),
    ("HeadObject", head_object),
    ("ListObjectsV2", list_objects),
    ("DeleteObject", delete_object),
    ("UploadPart", gateway_multipart),
    ("ListParts", gateway_multipart),
    ("CompleteMultipartUpload", gateway_multipart),
    ("AbortMultipartUpload", abort_multipart),
]


@pytest.mark.parametrize("fault", ["slowdown", "stall", "stall-after-forwarding"])
@pytest.mark.parametrize(("operation", "scenario"), TRANSIENT,
                         ids=[f"{op}-{fn.__name__}" for op, fn in TRANSIENT])
async def test_transient_faults_are_retried(
    store: S3BlockStore, proxy: FaultProxy, s3_admin: Any, s3_bucket: str, operation: str,
    scenario: Callable[[S3BlockStore], Awaitable[None]], fault: str,
) -> None:
    await store.put("ready", chunked(pattern(2 * MiB + 5, 3)))
    proxy.reset_counts()
    times = ATTEMPTS - 1  # every attempt but the last fails
    if fault == "slowdown":
        rule = proxy.slowdown(operation=operation, times=times)
    else:
        times = 1  # each stall costs a read timeout: one is enough to show the retry
        rule = proxy.inject("stall", operation=operation, times=times, seconds=STALL,
                            forward=fault == "stall-after-forwarding")
    await scenario(store)
    assert rule.injected == times  # the faults happened, and the operation still succeeded
    assert proxy.injected(operation) == times
    forwarded_faults = times if fault == "stall-after-forwarding" else 0
    assert proxy.forwarded(operation) >= 1 + forwarded_faults
    assert pending_uploads(s3_admin, s3_bucket) == []


# -- the block store: persistent faults fail cleanly -------------------------------------------


async def test_persistent_slowdown_on_put_stores_nothing(
    store: S3BlockStore, proxy: FaultProxy, s3_admin: Any, s3_bucket: str
) -> None:
    proxy.slowdown(operation="PutObject")
    with pytest.raises(StorageError, match="SlowDown"):
        await store.put("small", chunked(pattern(1000)))
    assert proxy.injected("PutObject") == ATTEMPTS  # retried up to the attempts, not forever
    assert objects(s3_admin, s3_bucket) == []
    proxy.clear()
    assert await store.put("small", chunked(pattern(1000))) == 1000
    assert await read(store, "small") == pattern(1000)


async def test_persistent_slowdown_on_parts_aborts_the_upload(
    store: S3BlockStore, proxy: FaultProxy, s3_admin: Any, s3_bucket: str
) -> None:
    proxy.slowdown(operation="UploadPart", query=r"partNumber=2(&|$)")
    with pytest.raises(StorageError, match="SlowDown"):
        await store.put("big", chunked(pattern(3 * PART), MiB))
    assert proxy.injected("UploadPart") == ATTEMPTS
    assert proxy.forwarded("UploadPart") == 1  # part 1 went up; part 2 never did
    assert objects(s3_admin, s3_bucket) == []
    assert pending_uploads(s3_admin, s3_bucket) == []  # aborted, parts and all


async def test_put_whose_answers_are_all_lost_leaves_nothing(
    store: S3BlockStore, proxy: FaultProxy, s3_admin: Any, s3_bucket: str
) -> None:
    # Every attempt reaches the store and is applied, but no answer arrives in time.
    proxy.inject("stall", operation="PutObject", seconds=STALL, forward=True)
    with pytest.raises(StorageError, match=r"[Tt]imeout"):
        await store.put("lost", chunked(pattern(1000)))
    assert proxy.forwarded("PutObject") == ATTEMPTS
    assert proxy.forwarded("DeleteObject") == 1  # what an attempt may have stored is removed
    assert objects(s3_admin, s3_bucket) == []


async def test_persistent_stall_ends_in_an_error(store: S3BlockStore, proxy: FaultProxy) -> None:
    await store.put("ready", chunked(pattern(MiB)))
    proxy.inject("stall", operation="GetObject", seconds=STALL)
    with pytest.raises(StorageError, match=r"[Tt]imeout"):
        await read(store, "ready")
    assert proxy.injected("GetObject") == ATTEMPTS
    proxy.clear()
    assert await read(store, "ready") == pattern(MiB)


async def test_completion_whose_answer_was_lost_succeeds(
    store: S3BlockStore, proxy: FaultProxy, s3_admin: Any, s3_bucket: str
) -> None:
    upload = await store.create_multipart("mp")
    await store.put_part("mp", upload, 1, chunked(pattern(PART, 5)))
    await store.put_part("mp", upload, 2, chunked(b"end"))
    # The first attempt completes the upload but its answer is lost; the retry then finds no
    # upload (what S3 answers once its grace period is over).
    proxy.inject("stall", operation="CompleteMultipartUpload", times=1, seconds=STALL,
                 forward=True)
    proxy.inject("error", operation="CompleteMultipartUpload", times=1, status=404,
                 code="NoSuchUpload", message="The specified upload does not exist.")
    assert await store.complete_multipart("mp", upload, [1, 2]) == PART + 3
    assert proxy.injected("CompleteMultipartUpload") == 2
    assert await read(store, "mp") == pattern(PART, 5) + b"end"
    assert pending_uploads(s3_admin, s3_bucket) == []


# -- the block store: bodies cut off --------------------------------------------------------


@pytest.mark.parametrize("fault", ["cut", "stall"])
@pytest.mark.parametrize(("start", "end"), [(0, None), (1000, 3 * MiB - 1), (MiB + 1, None)])
async def test_get_resumes_a_body_that_broke_off(
    store: S3BlockStore, proxy: FaultProxy, fault: str, start: int, end: int | None
) -> None:
    data = pattern(3 * MiB, 6)
    await store.put("obj", chunked(data))
    proxy.reset_counts()
    proxy.inject(fault, operation="GetObject", times=2, after_bytes=300_000, seconds=STALL)
    assert await read(store, "obj", start=start, end=end) == data[start:end]
    assert proxy.injected("GetObject") == 2
    assert proxy.forwarded("GetObject") == 3  # the first answer and two resumptions


async def test_get_never_delivers_a_short_body(store: S3BlockStore, proxy: FaultProxy) -> None:
    data = pattern(4 * MiB, 7)
    await store.put("obj", chunked(data))
    proxy.inject("cut", operation="GetObject", after_bytes=MiB + 100)  # 3 cuts: 3 MiB + 300
    received = bytearray()
    with pytest.raises(StorageError, match="broke off"):
        async for chunk in store.get("obj"):
            received += chunk
    assert bytes(received) == data[: len(received)]  # what came is right, and it was refused
    assert len(received) < len(data)
    assert proxy.injected("GetObject") == ATTEMPTS


async def test_multipart_with_failing_parts_completes_when_retried(
    store: S3BlockStore, proxy: FaultProxy
) -> None:
    upload = await store.create_multipart("mp")
    proxy.slowdown(operation="UploadPart", query=r"partNumber=2(&|$)")
    await store.put_part("mp", upload, 1, chunked(pattern(PART, 8)))
    with pytest.raises(StorageError):
        await store.put_part("mp", upload, 2, chunked(pattern(PART, 9)))
    proxy.clear()
    await store.put_part("mp", upload, 2, chunked(pattern(PART, 9)))
    await store.put_part("mp", upload, 3, chunked(b"last"))
    assert await store.complete_multipart("mp", upload, [1, 2, 3]) == 2 * PART + 4
    assert await read(store, "mp") == pattern(PART, 8) + pattern(PART, 9) + b"last"


# -- through `lake serve` ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as running:
        yield running


@pytest.fixture(scope="module")
def lake_bucket(s3_admin: Any) -> str:
    name = f"faults-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, module_proxy: FaultProxy,
           lake_bucket: str) -> Iterator[Server]:
    """`lake serve` whose S3 endpoint is the proxy: 3 attempts, a short read timeout."""
    env = {
        "LAKE_S3_ENDPOINT": module_proxy.url,
        "LAKE_S3_REGION": REGION,
        "LAKE_DEFAULT_NAMESPACE": f"s3://{lake_bucket}/lake",
        "LAKE_S3_MAX_ATTEMPTS": str(ATTEMPTS),
        "LAKE_S3_READ_TIMEOUT": str(READ_TIMEOUT),
        "LAKE_S3_CONNECT_TIMEOUT": "2",
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
    }
    root: Path = tmp_path_factory.mktemp("faults")
    with lake_serve(root / "data", env=env) as server:
        yield server


@pytest.fixture
def faults(module_proxy: FaultProxy) -> Iterator[FaultProxy]:
    module_proxy.clear()
    module_proxy.reset_counts()
    yield module_proxy
    module_proxy.clear()


@pytest.fixture
def lake(served: Server) -> Iterator[Any]:
    """A boto3 client of the server that does not retry: every error is seen."""
    client = boto3.client(
        "s3", endpoint_url=served.endpoint, region_name=REGION,
        aws_access_key_id=served.access_key, aws_secret_access_key=served.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                      read_timeout=60, connect_timeout=10),
    )
    yield client
    client.close()


@pytest.fixture
def repo(lake: Any) -> str:
    name = f"r{uuid.uuid4().hex[:10]}"
    lake.create_bucket(Bucket=name)
    return name


def keys(lake: Any, repo: str, prefix: str = "main/") -> list[str]:
    pages = lake.get_paginator("list_objects_v2").paginate(Bucket=repo, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def api(server: Server, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{server.endpoint}/api/v1{path}",
                            auth=(server.access_key, server.secret_key), timeout=60, **kw)


def assert_unavailable(caught: pytest.ExceptionInfo[ClientError]) -> None:
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert response["Error"]["Code"] in ("ServiceUnavailable", "SlowDown")
    assert response["ResponseMetadata"]["HTTPHeaders"].get("retry-after") == "1"


def test_gateway_retries_transient_slowdowns(lake: Any, faults: FaultProxy, repo: str) -> None:
    data = pattern(200_000, 10)
    faults.slowdown(operation="PutObject", times=ATTEMPTS - 1)
    lake.put_object(Bucket=repo, Key="main/a.bin", Body=data)
    assert faults.injected("PutObject") == ATTEMPTS - 1
    faults.slowdown(operation="GetObject", times=ATTEMPTS - 1)
    assert lake.get_object(Bucket=repo, Key="main/a.bin")["Body"].read() == data
    assert faults.injected("GetObject") == ATTEMPTS - 1
    assert lake.head_object(Bucket=repo, Key="main/a.bin")["ContentLength"] == len(data)
    assert keys(lake, repo) == ["main/a.bin"]


def test_gateway_multipart_retries_transient_slowdowns(
    lake: Any, faults: FaultProxy, repo: str
) -> None:
    upload = lake.create_multipart_upload(Bucket=repo, Key="main/mp.bin")["UploadId"]
    bodies = [pattern(PART, 11), pattern(PART, 12), b"tail"]
    faults.slowdown(operation="UploadPart", times=ATTEMPTS - 1)
    faults.slowdown(operation="CompleteMultipartUpload", times=ATTEMPTS - 1)
    parts = [
        {"PartNumber": n, "ETag": lake.upload_part(Bucket=repo, Key="main/mp.bin",
                                                   UploadId=upload, PartNumber=n,
                                                   Body=body)["ETag"]}
        for n, body in enumerate(bodies, 1)
    ]
    lake.complete_multipart_upload(Bucket=repo, Key="main/mp.bin", UploadId=upload,
                                   MultipartUpload={"Parts": parts})
    assert faults.injected("UploadPart") == ATTEMPTS - 1
    assert faults.injected("CompleteMultipartUpload") == ATTEMPTS - 1
    assert lake.get_object(Bucket=repo, Key="main/mp.bin")["Body"].read() == b"".join(bodies)


def test_gateway_answers_503_to_persistent_slowdown_and_recovers(
    lake: Any, faults: FaultProxy, repo: str, served: Server, module_proxy: FaultProxy
) -> None:
    lake.put_object(Bucket=repo, Key="main/kept.txt", Body=b"kept")
    before = keys(lake, repo)
    faults.slowdown(operation="PutObject")
    with pytest.raises(ClientError) as caught:
        lake.put_object(Bucket=repo, Key="main/new.txt", Body=b"new")
    assert_unavailable(caught)
    assert faults.injected("PutObject") == ATTEMPTS
    answer = api(served, "POST", f"/repositories/{repo}/branches/main/objects",
                 params={"path": "api.txt"}, data=b"through the api")
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["Content-Type"].startswith("application/json")
    assert "SlowDown" in answer.json()["message"]
    # Nothing became visible: no staged entry, the listing is unchanged.
    assert keys(lake, repo) == before
    diff = api(served, "GET", f"/repositories/{repo}/branches/main/diff")
    assert diff.status_code == 200, diff.text
    assert {r["path"] for r in diff.json()["results"]} == {"kept.txt"}
    with pytest.raises(ClientError) as missing:
        lake.head_object(Bucket=repo, Key="main/new.txt")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # The fault is lifted: the same server serves normally.
    faults.clear()
    lake.put_object(Bucket=repo, Key="main/new.txt", Body=b"new")
    assert lake.get_object(Bucket=repo, Key="main/new.txt")["Body"].read() == b"new"
    assert lake.get_object(Bucket=repo, Key="main/kept.txt")["Body"].read() == b"kept"
    assert requests.get(f"{served.endpoint}/readyz", timeout=30).status_code == 200


def test_gateway_stalled_store_is_retried_or_unavailable(
    lake: Any, faults: FaultProxy, repo: str
) -> None:
    data = pattern(100_000, 13)
    faults.inject("stall", operation="PutObject", times=1, seconds=STALL, forward=True)
    lake.put_object(Bucket=repo, Key="main/s.bin", Body=data)
    assert faults.injected("PutObject") == 1
    faults.inject("stall", operation="GetObject", times=1, seconds=STALL)
    assert lake.get_object(Bucket=repo, Key="main/s.bin")["Body"].read() == data
    faults.inject("stall", operation="GetObject", seconds=STALL)
    # The gateway asks the store for the first bytes before it answers: a store that stays
    # stalled is a 503 the client can retry, not a body that breaks off.
    with pytest.raises(ClientError) as failed:
        lake.get_object(Bucket=repo, Key="main/s.bin")
    assert_unavailable(failed)
    assert faults.injected("GetObject") == 1 + ATTEMPTS
    faults.clear()
    assert lake.get_object(Bucket=repo, Key="main/s.bin")["Body"].read() == data


def test_gateway_get_cut_mid_body(lake: Any, faults: FaultProxy, repo: str) -> None:
    data = pattern(3 * MiB, 14)
    lake.put_object(Bucket=repo, Key="main/c.bin", Body=data)
    faults.inject("cut", operation="GetObject", times=1, after_bytes=MiB // 2)
    assert lake.get_object(Bucket=repo, Key="main/c.bin")["Body"].read() == data  # resumed
    assert lake.get_object(Bucket=repo, Key="main/c.bin", Range="bytes=100-2099999")[
        "Body"].read() == data[100:2_100_000]
    # Cut on every attempt: the client sees an error, never a short body taken as whole (a
    # 503 when the store gives up before the first bytes went out, else a broken body).
    faults.inject("cut", operation="GetObject", after_bytes=MiB // 4)
    with pytest.raises((ClientError, BotoCoreError)) as failed:
        lake.get_object(Bucket=repo, Key="main/c.bin")["Body"].read()
    if isinstance(failed.value, ClientError):
        assert_unavailable(failed)  # type: ignore[arg-type]
    assert faults.injected("GetObject") == 1 + ATTEMPTS
    faults.clear()
    assert lake.get_object(Bucket=repo, Key="main/c.bin")["Body"].read() == data


def test_gateway_multipart_completes_when_the_client_retries_failed_parts(
    served: Server, faults: FaultProxy, repo: str
) -> None:
    # Part 2 is refused on every attempt of the server, which then answers 503; other parts
    # are refused now and then. The client retries what failed; the upload completes intact.
    client = boto3.client(
        "s3", endpoint_url=served.endpoint, region_name=REGION,
        aws_access_key_id=served.access_key, aws_secret_access_key=served.secret_key,
        config=Config(s3={"addressing_style": "path"},
                      retries={"mode": "standard", "total_max_attempts": 10}),
    )
    refused = faults.slowdown(operation="UploadPart", query=r"partNumber=2(&|$)",
                              times=ATTEMPTS)
    sometimes = faults.slowdown(operation="UploadPart", fraction=0.4, seed=1)
    bodies = [pattern(PART, 20 + n) for n in range(4)] + [b"last"]
    upload = client.create_multipart_upload(Bucket=repo, Key="main/big.bin")["UploadId"]
    parts, retried = [], []
    for n, body in enumerate(bodies, 1):
        answer = client.upload_part(Bucket=repo, Key="main/big.bin", UploadId=upload,
                                    PartNumber=n, Body=body)
        parts.append({"PartNumber": n, "ETag": answer["ETag"]})
        retried.append(answer["ResponseMetadata"]["RetryAttempts"])
    client.complete_multipart_upload(Bucket=repo, Key="main/big.bin", UploadId=upload,
                                     MultipartUpload={"Parts": parts})
    assert refused.injected == ATTEMPTS
    assert retried[1] >= 1  # the client saw part 2 fail, and sent it again
    assert sometimes.injected > 0
    assert faults.forwarded("UploadPart") == len(bodies)  # each part stored once, no more
    faults.clear()
    got = client.get_object(Bucket=repo, Key="main/big.bin")
    assert got["ETag"].strip('"').endswith(f"-{len(bodies)}")
    assert got["Body"].read() == b"".join(bodies)
    client.close()


def test_proxy_keeps_signatures_valid(served: Server) -> None:
    # lakeproxy verifies SigV4 (moto does not): a request signed for the proxy's address must
    # still verify once forwarded, streamed payloads (aws-chunked) included.
    with FaultProxy(served.endpoint) as proxy:
        client = boto3.client(
            "s3", endpoint_url=proxy.url, region_name=REGION,
            aws_access_key_id=served.access_key, aws_secret_access_key=served.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )
        name = f"r{uuid.uuid4().hex[:10]}"
        client.create_bucket(Bucket=name)
        data = pattern(MiB + 3, 30)
        client.put_object(Bucket=name, Key="main/signed.bin", Body=data)
        client.upload_fileobj(io.BytesIO(data), name, "main/streamed.bin")
        assert client.get_object(Bucket=name, Key="main/signed.bin")["Body"].read() == data
        assert client.get_object(Bucket=name, Key="main/streamed.bin")["Body"].read() == data
        assert proxy.forwarded("PutObject") == 2
        client.close()
