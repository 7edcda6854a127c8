"""A big diff lets the event loop serve others while it walks ranges it has in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.graveler import Entry, Graveler
from lakeproxy.metastore.memory import MemoryMetadataStore


async def test_a_diff_of_many_changes_lets_other_tasks_run(tmp_path: Path) -> None:
    # The in-memory store answers without suspending: only the diff's own pauses let the
    # ticker run.
    g = Graveler(MemoryMetadataStore(), BlockStores(tmp_path))
    await g.create_repository("repo")
    n = 20_000
    await g.stage_many("repo", "main", [
        (f"k/{i:06d}", Entry(f"a/{i}", i, "e", "c", 1.0)) for i in range(n)
    ])
    await g.commit("repo", "main", "load")
    await g.create_branch("repo", "exp", "main")
    await g.stage_many("repo", "exp", [
        (f"k/{i:06d}", Entry(f"b/{i}", i, "e2", "c", 1.0)) for i in range(n)
    ])
    await g.commit("repo", "exp", "change all")
    await g.diff("repo", "main", "exp", limit=10)  # the ranges are in memory now

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    after, seen = "", 0
    for _ in range(n // 1000 + 1):
        page, more = await g.diff("repo", "main", "exp", after=after, limit=1000)
        seen += len(page)
        if not more:
            break
        after = page[-1].key
    task.cancel()
    assert seen == n
    # At least a pause per page while decoding it, and more during the walk.
    assert ticks - before >= 2 * (n // 1000)
    await g.close()
