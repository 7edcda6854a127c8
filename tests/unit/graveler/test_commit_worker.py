"""Big commits built by helper processes: same result as in the serving process, errors kept,
and a lost or cancelled helper never loses or half-applies a commit."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.errors import MergeConflict, StorageError
from lakeproxy.graveler import Entry, Graveler, MergeStrategy, commit_worker
from lakeproxy.graveler.committed.apply import ChangeStream, apply_changes
from lakeproxy.graveler.committed.tree import (
    EMPTY_ROOT,
    NodeCache,
    NodeRef,
    decode_node,
    encode_index,
    encode_leaf,
    encoded_level,
)
from lakeproxy.graveler.refs import Partitions
from lakeproxy.metastore.base import MetadataStore
from lakeproxy.metastore.memory import MemoryMetadataStore
from lakeproxy.metastore.sqlite import SqliteMetadataStore
from lakeproxy.metastore.sqlite_writer import HELPER_NICENESS

ROOT = Path(__file__).resolve().parents[3]


def _items(n: int, tag: str = "") -> list[tuple[str, Entry]]:
    return [
        (f"data/{i:06d}", Entry(f"addr/{tag}{i}", i, f"etag{tag}{i}", "sum", 1_700_000_000.0))
        for i in range(n)
    ]


def _helpers(g: Graveler) -> list[commit_worker._Helper]:
    assert g.workers is not None
    return list(g.workers._idle)


@pytest.fixture
async def pair(metastore: MetadataStore, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two Gravelers on one store: one builds big commits in helpers, one in itself."""
    helped = Graveler(metastore, BlockStores(tmp_path / "blocks"))
    local = Graveler(metastore, BlockStores(tmp_path / "blocks"), commit_workers=0)
    yield helped, local
    if helped.workers is not None:
        await helped.workers.close()
    await helped.blocks.close()
    await local.blocks.close()


async def test_a_helper_builds_the_same_commit_as_the_serving_process(
    pair: tuple[Graveler, Graveler], metastore: MetadataStore
) -> None:
    helped, local = pair
    for g, repo in ((helped, "helped"), (local, "local")):
        await g.create_repository(repo)
        await g.stage_many(repo, "main", _items(3000))
        await g.commit(repo, "main", "load", creation_date=1.0)
        # Replace every third key, delete every seventh, add a few past the end.
        await g.stage_many(repo, "main", [
            (k, e) for k, e in _items(3000, "v2") if int(k[-6:]) % 3 == 0
        ] + [(f"data/{i:06d}", e) for i, (_, e) in enumerate(_items(10, "new"), 5000)])
        await g.delete_entries(repo, "main", [f"data/{i:06d}" for i in range(0, 3000, 7)])
        await g.commit(repo, "main", "change", creation_date=2.0)
        changed = {i for i in range(3000) if i % 3 == 0 or i % 7 == 0}
        assert g.last_commit_stats.changes == len(changed) + 10

    if helped.workers is None:  # the in-memory store: no other process can open it
        assert not hasattr(metastore, "reopen_spec")
        return
    [helper] = _helpers(helped)
    assert helper.alive
    # The helper sent back the ranges it wrote: the serving process has every one of them in
    # its cache, as if it had built the commit itself.
    nodes = Partitions.of(await helped.refs.get_repository("helped")).nodes
    stored = [k async for k, _ in metastore.scan(nodes)]
    assert len(stored) > 50
    assert all(nid in helped.node_cache for nid in stored)
    a = await helped.get_commit("helped", "main")
    b = await local.get_commit("local", "main")
    assert a.metarange_id == b.metarange_id
    assert [k async for k, _ in helped.iter_entries("helped", "main")] == [
        k async for k, _ in local.iter_entries("local", "main")
    ]
    entry = await helped.get_entry("helped", "main", "data/000003")
    assert entry.address == "addr/v23"
    # Small commits stay in the serving process; the helper waits for the next big one.
    await helped.stage_many("helped", "main", _items(5, "small"))
    await helped.commit("helped", "main", "small")
    assert _helpers(helped) == [helper]


@pytest.mark.parametrize("metastore", ["sqlite"], indirect=True)
async def test_a_lost_helper_means_the_commit_is_built_here(
    pair: tuple[Graveler, Graveler], monkeypatch: pytest.MonkeyPatch
) -> None:
    helped, _ = pair
    await helped.create_repository("repo")
    await helped.stage_many("repo", "main", _items(1000))
    # A helper that exits at once: the request finds no one to answer it.
    monkeypatch.setattr(commit_worker, "COMMAND", [sys.executable, "-c", "pass"])
    await helped.commit("repo", "main", "load")
    assert helped.last_commit_stats.changes == 1000
    assert len([k async for k, _ in helped.iter_entries("repo", "main")]) == 1000
    assert _helpers(helped) == []
    # A helper that died while idle is replaced.
    monkeypatch.undo()
    await helped.stage_many("repo", "main", _items(1000, "v2"))
    await helped.commit("repo", "main", "second")
    [helper] = _helpers(helped)
    helper.proc.kill()
    helper.proc.wait()
    await helped.stage_many("repo", "main", _items(1000, "v3"))
    await helped.commit("repo", "main", "third")
    [other] = _helpers(helped)
    assert other is not helper and other.alive
    assert (await helped.get_entry("repo", "main", "data/000999")).address == "addr/v3999"


NOISY = """
import os
from lakeproxy.graveler import commit_worker

handle = commit_worker._Server.handle

async def noisy(self, request):
    print("a stray line", flush=True)
    os.write(1, b"raw bytes")
    return await handle(self, request)

commit_worker._Server.handle = noisy
commit_worker.main()
"""


@pytest.mark.parametrize("metastore", ["sqlite"], indirect=True)
async def test_output_of_a_helper_on_stdout_does_not_break_its_answers(
    pair: tuple[Graveler, Graveler], monkeypatch: pytest.MonkeyPatch
) -> None:
    helped, _ = pair
    monkeypatch.setattr(commit_worker, "COMMAND", [sys.executable, "-c", NOISY])
    await helped.create_repository("repo")
    for n in range(2):
        await helped.stage_many("repo", "main", _items(1000, str(n)))
        await helped.commit("repo", "main", f"commit {n}")
    assert helped.workers is not None and helped.workers.answered == 2
    assert (await helped.get_entry("repo", "main", "data/000999")).address == "addr/1999"


@pytest.mark.parametrize("metastore", ["sqlite", "postgres"], indirect=True)
async def test_a_helper_failure_is_the_same_error_and_changes_nothing(
    pair: tuple[Graveler, Graveler], metastore: MetadataStore
) -> None:
    helped, _ = pair
    await helped.create_repository("repo")
    await helped.stage_many("repo", "main", _items(3000))
    await helped.commit("repo", "main", "load")
    head = await helped.get_commit("repo", "main")
    # A range of the head vanishes from the store (the serving process still has it in its
    # cache; the helper, fresh, must read it).
    repo = await helped.refs.get_repository("repo")
    nodes = Partitions.of(repo).nodes
    [helper] = _helpers(helped)
    helper.stop()
    helped.workers._idle.clear()  # type: ignore[union-attr]
    ids = [k async for k, _ in metastore.scan(nodes)]
    for nid in ids:
        if nid.hex() != head.metarange_id:
            await metastore.delete(nodes, nid)
    await helped.stage_many("repo", "main", _items(500, "v2"))
    with pytest.raises(StorageError, match="missing range"):
        await helped.commit("repo", "main", "broken")
    assert (await helped.get_commit("repo", "main")).id == head.id
    entry = await helped.get_entry("repo", "main", "data/000001")
    assert entry.address == "addr/v21"  # still staged


@pytest.mark.parametrize("metastore", ["sqlite"], indirect=True)
async def test_a_cancelled_commit_stops_its_helper_and_keeps_every_write(
    pair: tuple[Graveler, Graveler],
) -> None:
    helped, _ = pair
    await helped.create_repository("repo")
    await helped.stage_many("repo", "main", _items(200_000))
    head = await helped.get_commit("repo", "main")
    task = asyncio.create_task(helped.commit("repo", "main", "big"))
    assert helped.workers is not None
    for _ in range(10_000):
        if helped.workers.busy or task.done():
            break
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _helpers(helped) == []  # killed, not returned to the pool
    assert (await helped.get_commit("repo", "main")).id == head.id
    assert (await helped.get_entry("repo", "main", "data/199999")).size == 199999
    await helped.commit("repo", "main", "big, again")
    assert helped.last_commit_stats.changes == 200_000
    assert len(_helpers(helped)) == 1


async def test_closing_the_graveler_stops_its_helpers(tmp_path: Path) -> None:
    store = await SqliteMetadataStore.open(tmp_path / "m.db")
    g = Graveler(store, BlockStores(tmp_path / "blocks"))
    assert g.workers is not None
    g.workers.start()  # ahead of the first big commit, which then uses it
    g.workers.start()
    [helper] = _helpers(g)
    await g.create_repository("repo")
    await g.stage_many("repo", "main", _items(1000))
    await g.commit("repo", "main", "load")
    assert _helpers(g) == [helper]
    assert g.workers.idle_pids == [helper.proc.pid]
    assert g.workers.answered == 1
    # Below the server's priority: the event loop's thread gets the CPU first.
    assert os.getpriority(os.PRIO_PROCESS, helper.proc.pid) == min(
        19, os.getpriority(os.PRIO_PROCESS, 0) + HELPER_NICENESS
    )
    await g.close()
    assert helper.proc.returncode == 0
    assert g.workers.idle_pids == []


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from lakeproxy.blockstore.provider import BlockStores
    from lakeproxy.graveler import Entry, Graveler
    from lakeproxy.metastore.sqlite import SqliteMetadataStore

    async def main(path):
        store = await SqliteMetadataStore.open(Path(path) / "m.db")
        g = Graveler(store, BlockStores(Path(path) / "blocks"))
        await g.create_repository("repo")
        await g.stage_many("repo", "main", [
            (f"k/{i:05d}", Entry(f"a/{i}", i, "e", "c", 1.0)) for i in range(1000)
        ])
        await g.commit("repo", "main", "load")
        print(g.workers._idle[0].proc.pid, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_helper_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(tmp_path), stdout=asyncio.subprocess.PIPE,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    helper = int(line)
    os.kill(helper, 0)  # running
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    for _ in range(500):
        if not _running(helper):
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"helper {helper} outlived its parent")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie is dead, waiting to be reaped by init


async def _diverged(g: Graveler, repo: str) -> None:
    """main and a feature branch that both changed 600 keys since they parted, 200 of them
    the same keys differently."""
    await g.create_repository(repo)
    await g.stage_many(repo, "main", _items(3000))
    await g.commit(repo, "main", "load", creation_date=1.0)
    await g.create_branch(repo, "feature", "main")
    await g.stage_many(repo, "feature", _items(600, "f"))
    await g.commit(repo, "feature", "feature work", creation_date=2.0)
    await g.stage_many(repo, "main", [(k, e) for k, e in _items(3000, "m") if k >= "data/000400"
                                      and k < "data/001000"])
    await g.commit(repo, "main", "main work", creation_date=3.0)


async def test_a_helper_merges_as_the_serving_process_does(
    pair: tuple[Graveler, Graveler], metastore: MetadataStore
) -> None:
    helped, local = pair
    for g, repo in ((helped, "helped"), (local, "local")):
        await _diverged(g, repo)
        with pytest.raises(MergeConflict) as conflict:
            await g.merge(repo, "feature", "main")
        assert conflict.value.conflicts == [f"data/{i:06d}" for i in range(400, 600)]
        assert (await g.get_commit(repo, "main")).message == "main work"
        await g.merge(repo, "feature", "main", strategy=MergeStrategy.SOURCE_WINS)
        # Two more commits, then a revert of the first of them.
        for tag, lo in (("late", 2000), ("later", 2500)):
            await g.stage_many(repo, "main", [
                (k, e) for k, e in _items(3000, tag) if lo <= int(k[-6:]) < lo + 300
            ])
            await g.commit(repo, "main", tag, creation_date=4.0)
        await g.revert(repo, "main", "main~1")
    if helped.workers is None:
        return
    # Five commits, two merges and the revert, each answered by the helper.
    assert helped.workers.answered == 8
    a = await helped.get_commit("helped", "main")
    b = await local.get_commit("local", "main")
    assert a.metarange_id == b.metarange_id
    assert (await helped.get_entry("helped", "main", "data/000500")).address == "addr/f500"
    assert (await helped.get_entry("helped", "main", "data/000700")).address == "addr/m700"
    assert (await helped.get_entry("helped", "main", "data/002100")).address == "addr/2100"
    assert (await helped.get_entry("helped", "main", "data/002600")).address == "addr/later2600"
    assert helped.last_commit_stats.bytes_written > 0
    # A small merge stays in the serving process.
    await helped.stage_many("helped", "feature", _items(10, "small"))
    await helped.commit("helped", "feature", "small")
    await helped.stage_many("helped", "main", [("other", _items(1)[0][1])])
    await helped.commit("helped", "main", "other")
    await helped.merge("helped", "feature", "main", strategy=MergeStrategy.SOURCE_WINS)
    assert helped.workers.answered == 8
    assert (await helped.get_entry("helped", "main", "data/000009")).address == "addr/small9"


async def test_a_helper_sends_back_every_index_range_and_the_last_ranges(tmp_path: Path) -> None:
    # A tree of 20,000 entries built with a 40 KB budget for what is sent back: every index
    # range goes back, and the most recent ranges fill what the budget leaves.
    trees = commit_worker._KeepingTrees(MemoryMetadataStore(), "nodes", NodeCache(), 40_000)
    items = _items(20_000)
    root, writer = await apply_changes(
        trees, EMPTY_ROOT,
        ChangeStream.from_lists([k.encode() for k, _ in items], [e.encode() for _, e in items]),
    )
    await trees.write(writer.take_pending())
    written = {k: v async for k, v in trees.store.scan("nodes")}
    index = [nid for nid, raw in written.items() if encoded_level(raw) > 0]
    assert root.level >= 2 and len(index) > 10
    kept = dict(trees.kept)
    assert set(index) <= set(kept)
    kept_ranges = [raw for nid, raw in kept.items() if nid not in index]
    assert kept_ranges and sum(map(len, kept.values())) <= 40_000
    # The tree's last range is among them: the most recent are kept.
    last_range = max(
        (raw for raw in written.values() if encoded_level(raw) == 0),
        key=lambda raw: decode_node(raw).keys[-1],
    )
    assert last_range in kept_ranges


def test_the_level_of_an_encoded_node_is_read_without_decoding_it() -> None:
    leaf = encode_leaf([b"a", b"b"], [b"1", b"2"])
    ref = NodeRef(b"\0" * 16, b"a", b"b", 2, len(leaf), 0)
    assert encoded_level(leaf) == 0
    assert encoded_level(encode_index(1, [ref])) == 1
    assert encoded_level(encode_index(300, [ref])) == 300  # not a one-byte int: decoded
