"""Shared fixtures: metadata stores (every adapter), block stores on disk, and a Graveler."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lakeproxy.blockstore import S3Settings
from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.graveler import Graveler
from lakeproxy.metastore.base import MetadataStore
from lakeproxy.metastore.memory import MemoryMetadataStore
from lakeproxy.metastore.sqlite import SqliteMetadataStore
from tests.s3server import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, REGION, moto_server

METASTORES = ["memory", "sqlite"]


async def open_metastore(kind: str, tmp_path: Path) -> MetadataStore:
    if kind == "memory":
        return MemoryMetadataStore()
    if kind == "sqlite":
        return await SqliteMetadataStore.open(tmp_path / "metadata.db", synchronous="NORMAL")
    raise ValueError(kind)


@pytest.fixture(params=METASTORES)
async def metastore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[
    MetadataStore
]:
    store = await open_metastore(request.param, tmp_path)
    yield store
    await store.close()


@pytest.fixture
async def graveler(metastore: MetadataStore, tmp_path: Path) -> AsyncIterator[Graveler]:
    g = Graveler(metastore, BlockStores(tmp_path / "blocks"))
    yield g
    await g.blocks.close()


@pytest.fixture
async def repo(graveler: Graveler) -> str:
    await graveler.create_repository("repo1")
    return "repo1"


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def put(g: Graveler, repo: str, branch: str, key: str, data: bytes = b"x") -> None:
    """Upload `data` at `key`."""
    await g.put_object(repo, branch, key, body(data))


async def read(g: Graveler, repo: str, ref: str, key: str) -> bytes:
    entry = await g.get_entry(repo, ref, key)
    return b"".join([c async for c in g.open_object(repo, entry)])


async def keys(g: Graveler, repo: str, ref: str, prefix: str = "") -> list[str]:
    return [k async for k, _ in g.iter_entries(repo, ref, prefix=prefix)]


def files_under(root: Path) -> Iterable[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# An S3 endpoint (moto's server mode) for the S3 block store, and a fresh bucket per test.


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server shared by the whole session."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_settings(s3_endpoint: str) -> S3Settings:
    """Settings reaching the moto server with fake credentials."""
    return S3Settings(
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=FAKE_ACCESS_KEY_ID,
        secret_access_key=FAKE_SECRET_ACCESS_KEY,
    )


@pytest.fixture(scope="session")
def s3_admin(s3_settings: S3Settings) -> Iterator[Any]:
    """A plain boto3 client of the moto server, to arrange and inspect buckets."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_settings.endpoint_url,
        region_name=s3_settings.region,
        aws_access_key_id=s3_settings.access_key_id,
        aws_secret_access_key=s3_settings.secret_access_key,
    )
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_admin: Any) -> str:
    """A new, empty bucket on the moto server."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_admin.create_bucket(Bucket=name)
    return name
