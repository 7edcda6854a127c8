"""Pausing long work on the event loop so that other tasks, and other threads, can run."""

from __future__ import annotations

import asyncio
import gc
import time

WORK_SLICE = 0.001
"""Seconds of work on the event loop after which long work pauses (see `Pacer`)."""


async def pause() -> None:
    """Collect the young objects (`collect_young`), let the event loop run its other tasks,
    then let threads waiting for the GIL take it.

    `asyncio.sleep(0)` alone serves the loop's tasks but can starve threads. The loop's
    thread drops the GIL only for a zero-timeout poll and takes it back before a waiting
    thread has woken up; being woken restarts that thread's wait, so the timeout that would
    force a switch never expires. A metadata store thread (which runs below the loop's
    priority, and needs the GIL after each statement or row) then waits for as long as the
    loop's thread stays busy. A zero-second sleep of the thread lasts the kernel's timer
    slack (about 80 µs measured), long enough for the woken thread to take the GIL:
    paused every few milliseconds, the loop's thread gives up a few percent of its time.
    (`os.sched_yield()` returns too fast for that.)
    """
    collect_young()
    await asyncio.sleep(0)
    time.sleep(0)  # noqa: ASYNC251 (deliberate: see above)


class Pacer:
    """Tells long work on the event loop when it has worked `WORK_SLICE` since it last
    paused, and pauses it."""

    def __init__(self) -> None:
        self.since = time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.since >= WORK_SLICE

    async def pause(self) -> None:
        await pause()
        self.since = time.perf_counter()

    async def pause_if_due(self) -> None:
        if self.due():
            await self.pause()


def collect_young() -> None:
    """Collect the youngest generation now, and the middle one when it is due.

    Work that decodes many ranges makes many young containers (tuples of keys and values),
    and a young collection visits every element of each once. CPython starts one after 700
    more containers were made than freed, but a node cache that drops old ranges as it takes
    new ones frees about as many as it makes, so the young generation grew to 5,000-10,000
    containers holding 100,000 or more elements before a collection came: 10-30 ms with
    the GIL held, often on a store thread running below the loop's priority, which then
    took longer still. Collected at every pause (each millisecond of work), it holds a
    millisecond's worth, collected in well under one (a call costs under a microsecond when
    there is nothing to collect): during commits of 100,000 changes to a million entries
    the longest collection went from 12-38 ms to 1-4 ms, and the commits got faster. The
    collector's own count decides when the middle generation is collected too, as it would
    have.
    """
    if not gc.isenabled():
        return
    _, middle_count, _ = gc.get_count()
    gc.collect(1 if middle_count >= gc.get_threshold()[1] else 0)


def tune_gc() -> None:
    """The collector settings of a serving process and its commit helpers (the benchmarks
    use them too).

    Everything loaded so far lives as long as the process: keep it out of the collector's
    way, and make full collections (pauses of tens of ms on a big heap) rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1000)
