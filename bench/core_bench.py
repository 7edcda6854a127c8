"""Benchmark of the versioning core: commit, diff, merge and branch creation vs. dataset size.

For every N (objects on the branch) and K (changes, K <= N) it builds a branch of N objects on
the embedded SQLite store, then measures, as the median of --repeat runs (at least 25 for
K <= 10 and 9 for K <= 1000, whose milliseconds are within the machine's noise), each timed
once the background cleanup of the operations before it is done:

    commit   commit of K staged changes on a branch of N objects
    diff     diff of two commits that differ in K keys (every page of 1000)
    merge    three-way merge of a branch with K changes into a branch of N objects that has
             K committed changes of its own (overlapping keys: the source wins)
    branch   creation of a branch (one row, whatever N)

plus, once per N, the commit of N staged objects onto an empty branch (a `commit` row with
objects=0, changes=N; the background deletion of its staged rows is waited for and timed
before anything else is measured) and `floor`
(the raw cost of msgpack-encoding and hashing N entries and inserting N rows into SQLite in
one transaction, which no commit of N changes can beat). `bytes_written` is the metadata a
commit or merge wrote; `manifest_bytes` the size of the whole snapshot's ranges.

Every commit, diff and merge also runs as many times again watched by a 1 ms ticker, taking
turns with the timed runs: the ticker's wakeups cost CPU, which would slow the timed runs on
two cores (`watched_seconds` is the median time of the watched runs). Those rows give the
longest time the event loop went without running the ticker during the watched runs
(`max_loop_stall_ms`; `p99_loop_stall_ms` of every such time), the longest garbage
collection in that time (`max_gc_pause_ms`, of generation `max_gc_generation`), the share
of the machine's CPU time the host of this virtual machine took for others during all the
runs (`cpu_steal_percent`), which stalls the loop whatever it runs, and the median CPU time
the benchmark's process and its commit helpers used for one timed run (`cpu_seconds`),
which does not grow when the host takes the CPU for others as the elapsed time does. The
commit of N staged objects runs once, watched.
The process runs with the garbage collector settings of `lake serve`
(`lakeproxy.pause.tune_gc`), and like it builds commits and merges of 256 changes or more in
a helper process, started before the first measurement (`--commit-workers 0` builds every
commit in the benchmark's own process).

    python bench/core_bench.py --objects 10000,1000000 --changes 10,1000 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.graveler import Entry, Graveler, MergeStrategy
from lakeproxy.metastore.sqlite import SqliteMetadataStore
from lakeproxy.pause import tune_gc


def key_of(i: int) -> str:
    return f"datasets/images/part-{i % 97:03d}/object-{i:09d}.jpg"


def entry_of(i: int, version: int = 0) -> Entry:
    return Entry(
        f"data/2026112600/{i:016x}{version:016x}",
        1000 + i + version,
        f"{(i * 7919 + version) % (1 << 128):032x}",
        f"{(i * 104729 + version) % (1 << 128):032x}",
        1_795_000_000.0 + version,
        "image/jpeg",
    )


def cpu_times() -> tuple[int, int]:
    """(all, stolen) CPU time of the machine so far, in clock ticks; (0, 0) where the kernel
    does not say (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def helper_cpu(pids: list[int]) -> dict[int, float]:
    """The CPU seconds (user and system) each of the processes `pids` has used so far; those
    that are gone, or whose kernel does not say (not Linux), are left out."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return used


class StallMeter:
    """The machine's CPU times around an operation (a virtual machine's vCPU stopped by its
    host stalls the loop whatever it runs), and the CPU time this process and its idle
    commit helpers (`pids`, read when the meter starts and when it stops) used meanwhile:
    unlike the elapsed time, that does not grow when the host takes the CPU for others.

    With `ticking`, also every time the event loop went without running a 1 ms ticker, and
    the longest garbage collection meanwhile (to tell the two causes of a stall apart). The
    ticker is not free: each of its wakeups costs 70-100 us of CPU, which on two cores
    slows what it watches (a commit of 100,000 changes on a million entries took about
    0.2-0.3 s more CPU in the server with it than without).
    """

    def __init__(self, pids: Callable[[], list[int]] = list, *, ticking: bool = True) -> None:
        self.ticking = ticking
        self.gaps: list[float] = []
        self.cpu_start = self.cpu_end = (0, 0)
        self._pids = pids
        self._process_cpu = 0.0
        self._helpers_cpu: dict[int, float] = {}
        self.cpu_seconds = 0.0
        self.seconds = 0.0  # how long the operation took
        self._started = 0.0
        self.max_gc = 0.0
        self.max_gc_generation = -1  # the generation the longest collection collected
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0  # when the ticker last ran (or the meter started)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        if took > self.max_gc:
            self.max_gc, self.max_gc_generation = took, info["generation"]

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.gaps.append(now - self._last - 0.001)
            self._last = now

    async def __aenter__(self) -> StallMeter:
        self.cpu_start = cpu_times()
        self._process_cpu = time.process_time()
        self._helpers_cpu = helper_cpu(self._pids())
        if self.ticking:
            gc.callbacks.append(self._on_gc)
            self._task = asyncio.create_task(self._tick())
        self._last = self._started = time.perf_counter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        if self.ticking:
            # The time since the last tick is a stall too: an operation that never lets the
            # loop run would otherwise show none at all.
            self.gaps.append(max(0.0, time.perf_counter() - self._last - 0.001))
        self.cpu_end = cpu_times()
        # A helper started during the operation counts from zero.
        helpers = sum(
            used - self._helpers_cpu.get(pid, 0.0)
            for pid, used in helper_cpu(self._pids()).items()
        )
        self.cpu_seconds = time.process_time() - self._process_cpu + helpers
        if self._task is not None:
            gc.callbacks.remove(self._on_gc)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def stall_fields(meters: list[StallMeter]) -> dict[str, Any]:
    """The stall figures of a row, over the operations `meters` watched: stalls from those
    that ticked, CPU time from those that did not (when there are any), steal from all."""
    ticking = [m for m in meters if m.ticking]
    quiet = [m for m in meters if not m.ticking] or meters
    gaps = sorted(g for m in ticking for g in m.gaps)
    gc_meter = max(ticking, key=lambda m: m.max_gc)
    total = sum(m.cpu_end[0] - m.cpu_start[0] for m in meters)
    stolen = sum(m.cpu_end[1] - m.cpu_start[1] for m in meters)
    return {
        "max_loop_stall_ms": round(gaps[-1] * 1000, 1) if gaps else 0.0,
        "p99_loop_stall_ms": round(gaps[len(gaps) * 99 // 100] * 1000, 1) if gaps else 0.0,
        "max_gc_pause_ms": round(gc_meter.max_gc * 1000, 1),
        "max_gc_generation": gc_meter.max_gc_generation,
        "cpu_steal_percent": round(100 * stolen / total, 1) if total else 0.0,
        "cpu_seconds": round(statistics.median(m.cpu_seconds for m in quiet), 3),
    }


class Bench:
    def __init__(self, g: Graveler, repeat: int, emit: Callable[[dict[str, Any]], None]) -> None:
        self.g = g
        self.repeat = repeat
        self.emit = emit
        self.branch_no = 0

    def helper_pids(self) -> list[int]:
        return [] if self.g.workers is None else self.g.workers.idle_pids

    def fresh(self, prefix: str) -> str:
        self.branch_no += 1
        return f"{prefix}-{self.branch_no}"

    async def build(self, repo: str, n: int) -> None:
        await self.g.create_repository(repo)
        for start in range(0, n, 100_000):
            await self.g.stage_many(
                repo, "main",
                [(key_of(i), entry_of(i)) for i in range(start, min(n, start + 100_000))],
            )
        ticker = StallMeter(self.helper_pids)
        async with ticker:
            await self.g.commit(repo, "main", f"{n} objects")
        stats = self.g.last_commit_stats
        # The build's staged rows are deleted in the background once it committed: let that
        # finish, so the measurements below see the tree and not a million-row delete.
        t1 = time.perf_counter()
        await self.g.settle()
        cleanup = time.perf_counter() - t1
        root = await self.g.root_of(await self.g.get_repository(repo),
                                    (await self.g.get_commit(repo, "main")).id)
        self.manifest_bytes = root.nbytes
        self.emit({"op": "commit", "objects": 0, "changes": n, "seconds": ticker.seconds,
                   "bytes_written": stats.bytes_written, "manifest_bytes": root.nbytes}
                  | stall_fields([ticker]) | {"cleanup_seconds": round(cleanup, 3)})

    async def stage_changes(self, repo: str, branch: str, n: int, k: int, version: int) -> None:
        rnd = random.Random(k * 31 + version)
        picks = rnd.sample(range(n), k)
        await self.g.stage_many(repo, branch, [(key_of(i), entry_of(i, version)) for i in picks])

    def samples(self, k: int) -> int:
        """How many times to measure K changes: a small change takes milliseconds, within the
        machine's noise, so it gets more samples for a median that holds."""
        return max(self.repeat, 25 if k <= 10 else 9 if k <= 1000 else 0)

    @contextlib.asynccontextmanager
    async def metered(self, meters: list[StallMeter], watched: bool) -> AsyncIterator[None]:
        """Time what runs inside, watched by the ticker or not, and add its meter to
        `meters`."""
        meter = StallMeter(self.helper_pids, ticking=watched)
        async with meter:
            yield
        meters.append(meter)

    async def measure(self, repo: str, n: int, k: int) -> None:
        """Every operation runs 2 * `samples(k)` times: in turn timed, and watched by the
        ticker for stalls (which would slow what it times)."""
        commit_b, merge_b = [], []
        meters: dict[str, list[StallMeter]] = {"commit": [], "diff": [], "merge": []}
        for r in range(2 * self.samples(k)):
            watched = r % 2 == 1
            version = r // 2 + 1 + (self.samples(k) if watched else 0)
            branch = self.fresh("exp")
            await self.g.create_branch(repo, branch, "main")
            await self.stage_changes(repo, branch, n, k, version=version)
            # Each operation is timed alone, not with the cleanup the previous one left
            # running in the background (the deletion of a commit's staged rows).
            await self.g.settle()
            async with self.metered(meters["commit"], watched):
                await self.g.commit(repo, branch, f"{k} changes")
            commit_b.append(self.g.last_commit_stats.bytes_written)

            await self.g.settle()
            async with self.metered(meters["diff"], watched):
                after, total = "", 0
                while True:
                    page, more = await self.g.diff(
                        repo, "main", branch, after=after, limit=1000
                    )
                    total += len(page)
                    if not more:
                        break
                    after = page[-1].key
            assert total == k, (total, k)

            # A true three-way merge: the destination moved too (K changes of its own, some
            # keys in common with the source's, which the source wins), so the merged tree is
            # built, not taken from one side.
            target = self.fresh("target")
            await self.g.create_branch(repo, target, "main")
            await self.stage_changes(repo, target, n, k, version=1000 + version)
            await self.g.commit(repo, target, f"{k} other changes")
            await self.g.settle()
            async with self.metered(meters["merge"], watched):
                await self.g.merge(repo, branch, target, strategy=MergeStrategy.SOURCE_WINS)
            merge_b.append(self.g.last_commit_stats.bytes_written)
        for op, written in (("commit", commit_b), ("diff", None), ("merge", merge_b)):
            self.emit({
                "op": op, "objects": n, "changes": k,
                "seconds": statistics.median(m.seconds for m in meters[op] if not m.ticking),
                "bytes_written": int(statistics.median(written)) if written else 0,
                "manifest_bytes": self.manifest_bytes,
                "watched_seconds": statistics.median(m.seconds for m in meters[op] if m.ticking),
            } | stall_fields(meters[op]))

    async def branch_creation(self, repo: str, n: int) -> None:
        times = []
        for _ in range(max(self.repeat, 5)):
            name = self.fresh("br")
            t0 = time.perf_counter()
            await self.g.create_branch(repo, name, "main")
            times.append(time.perf_counter() - t0)
        self.emit({"op": "branch", "objects": n, "changes": 0,
                   "seconds": statistics.median(times), "bytes_written": 0,
                   "manifest_bytes": self.manifest_bytes})


def floor(n: int, folder: Path) -> float:
    """msgpack-encode and hash n entries, insert n rows into SQLite in one transaction."""
    fields = []
    for i in range(n):
        e = entry_of(i)
        fields.append((key_of(i).encode(), [e.address, e.size, e.etag, e.checksum,
                                            e.last_modified, e.content_type, None, None]))
    db = sqlite3.connect(folder / f"floor-{n}.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    t0 = time.perf_counter()
    rows = []
    for key, body in fields:
        raw = msgpack.packb(body)
        rows.append((key, xxhash.xxh3_64_digest(raw) + raw))
    with db:
        db.executemany("INSERT INTO kv VALUES (?, ?)", rows)
    seconds = time.perf_counter() - t0
    db.close()
    return seconds


async def run(objects: list[int], changes: list[int], repeat: int,
              emit: Callable[[dict[str, Any]], None], commit_workers: int = 1) -> None:
    with tempfile.TemporaryDirectory(prefix="lake-bench-") as tmp:
        folder = Path(tmp)
        store = await SqliteMetadataStore.open(folder / "metadata.db")
        g = Graveler(store, BlockStores(folder / "blocks"), commit_workers=commit_workers)
        if g.workers is not None:
            g.workers.start()  # as in a server that has built a big commit before
        tune_gc()  # as `lake serve` does once it has started
        bench = Bench(g, repeat, emit)
        try:
            for n in objects:
                emit({"op": "floor", "objects": n, "changes": n,
                      "seconds": await asyncio.to_thread(floor, n, folder),
                      "bytes_written": 0, "manifest_bytes": 0})
                repo = f"bench-{n}"
                await bench.build(repo, n)
                await bench.branch_creation(repo, n)
                for k in changes:
                    if k <= n:
                        await bench.measure(repo, n, k)
        finally:
            await g.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", default="10000,100000,1000000")
    parser.add_argument("--changes", default="10,1000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--commit-workers", type=int, default=1,
                        help="helper processes for big commits (0: none)")
    args = parser.parse_args()
    objects = [int(x) for x in args.objects.split(",")]
    changes = [int(x) for x in args.changes.split(",")]
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            pct = (100 * row["bytes_written"] / row["manifest_bytes"]
                   if row["manifest_bytes"] else 0)
            print(f"{row['op']:7} N={row['objects']:>9,} K={row['changes']:>9,} "
                  f"{row['seconds'] * 1000:>11.2f} ms  wrote {row['bytes_written']:>12,} B "
                  f"({pct:6.2f}% of manifest)"
                  + (f"  loop stall max {row['max_loop_stall_ms']} ms,"
                     f" p99 {row['p99_loop_stall_ms']} ms"
                     f" (longest GC {row['max_gc_pause_ms']} ms,"
                     f" generation {row['max_gc_generation']};"
                     f" CPU stolen by the host {row['cpu_steal_percent']}%);"
                     f" CPU time {row['cpu_seconds'] * 1000:.0f} ms"
                     + (f"; watched {row['watched_seconds'] * 1000:.2f} ms"
                        if "watched_seconds" in row else "")
                     if "max_loop_stall_ms" in row else "")
                  + (f", staged rows deleted in {row['cleanup_seconds'] * 1000:.0f} ms after it"
                     if "cleanup_seconds" in row else ""), flush=True)

    asyncio.run(run(objects, changes, args.repeat, emit, args.commit_workers))


if __name__ == "__main__":
    main()
