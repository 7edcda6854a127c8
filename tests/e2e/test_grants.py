"""Grants enforced by a real `lake serve`, seen through boto3.

Keys are made in this process with a KeyStore opened on the server's metadata store (SQLite in
its data directory, or its PostgreSQL schema) and master key, exactly as another server
process would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from lakeproxy.auth import Level
from lakeproxy.auth.keys import KeyStore, open_key_store
from lakeproxy.auth.master import MASTER_KEY_FILE, new_master_key
from lakeproxy.config import Settings
from lakeproxy.metastore import open_metastore
from tests.e2e.conftest import s3_client
from tests.server import MASTER_KEY, Server, lake_serve

pytestmark = pytest.mark.timeout(120)


async def _with_keys(server: Server, fn: Callable[[KeyStore], Any]) -> Any:
    settings = Settings(data_dir=server.data_dir, metadata_url=server.metadata_url,
                        master_key=MASTER_KEY if server.metadata_url else None,
                        sqlite_synchronous="NORMAL")
    store = await open_metastore(settings.metadata_url, settings.data_dir,
                                 sqlite_synchronous=settings.sqlite_synchronous)
    try:
        return await fn(await open_key_store(store, settings))
    finally:
        await store.close()


def make_key(server: Server, *, admin: bool = False,
             grants: Mapping[str, Level] | None = None) -> Any:
    """A boto3 client of a new key with these rights."""
    async def create(keys: KeyStore) -> tuple[str, str]:
        info, secret = await keys.create(admin=admin, grants=grants or {})
        return info.access_key_id, secret

    access_key_id, secret = asyncio.run(_with_keys(server, create))
    client = s3_client(dataclasses.replace(server, access_key=access_key_id, secret_key=secret))
    client.access_key_id = access_key_id  # to revoke it, or use it on another server
    client.secret_access_key = secret
    return client


def revoke(server: Server, access_key_id: str) -> None:
    asyncio.run(_with_keys(server, lambda keys: keys.delete(access_key_id)))


def error_code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return str(info.value.response["Error"]["Code"])


def status_of(call: Callable[[], Any]) -> int:
    with pytest.raises(ClientError) as info:
        call()
    return int(info.value.response["ResponseMetadata"]["HTTPStatusCode"])


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclasses.dataclass
class World:
    data: str  # the reader's repository
    other: str  # a repository the reader has no grant on
    upload_id: str  # a multipart upload started by root on data/main/big.bin


@pytest.fixture(scope="module")
def world(s3: Any) -> World:
    data, other = name("data"), name("other")
    for bucket in (data, other):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=data, Key="main/a.txt", Body=b"alpha")
    s3.put_object(Bucket=data, Key="main/b.txt", Body=b"beta")
    s3.put_object(Bucket=other, Key="main/secret.txt", Body=b"classified")
    upload = s3.create_multipart_upload(Bucket=data, Key="main/big.bin")
    return World(data, other, upload["UploadId"])


@pytest.fixture(scope="module")
def reader(server: Server, world: World) -> Any:
    return make_key(server, grants={world.data: Level.READ})


def snapshot(s3: Any, world: World) -> dict[str, object]:
    """Everything a refused write could have changed, read with the root key."""
    out: dict[str, object] = {}
    for bucket in (world.data, world.other):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="main/").get("Contents", [])
        out[bucket] = {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                       for o in listed}
    uploads = s3.list_multipart_uploads(Bucket=world.data).get("Uploads", [])
    out["uploads"] = sorted(u["UploadId"] for u in uploads)
    out["parts"] = [p["PartNumber"] for p in s3.list_parts(
        Bucket=world.data, Key="main/big.bin", UploadId=world.upload_id).get("Parts", [])]
    out["buckets"] = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    return out


def test_master_key_is_generated_owner_only(server: Server) -> None:
    if server.metadata_url:
        pytest.skip("a server on PostgreSQL takes its master key from LAKE_MASTER_KEY")
    path = server.data_dir / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_read_only_key_lists_and_gets(reader: Any, world: World) -> None:
    reader.head_bucket(Bucket=world.data)
    keys = [o["Key"] for o in reader.list_objects_v2(Bucket=world.data)["Contents"]]
    assert keys == ["main/a.txt", "main/b.txt"]
    assert reader.list_objects(Bucket=world.data)["Contents"][0]["Key"] == "main/a.txt"
    assert reader.get_object(Bucket=world.data, Key="main/a.txt")["Body"].read() == b"alpha"
    assert reader.head_object(Bucket=world.data, Key="main/b.txt")["ContentLength"] == 4
    assert reader.get_bucket_location(Bucket=world.data) is not None
    uploads = reader.list_multipart_uploads(Bucket=world.data).get("Uploads", [])
    assert world.upload_id in [u["UploadId"] for u in uploads]
    url = reader.generate_presigned_url(
        "get_object", Params={"Bucket": world.data, "Key": "main/a.txt"}, ExpiresIn=300)
    assert requests.get(url, timeout=30).content == b"alpha"


def test_read_only_key_cannot_write(s3: Any, reader: Any, world: World) -> None:
    before = snapshot(s3, world)
    data = world.data
    refused: list[Callable[[], Any]] = [
        lambda: reader.put_object(Bucket=data, Key="main/a.txt", Body=b"overwritten"),
        lambda: reader.put_object(Bucket=data, Key="main/new.txt", Body=b"new"),
        lambda: reader.delete_object(Bucket=data, Key="main/a.txt"),
        lambda: reader.copy_object(Bucket=data, Key="main/copy.txt",
                                   CopySource={"Bucket": data, "Key": "main/a.txt"}),
        lambda: reader.create_multipart_upload(Bucket=data, Key="main/mp.bin"),
        lambda: reader.upload_part(Bucket=data, Key="main/big.bin", UploadId=world.upload_id,
                                   PartNumber=1, Body=b"part"),
        lambda: reader.upload_part_copy(Bucket=data, Key="main/big.bin",
                                        UploadId=world.upload_id, PartNumber=1,
                                        CopySource={"Bucket": data, "Key": "main/a.txt"}),
        lambda: reader.complete_multipart_upload(
            Bucket=data, Key="main/big.bin", UploadId=world.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]}),
        lambda: reader.abort_multipart_upload(Bucket=data, Key="main/big.bin",
                                              UploadId=world.upload_id),
        lambda: reader.create_bucket(Bucket=name("made")),
        lambda: reader.delete_bucket(Bucket=data),
    ]
    for call in refused:
        assert error_code(call) == "AccessDenied"
    assert error_code(lambda: reader.delete_objects(Bucket=data, Delete={"Objects": [
        {"Key": "main/a.txt"}, {"Key": "main/b.txt"}]})) == "AccessDenied"
    url = reader.generate_presigned_url(
        "put_object", Params={"Bucket": data, "Key": "main/presigned.txt"}, ExpiresIn=300)
    reply = requests.put(url, data=b"sneaky", timeout=30)
    assert reply.status_code == 403 and b"AccessDenied" in reply.content
    assert snapshot(s3, world) == before


def test_a_key_sees_nothing_of_another_repository(reader: Any, world: World) -> None:
    assert [b["Name"] for b in reader.list_buckets()["Buckets"]] == [world.data]
    other = world.other
    assert status_of(lambda: reader.head_bucket(Bucket=other)) == 403
    for call in (
        lambda: reader.get_object(Bucket=other, Key="main/secret.txt"),
        lambda: reader.list_objects_v2(Bucket=other),
        lambda: reader.list_objects(Bucket=other),
        lambda: reader.get_bucket_location(Bucket=other),
        lambda: reader.list_multipart_uploads(Bucket=other),
    ):
        assert error_code(call) == "AccessDenied"
    assert status_of(lambda: reader.head_object(Bucket=other, Key="main/secret.txt")) == 403
    # A repository that does not exist answers the same: no grant, no existence probe.
    missing = name("missing")
    assert status_of(lambda: reader.head_bucket(Bucket=missing)) == 403
    assert error_code(lambda: reader.get_object(Bucket=missing, Key="main/x")) == "AccessDenied"


def test_copy_needs_read_on_the_source(s3: Any, server: Server, world: World) -> None:
    writer = make_key(server, grants={world.data: Level.WRITE})
    source = {"Bucket": world.other, "Key": "main/secret.txt"}
    assert error_code(lambda: writer.copy_object(
        Bucket=world.data, Key="main/stolen.txt", CopySource=source)) == "AccessDenied"
    upload = writer.create_multipart_upload(Bucket=world.data, Key="main/stolen-mp.bin")
    assert error_code(lambda: writer.upload_part_copy(
        Bucket=world.data, Key="main/stolen-mp.bin", UploadId=upload["UploadId"],
        PartNumber=1, CopySource=source)) == "AccessDenied"
    assert writer.list_parts(Bucket=world.data, Key="main/stolen-mp.bin",
                             UploadId=upload["UploadId"]).get("Parts", []) == []
    writer.abort_multipart_upload(Bucket=world.data, Key="main/stolen-mp.bin",
                                  UploadId=upload["UploadId"])
    assert status_of(lambda: s3.head_object(Bucket=world.data, Key="main/stolen.txt")) == 404
    # Within its repository the same key copies and writes.
    writer.copy_object(Bucket=world.data, Key="main/copy-ok.txt",
                       CopySource={"Bucket": world.data, "Key": "main/a.txt"})
    assert s3.get_object(Bucket=world.data, Key="main/copy-ok.txt")["Body"].read() == b"alpha"
    # Read on the source is enough there.
    both = make_key(server, grants={world.data: Level.WRITE, world.other: Level.READ})
    both.copy_object(Bucket=world.data, Key="main/copied-across.txt", CopySource=source)
    assert s3.get_object(Bucket=world.data,
                         Key="main/copied-across.txt")["Body"].read() == b"classified"
    for key in ("main/copy-ok.txt", "main/copied-across.txt"):
        s3.delete_object(Bucket=world.data, Key=key)


def test_writer_writes_but_cannot_manage_repositories(s3: Any, server: Server) -> None:
    repo = name("writable")
    s3.create_bucket(Bucket=repo)
    writer = make_key(server, grants={repo: Level.WRITE})
    writer.put_object(Bucket=repo, Key="main/x.txt", Body=b"x")
    upload = writer.create_multipart_upload(Bucket=repo, Key="main/mp.bin")
    part = writer.upload_part(Bucket=repo, Key="main/mp.bin", UploadId=upload["UploadId"],
                              PartNumber=1, Body=b"part")
    writer.complete_multipart_upload(
        Bucket=repo, Key="main/mp.bin", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    result = writer.delete_objects(Bucket=repo, Delete={"Objects": [
        {"Key": "main/x.txt"}, {"Key": "main/mp.bin"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["main/mp.bin", "main/x.txt"]
    assert error_code(lambda: writer.delete_bucket(Bucket=repo)) == "AccessDenied"
    assert error_code(lambda: writer.create_bucket(Bucket=name("made"))) == "AccessDenied"
    s3.head_bucket(Bucket=repo)
    owner = make_key(server, grants={repo: Level.ADMIN})
    assert error_code(lambda: owner.create_bucket(Bucket=name("made"))) == "AccessDenied"
    owner.delete_bucket(Bucket=repo)
    assert status_of(lambda: s3.head_bucket(Bucket=repo)) == 404


def test_global_admin_key_does_everything(s3: Any, server: Server, world: World) -> None:
    admin = make_key(server, admin=True)
    repo = name("byadmin")
    admin.create_bucket(Bucket=repo)
    listed = [b["Name"] for b in admin.list_buckets()["Buckets"]]
    assert {repo, world.data, world.other} <= set(listed)
    assert admin.get_object(Bucket=world.other, Key="main/secret.txt")["Body"].read() == (
        b"classified")
    admin.delete_bucket(Bucket=repo)


def test_revoked_key_stops_at_once(server: Server, world: World) -> None:
    key = make_key(server, grants={world.data: Level.READ})
    assert key.get_object(Bucket=world.data, Key="main/a.txt")["Body"].read() == b"alpha"
    revoke(server, key.access_key_id)
    assert error_code(lambda: key.get_object(Bucket=world.data, Key="main/a.txt")) == (
        "InvalidAccessKeyId")
    assert error_code(lambda: key.list_buckets()) == "InvalidAccessKeyId"


@pytest.fixture
def stopped_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose server has made a key and stopped."""
    data_dir = tmp_path / "data"
    with lake_serve(data_dir) as running:
        make_key(running, grants={})
    yield data_dir


def test_wrong_master_key_refuses_to_start(stopped_data_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="exited"), lake_serve(
        stopped_data_dir, env={"LAKE_MASTER_KEY": new_master_key()}
    ):
        pass
    logs = "".join(p.read_text() for p in stopped_data_dir.parent.glob("serve-*.log"))
    assert "master key does not match" in logs


@pytest.mark.postgres
def test_servers_on_one_postgres_share_keys_and_revocations(tmp_path: Path) -> None:
    from tests.conftest import fresh_schema

    with fresh_schema(pool_min="1", pool_max="2") as url:
        with lake_serve(tmp_path / "one", metadata_url=url) as one, \
                lake_serve(tmp_path / "two", metadata_url=url) as two:
            key_on_one = make_key(one, admin=True)
            key_on_two = s3_client(dataclasses.replace(
                two, access_key=key_on_one.access_key_id,
                secret_key=key_on_one.secret_access_key))
            repo = name("shared")
            key_on_one.create_bucket(Bucket=repo)
            assert repo in [b["Name"] for b in key_on_two.list_buckets()["Buckets"]]
            revoke(two, key_on_one.access_key_id)
            for client in (key_on_one, key_on_two):
                assert error_code(client.list_buckets) == "InvalidAccessKeyId"
        # The same store without the master key, or with another one, refuses to start.
        for env in ({"LAKE_MASTER_KEY": ""}, {"LAKE_MASTER_KEY": new_master_key()}):
            with pytest.raises(RuntimeError, match="exited"), \
                    lake_serve(tmp_path / "three", metadata_url=url, env=env):
                pass
        logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
        assert "set LAKE_MASTER_KEY" in logs
        assert "master key does not match" in logs
