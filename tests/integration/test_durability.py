"""Concurrency, crash safety and zero-copy branching of the core on real stores."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from lakeproxy import errors
from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.graveler import Graveler
from lakeproxy.metastore.sqlite import SqliteMetadataStore
from tests.conftest import files_under, keys, put, read

ROOT = Path(__file__).resolve().parents[2]


async def committed_keys(g: Graveler, repo: str) -> set[str]:
    """Every key that appears in any commit reachable from main."""
    seen: set[str] = set()
    after = None
    while True:
        commits, more = await g.log(repo, "main", after=after, limit=50)
        for c in commits:
            seen.update(await keys(g, repo, c.id))
        if not more:
            return seen
        after = commits[-1].id


async def test_writes_during_commits_are_never_lost(graveler: Graveler, repo: str) -> None:
    acknowledged: list[str] = []
    writers_done = asyncio.Event()

    async def writer(n: int) -> None:
        for i in range(40):
            key = f"w{n}/k{i:03d}"
            await put(graveler, repo, "main", key, key.encode())
            acknowledged.append(key)

    async def committer() -> int:
        count = 0
        while not writers_done.is_set():
            try:
                await graveler.commit(repo, "main", f"c{count}")
                count += 1
            except errors.NoChanges:
                pass
            await asyncio.sleep(0.001)
        return count

    commit_task = asyncio.create_task(committer())
    await asyncio.gather(*(writer(n) for n in range(8)))
    writers_done.set()
    commits = await commit_task
    assert commits > 1
    assert len(acknowledged) == 320
    visible = set(await keys(graveler, repo, "main"))
    assert visible == set(acknowledged)
    staged = {c.key for c in (await graveler.diff_uncommitted(repo, "main"))[0]}
    assert (await committed_keys(graveler, repo)) | staged == set(acknowledged)
    for key in acknowledged[::37]:
        assert await read(graveler, repo, "main", key) == key.encode()


async def test_concurrent_commits_from_two_processes_keep_both(tmp_path: Path) -> None:
    """Two Gravelers on one SQLite file share no lock: only compare-and-swap protects them."""
    stores = [await SqliteMetadataStore.open(tmp_path / "m.db") for _ in range(2)]
    g1, g2 = (Graveler(s, BlockStores(tmp_path / "blocks")) for s in stores)
    try:
        await g1.create_repository("repo1")
        for round_ in range(5):
            await asyncio.gather(
                *(put(g1, "repo1", "main", f"a{round_}/{i}") for i in range(30)),
                *(put(g2, "repo1", "main", f"b{round_}/{i}") for i in range(30)),
            )
            results = await asyncio.gather(
                g1.commit("repo1", "main", f"one {round_}"),
                g2.commit("repo1", "main", f"two {round_}"),
                return_exceptions=True,
            )
            for result in results:
                assert not isinstance(result, BaseException) or isinstance(
                    result, errors.NoChanges
                ), result
        expected = {f"{s}{r}/{i}" for s in "ab" for r in range(5) for i in range(30)}
        assert set(await keys(g1, "repo1", "main@")) == expected
        assert set(await keys(g2, "repo1", "main@")) == expected
        history, _ = await g1.log("repo1", "main", limit=100)
        messages = [c.message for c in history]
        assert sum(m.startswith(("one", "two")) for m in messages) >= 5
    finally:
        for g in (g1, g2):
            await g.close()


async def test_concurrent_merges_into_one_branch(graveler: Graveler, repo: str) -> None:
    for n in range(6):
        await graveler.create_branch(repo, f"f{n}", "main")
        await put(graveler, repo, f"f{n}", f"f{n}/data")
        await graveler.commit(repo, f"f{n}", f"feature {n}")
    await asyncio.gather(*(graveler.merge(repo, f"f{n}", "main") for n in range(6)))
    assert await keys(graveler, repo, "main") == [f"f{n}/data" for n in range(6)]


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from lakeproxy.blockstore.provider import BlockStores
    from lakeproxy.graveler import Entry, Graveler
    from lakeproxy.metastore.sqlite import SqliteMetadataStore

    async def main(path, n):
        store = await SqliteMetadataStore.open(Path(path) / "m.db")
        g = Graveler(store, BlockStores(Path(path) / "blocks"))
        await g.create_repository("repo1")
        await g.stage_many("repo1", "main", [("small", Entry("data/s", 1, "e", "c", 1.0))])
        await g.commit("repo1", "main", "first")
        items = [(f"key/{i:07d}", Entry(f"data/{i}", i, "etag", "sum", 1.0))
                 for i in range(n)]
        await g.stage_many("repo1", "main", items)
        print("committing", flush=True)
        await g.commit("repo1", "main", "big")
        print("committed", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
async def test_killed_during_a_large_commit(tmp_path: Path, delay: float) -> None:
    n = 150_000
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(tmp_path), str(n),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line.strip() == b"committing"
        await asyncio.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    store = await SqliteMetadataStore.open(tmp_path / "m.db")
    g = Graveler(store, BlockStores(tmp_path / "blocks"))
    try:
        head = await g.get_commit("repo1", "main")
        assert head.message in ("first", "big")
        committed = await keys(g, "repo1", "main@")
        assert len(committed) in (1, n + 1)  # the old head or the new one, never in between
        assert len(await keys(g, "repo1", "main")) == n + 1  # every staged write still there
        if head.message == "first":
            await g.commit("repo1", "main", "again")
            assert len(await keys(g, "repo1", "main@")) == n + 1
    finally:
        await g.close()


async def test_branching_and_committing_copies_no_objects(graveler: Graveler, repo: str,
                                                          tmp_path: Path) -> None:
    namespace = tmp_path / "blocks" / repo
    for i in range(20):
        await put(graveler, repo, "main", f"obj/{i}", f"v{i}".encode())
    await graveler.commit(repo, "main", "twenty objects")
    assert len(files_under(namespace)) == 20
    for n in range(3):
        await graveler.create_branch(repo, f"b{n}", "main")
        await put(graveler, repo, f"b{n}", "obj/0", f"changed {n}".encode())
        await graveler.copy_entry(repo, f"b{n}", "obj/1", f"b{n}", f"copy-{n}")
        await graveler.commit(repo, f"b{n}", "one change")
        await graveler.merge(repo, f"b{n}", "main", strategy=_source_wins())
    assert len(files_under(namespace)) == 23  # one new object per changed key, nothing else
    for n in range(3):
        assert await read(graveler, repo, f"b{n}", "obj/5") == b"v5"


def _source_wins():  # type: ignore[no-untyped-def]
    from lakeproxy.graveler import MergeStrategy

    return MergeStrategy.SOURCE_WINS
