"""Reads racing commits: listings and point reads never miss what a commit just published.

A commit publishes its new head and then deletes the staged rows it applied. A reader that
read the branch record before the commit and the staged rows after it would find neither the
rows nor (in the older head) their entries; these tests put a real commit exactly there, on
every metadata store, and check that nothing goes missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.errors import ObjectNotFound
from lakeproxy.graveler import Graveler
from lakeproxy.metastore.base import MetadataStore
from tests.conftest import put, read

Hook = Callable[[], Awaitable[None]]


class CommitBeforeStagingScan:
    """A metadata store that runs `hook` (once) just before the next scan of a staging
    partition starts; everything else goes straight to the real store underneath."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self.hook: Hook | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _fire(self, partition: str) -> None:
        hook, self.hook = self.hook, None
        if hook is not None and partition.endswith("/s"):
            await hook()
        elif hook is not None:
            self.hook = hook

    async def scan(self, partition: str, **kw: Any) -> AsyncIterator[tuple[bytes, bytes]]:
        await self._fire(partition)
        async for row in self._store.scan(partition, **kw):
            yield row

    async def scan_batches(self, partition: str,
                           **kw: Any) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        await self._fire(partition)
        async for rows in self._store.scan_batches(partition, **kw):
            yield rows


async def list_raw(g: Graveler) -> list[str]:
    return (await g.list_raw("repo1", "main", prefix="a/")).keys


async def list_entries(g: Graveler) -> list[str]:
    return [k for k, _ in (await g.list_entries("repo1", "main", prefix="a/")).entries]


async def iter_entries(g: Graveler) -> list[str]:
    return [k async for k, _ in g.iter_entries("repo1", "main", prefix="a/")]


@pytest.mark.parametrize("listing", [list_raw, list_entries, iter_entries])
async def test_a_listing_sees_the_rows_a_commit_applied_while_it_read(
    metastore: MetadataStore, tmp_path: Path, listing: Callable[[Graveler], Awaitable[list[str]]]
) -> None:
    store = CommitBeforeStagingScan(metastore)
    g = Graveler(store, BlockStores(tmp_path / "blocks"))  # type: ignore[arg-type]
    await g.create_repository("repo1")
    for key in ("a/1", "a/2", "b/3"):
        await put(g, "repo1", "main", key)
    commits = []

    async def commit_meanwhile() -> None:
        commits.append(await g.commit("repo1", "main", "while listing"))
        await g.sweep_dropped_tokens("repo1")  # the applied rows are gone now

    store.hook = commit_meanwhile
    assert await listing(g) == ["a/1", "a/2"]
    assert len(commits) == 1, "the commit did not run inside the listing"
    assert await listing(g) == ["a/1", "a/2"]


async def test_iter_entries_rechecks_every_chunk(
    metastore: MetadataStore, tmp_path: Path
) -> None:
    """A commit between two chunks of a long iteration (the first chunk is read before the
    first entry comes out) loses nothing either."""
    store = CommitBeforeStagingScan(metastore)
    g = Graveler(store, BlockStores(tmp_path / "blocks"))  # type: ignore[arg-type]
    await g.create_repository("repo1")
    keys = [f"a/{i:04d}" for i in range(300)]
    for key in keys:
        await put(g, "repo1", "main", key)
    seen = []
    async for key, _ in g.iter_entries("repo1", "main", prefix="a/"):
        seen.append(key)
        if len(seen) == 1:

            async def commit_meanwhile() -> None:
                await g.commit("repo1", "main", "between chunks")
                await g.sweep_dropped_tokens("repo1")

            store.hook = commit_meanwhile
    assert store.hook is None, "the commit did not run inside the iteration"
    assert seen == keys


async def test_a_stale_branch_hint_never_gives_a_stale_answer(
    metastore: MetadataStore, tmp_path: Path
) -> None:
    """Two Gravelers on one store stand for two processes: what one changes, the other's
    point reads and writes see at once, whatever branch records it remembers."""
    a = Graveler(metastore, BlockStores(tmp_path / "blocks"))
    b = Graveler(metastore, BlockStores(tmp_path / "blocks"))
    await a.create_repository("repo1")
    await put(a, "repo1", "main", "k", b"v1")
    assert await read(b, "repo1", "main", "k") == b"v1"  # b now remembers main's record

    await a.commit("repo1", "main", "one")
    await a.sweep_dropped_tokens("repo1")  # the row b would look for is gone
    assert await read(b, "repo1", "main", "k") == b"v1"
    await put(a, "repo1", "main", "k", b"v2")
    assert await read(b, "repo1", "main", "k") == b"v2"
    await a.delete_entry("repo1", "main", "k")
    with pytest.raises(ObjectNotFound):
        await b.get_entry("repo1", "main", "k")

    # A write through a remembered record that a commit made stale lands in the new token.
    await put(b, "repo1", "main", "w", b"w1")
    await a.commit("repo1", "main", "two")
    await put(b, "repo1", "main", "w", b"w2")
    await a.commit("repo1", "main", "three")
    assert await read(a, "repo1", "main@", "w") == b"w2"
    assert await read(b, "repo1", "main", "w") == b"w2"

    # A tag of the same name as nothing else, and a commit id, read through the same path.
    await a.create_tag("repo1", "v1", "main")
    assert await read(b, "repo1", "v1", "w") == b"w2"
    head = (await a.get_commit("repo1", "main")).id
    assert await read(b, "repo1", head, "w") == b"w2"


class CountingStore:
    """A metadata store that counts the calls made to it."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kw: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kw)

        return counted


async def test_a_point_read_and_a_put_are_one_store_call_each(tmp_path: Path) -> None:
    """Each store call is a round trip to a shared store: a read of a staged or committed
    key costs one (the branch record and the staged rows together), a PUT one write after
    the repository record, once the branch's record is known."""
    from lakeproxy.metastore.memory import MemoryMetadataStore

    store = CountingStore(MemoryMetadataStore())
    g = Graveler(store, BlockStores(tmp_path / "blocks"))  # type: ignore[arg-type]
    await g.create_repository("repo1")
    await put(g, "repo1", "main", "staged")
    await put(g, "repo1", "main", "committed")
    await g.commit("repo1", "main", "one")
    await put(g, "repo1", "main", "staged")
    repo = await g.get_repository("repo1")
    assert await read(g, repo, "main", "committed") == b"x"  # warms the range cache
    for key in ("staged", "committed", "missing"):
        store.calls.clear()
        expected = pytest.raises(ObjectNotFound) if key == "missing" else contextlib.nullcontext()
        with expected:
            await g.get_entry(repo, "main", key)
        assert store.calls == {"get_multi": 1}, (key, store.calls)
    store.calls.clear()
    await put(g, "repo1", "main", "new")
    assert store.calls == {"get": 1, "write": 1}

