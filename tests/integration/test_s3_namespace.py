"""The core on an S3 storage namespace (a real S3 endpoint: moto's server mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lakeproxy.blockstore import S3Settings
from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.graveler import Graveler, MergeStrategy
from lakeproxy.metastore.memory import MemoryMetadataStore
from tests.conftest import body, keys, put, read

pytestmark = pytest.mark.s3


@pytest.fixture
async def s3_graveler(s3_settings: S3Settings, tmp_path: Path) -> AsyncIterator[Graveler]:
    g = Graveler(MemoryMetadataStore(), BlockStores(tmp_path, s3=s3_settings))
    yield g
    await g.close()


def bucket_objects(s3_admin: Any, bucket: str) -> list[str]:
    pages = s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


async def test_versioning_on_an_s3_namespace(s3_graveler: Graveler, s3_admin: Any,
                                             s3_bucket: str) -> None:
    g = s3_graveler
    await g.create_repository("s3repo", f"s3://{s3_bucket}/lake/s3repo")
    for i in range(5):
        await put(g, "s3repo", "main", f"data/{i}.csv", f"row {i}\n".encode())
    await g.commit("s3repo", "main", "five objects")
    assert len(bucket_objects(s3_admin, s3_bucket)) == 5
    assert all(k.startswith("lake/s3repo/data/") for k in bucket_objects(s3_admin, s3_bucket))
    await g.create_branch("s3repo", "exp", "main")
    await put(g, "s3repo", "exp", "data/0.csv", b"changed\n")
    await g.commit("s3repo", "exp", "one change")
    assert len(bucket_objects(s3_admin, s3_bucket)) == 6  # branching copied nothing
    await g.merge("s3repo", "exp", "main", strategy=MergeStrategy.SOURCE_WINS)
    assert await read(g, "s3repo", "main", "data/0.csv") == b"changed\n"
    assert await read(g, "s3repo", "main~1", "data/0.csv") == b"row 0\n"
    entry = await g.get_entry("s3repo", "main", "data/3.csv")
    ranged = b"".join([c async for c in g.open_object("s3repo", entry, start=2, end=5)])
    assert ranged == b"w 3"
    assert await keys(g, "s3repo", "main", "data/") == [f"data/{i}.csv" for i in range(5)]


async def test_multipart_on_an_s3_namespace(s3_graveler: Graveler, s3_bucket: str) -> None:
    g = s3_graveler
    await g.create_repository("mprepo", f"s3://{s3_bucket}/mp")
    upload = await g.create_upload("mprepo", "main", "big.bin")
    first = b"a" * (5 * 1024 * 1024)
    p1 = await g.upload_part("mprepo", upload.upload_id, 1, body(first))
    p2 = await g.upload_part("mprepo", upload.upload_id, 2, body(b"tail"))
    entry = await g.complete_upload("mprepo", upload.upload_id, [(1, p1.etag), (2, p2.etag)])
    assert entry.size == len(first) + 4 and entry.etag.endswith("-2")
    assert await read(g, "mprepo", "main", "big.bin") == first + b"tail"


async def test_failed_upload_leaves_nothing_on_s3(s3_graveler: Graveler, s3_admin: Any,
                                                  s3_bucket: str) -> None:
    g = s3_graveler
    await g.create_repository("fail", f"s3://{s3_bucket}/fail")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1024
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await g.put_object("fail", "main", "k", broken())
    assert bucket_objects(s3_admin, s3_bucket) == []
    assert await keys(g, "fail", "main") == []
