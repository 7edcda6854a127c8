"""Pausing long work on the event loop so that other tasks, and other threads, can run."""

from __future__ import annotations

import asyncio
import time


async def pause() -> None:
    """Let the event loop run its other tasks, then let threads waiting for the GIL take it.

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
    await asyncio.sleep(0)
    time.sleep(0)  # noqa: ASYNC251 (deliberate: see above)
