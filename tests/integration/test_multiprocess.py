"""Many processes, one truth: two `lake serve` processes on one PostgreSQL schema and one S3.

Both servers (separate OS processes on separate ports) keep metadata in the same PostgreSQL
schema and object bytes in the same bucket of an S3 endpoint (moto's server). The test
process opens a Graveler on the same schema too, a third process on the shared truth. Writes
are spread over both servers, commits and merges are issued through both servers' REST API
and through the Graveler, and afterwards every acknowledged write is there, the history is a
proper DAG, and both servers answer the same.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from lakeproxy.blockstore import S3Settings
from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.errors import NoChanges
from lakeproxy.graveler import Graveler, MergeStrategy
from lakeproxy.graveler.model import Commit
from lakeproxy.metastore.postgres import PostgresMetadataStore
from tests.conftest import fresh_schema
from tests.s3server import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, REGION
from tests.server import Server, lake_serve

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


@dataclass(frozen=True)
class Cluster:
    servers: tuple[Server, Server]
    metadata_url: str
    namespace: str  # s3://bucket/prefix, the default namespace of new repositories


@pytest.fixture
def cluster(tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> Iterator[Cluster]:
    namespace = f"s3://{s3_bucket}/lake"
    env = {
        "LAKE_S3_ENDPOINT": s3_endpoint,
        "LAKE_S3_REGION": REGION,
        "LAKE_DEFAULT_NAMESPACE": namespace,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
    }
    with fresh_schema() as url, ExitStack() as stack:
        first = stack.enter_context(lake_serve(tmp_path / "a", env=env, metadata_url=url))
        second = stack.enter_context(lake_serve(tmp_path / "b", env=env, metadata_url=url))
        yield Cluster((first, second), url, namespace)


@pytest.fixture
async def graveler(cluster: Cluster, s3_settings: S3Settings,
                   tmp_path: Path) -> AsyncIterator[Graveler]:
    """The third process on the shared truth: a Graveler in the test process."""
    store = await PostgresMetadataStore.open(cluster.metadata_url, pool_max=4)
    g = Graveler(store, BlockStores(tmp_path / "c", s3=s3_settings,
                                    default_s3_namespace=cluster.namespace))
    yield g
    await g.close()


def s3_client(server: Server) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}, max_pool_connections=32),
    )


def api(server: Server, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{server.endpoint}/api/v1{path}",
                            auth=(server.access_key, server.secret_key), timeout=60, **kw)


def rest_commit(server: Server, repo: str, branch: str, message: str) -> str | None:
    """Commit through a server's REST API: the commit id, or None when nothing was staged."""
    answer = api(server, "POST", f"/repositories/{repo}/branches/{branch}/commits",
                 json={"message": message})
    if answer.status_code == 400 and "no uncommitted changes" in answer.text:
        return None
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def rest_merge(server: Server, repo: str, source: str, dest: str) -> str:
    answer = api(server, "POST", f"/repositories/{repo}/refs/{source}/merge/{dest}", json={})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["reference"])


def listed(s3: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [(o["Key"], o["ETag"]) for page in pages for o in page.get("Contents", [])]


async def history(g: Graveler, repo: str, ref: str) -> dict[str, Commit]:
    """Every commit reachable from `ref`, checked to form a DAG with sound generations."""
    head = await g.get_commit(repo, ref)
    seen: dict[str, Commit] = {}
    todo = [head.id]
    while todo:
        cid = todo.pop()
        if cid in seen:
            continue
        commit = await g.get_commit(repo, cid)
        seen[cid] = commit
        todo.extend(commit.parents)
        assert len(seen) < 10_000, "the history does not end"
    for commit in seen.values():
        parents = [seen[p] for p in commit.parents]  # every parent exists
        expected = 1 + max((p.generation for p in parents), default=0)
        assert commit.generation == expected, commit
    assert sum(1 for c in seen.values() if not c.parents) == 1  # one root
    return seen


async def test_writes_commits_and_merges_through_two_servers(
    cluster: Cluster, graveler: Graveler
) -> None:
    a, b = cluster.servers
    clients = (s3_client(a), s3_client(b))
    repo = f"mp-{uuid.uuid4().hex[:8]}"
    clients[0].create_bucket(Bucket=repo)
    clients[1].head_bucket(Bucket=repo)  # created through A, seen through B at once
    assert (await graveler.get_repository(repo)).storage_namespace == \
        f"{cluster.namespace}/{repo}"

    def write(i: int) -> str:
        """PUT through one server, read it back at once through the other."""
        key, data = f"main/w{i % 8}/k{i:04d}", f"value {i}".encode()
        clients[i % 2].put_object(Bucket=repo, Key=key, Body=data)
        assert clients[(i + 1) % 2].get_object(Bucket=repo, Key=key)["Body"].read() == data
        return key

    loop = asyncio.get_running_loop()
    committed: list[str] = []
    writing = True

    async def commit_while_writing() -> None:
        for n in range(60):
            if not writing and n >= 6:
                return
            if n % 3 == 2:
                with suppress(NoChanges):
                    committed.append((await graveler.commit(repo, "main", f"g{n}")).id)
            else:
                server = cluster.servers[n % 3]  # A, then B
                cid = await asyncio.to_thread(rest_commit, server, repo, "main", f"r{n}")
                if cid is not None:
                    committed.append(cid)
            await asyncio.sleep(0.05)

    with ThreadPoolExecutor(8) as pool:
        committer = asyncio.ensure_future(commit_while_writing())
        try:
            acked = await asyncio.gather(
                *(loop.run_in_executor(pool, write, i) for i in range(240))
            )
        finally:
            writing = False
            await committer
    assert len(committed) >= 6

    # Every acknowledged write is on main (committed or staged), read through both servers.
    both = [listed(c, repo, "main/") for c in clients]
    assert both[0] == both[1]
    assert sorted(k for k, _ in both[0]) == sorted(acked)

    # Every commit acknowledged by any process is in main's history, which is a DAG.
    final = await graveler.commit(repo, "main", "the rest", allow_empty=True)
    commits = await history(graveler, repo, "main")
    assert set(committed) | {final.id} <= set(commits)
    on_main = [f"main/{k}" async for k, _ in graveler.iter_entries(repo, "main@")]
    assert sorted(on_main) == sorted(acked)

    # Concurrent merges into one branch from two processes: neither loses the other.
    await graveler.create_branch(repo, "release", "main")
    for name, server, client in (("feat-a", a, clients[0]), ("feat-b", b, clients[1])):
        await graveler.create_branch(repo, name, "main")
        for i in range(20):
            client.put_object(Bucket=repo, Key=f"{name}/{name}-{i}", Body=name.encode())
        assert await asyncio.to_thread(rest_commit, server, repo, name, name) is not None
    merges = await asyncio.gather(
        asyncio.to_thread(rest_merge, a, repo, "feat-a", "release"),
        asyncio.to_thread(rest_merge, b, repo, "feat-b", "release"),
        graveler.merge(repo, "main", "release", strategy=MergeStrategy.FAIL, allow_empty=True),
    )
    release = await history(graveler, repo, "release")
    assert {merges[0], merges[1], merges[2].id} <= set(release)
    for client in clients:
        keys = [k for k, _ in listed(client, repo, "release/")]
        assert sum(1 for k in keys if "/feat-a-" in k) == 20
        assert sum(1 for k in keys if "/feat-b-" in k) == 20


async def test_no_process_keeps_a_stale_view(cluster: Cluster, graveler: Graveler) -> None:
    """What one process changes, the others see at once: nothing mutable is cached."""
    a, b = (s3_client(s) for s in cluster.servers)
    repo = f"st-{uuid.uuid4().hex[:8]}"
    a.create_bucket(Bucket=repo)
    for n in range(5):  # overwrite through A, read through B (which read the old value)
        a.put_object(Bucket=repo, Key="main/k", Body=b"v%d" % n)
        assert b.get_object(Bucket=repo, Key="main/k")["Body"].read() == b"v%d" % n
    b.delete_object(Bucket=repo, Key="main/k")
    with pytest.raises(ClientError, match="NoSuchKey"):
        a.get_object(Bucket=repo, Key="main/k")

    # The committed view moves when a third process commits.
    a.put_object(Bucket=repo, Key="main/c", Body=b"one")
    await graveler.commit(repo, "main", "one")
    assert b.get_object(Bucket=repo, Key="main@/c")["Body"].read() == b"one"
    a.put_object(Bucket=repo, Key="main/c", Body=b"two")
    assert b.get_object(Bucket=repo, Key="main@/c")["Body"].read() == b"one"
    await graveler.commit(repo, "main", "two")
    assert b.get_object(Bucket=repo, Key="main@/c")["Body"].read() == b"two"

    # Branches, protection and whole repositories changed elsewhere are seen at once.
    await graveler.create_branch(repo, "dev", "main")
    b.put_object(Bucket=repo, Key="dev/x", Body=b"x")
    await graveler.set_branch_protection(repo, "dev", True)
    with pytest.raises(ClientError, match="AccessDenied"):
        a.put_object(Bucket=repo, Key="dev/y", Body=b"y")
    await graveler.delete_repository(repo)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        b.get_object(Bucket=repo, Key="main@/c")
    b.create_bucket(Bucket=repo)  # the same name again: a new, empty repository
    with pytest.raises(ClientError, match="NoSuchKey"):
        a.get_object(Bucket=repo, Key="main/c")


def test_a_multipart_upload_moves_between_servers(cluster: Cluster) -> None:
    a, b = (s3_client(s) for s in cluster.servers)
    repo = f"mu-{uuid.uuid4().hex[:8]}"
    a.create_bucket(Bucket=repo)
    upload = a.create_multipart_upload(Bucket=repo, Key="main/big.bin")["UploadId"]
    listed_on_b = b.list_multipart_uploads(Bucket=repo).get("Uploads", [])
    assert [u["UploadId"] for u in listed_on_b] == [upload]
    first, second = b"a" * (5 * 1024 * 1024), b"tail"
    p1 = b.upload_part(Bucket=repo, Key="main/big.bin", UploadId=upload, PartNumber=1,
                       Body=first)
    p2 = a.upload_part(Bucket=repo, Key="main/big.bin", UploadId=upload, PartNumber=2,
                       Body=second)
    parts = a.list_parts(Bucket=repo, Key="main/big.bin", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2]
    b.complete_multipart_upload(
        Bucket=repo, Key="main/big.bin", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["ETag"]}]},
    )
    assert a.get_object(Bucket=repo, Key="main/big.bin")["Body"].read() == first + second
    assert b.list_multipart_uploads(Bucket=repo).get("Uploads", []) == []
    with pytest.raises(ClientError, match="NoSuchUpload"):
        a.list_parts(Bucket=repo, Key="main/big.bin", UploadId=upload)
