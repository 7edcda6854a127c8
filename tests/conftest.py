"""Shared fixtures: metadata stores (every adapter), block stores on disk, and a Graveler."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.graveler import Graveler
from lakeproxy.metastore.base import MetadataStore
from lakeproxy.metastore.memory import MemoryMetadataStore
from lakeproxy.metastore.sqlite import SqliteMetadataStore

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
