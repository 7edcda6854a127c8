"""The SQLite store's own threads give way to the event loop's thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lakeproxy.metastore.sqlite import SqliteMetadataStore, _put_many
from lakeproxy.metastore.sqlite_writer import HELPER_NICENESS
from lakeproxy.pause import pause

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="niceness is per thread on Linux")


def _niceness(thread: threading.Thread) -> int:
    assert thread.native_id is not None
    return os.getpriority(os.PRIO_PROCESS, thread.native_id)


def _live_niceness(thread: threading.Thread) -> int | None:
    """The thread's niceness; None once it has exited (a pool of an earlier test's store)."""
    try:
        return _niceness(thread) if thread.is_alive() else None
    except ProcessLookupError:
        return None


@linux_only
async def test_writer_and_readers_run_below_the_event_loop(tmp_path: Path) -> None:
    store = await SqliteMetadataStore.open(tmp_path / "metadata.db")
    try:
        rows = [(b"k%05d" % i, b"v") for i in range(2000)]
        await store.put_many("p", rows)
        # A page this big is read on a reader thread, not on the caller's.
        seen = [k async for k, _ in store.scan("p", batch_size=2000)]
        assert len(seen) == 2000
        main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        threads = threading.enumerate()
        writers = [t for t in threads if t.name == "lakeproxy-sqlite-writer"]
        readers = [t for t in threads if t.name.startswith("lakeproxy-sqlite-read")]
        assert writers and readers
        # A reader thread the pool has just started may not have run its initializer (which
        # lowers its priority, before any read) yet: give it a moment, not forever.
        want = min(19, main + HELPER_NICENESS)
        for _ in range(500):  # 5 s at most
            if all(_live_niceness(t) in (want, None) for t in writers + readers):
                break
            await asyncio.sleep(0.01)
        for thread in writers + readers:
            assert _live_niceness(thread) in (want, None), thread.name
        # The caller's own thread is untouched.
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main
    finally:
        await store.close()


class _Rows(list[tuple[bytes, bytes]]):
    """A list that can be watched with a weak reference."""


async def test_a_finished_bulk_write_is_let_go_of_before_the_next_request(tmp_path: Path) -> None:
    # Freeing a big request holds the GIL; the writer must not keep it until the next request
    # arrives, when that request's caller (a commit, say) would wait for the freeing.
    store = await SqliteMetadataStore.open(tmp_path / "metadata.db")
    try:
        rows = _Rows((b"k%05d" % i, b"v") for i in range(5000))
        watch = weakref.ref(rows)
        await store.put_many("p", rows)
        del rows
        for _ in range(200):
            if watch() is None:
                break
            await asyncio.sleep(0.01)
        assert watch() is None, "the writer thread still holds the finished request"
        assert await store.get("p", b"k04999") == b"v"
    finally:
        await store.close()


async def _busy_until(done: asyncio.Future[Any], step: Callable[[], Awaitable[None]]) -> int:
    """Run 1 ms slices of CPU work on the loop's thread, `step` between two, until `done`
    (at most 3000 slices); returns how many ran."""
    slices = 0
    while not done.done() and slices < 3000:
        started = time.perf_counter()
        while time.perf_counter() - started < 0.001:
            pass
        await step()
        slices += 1
    return slices


@linux_only
async def test_store_threads_get_the_gil_while_the_loop_is_busy_between_pauses(
    tmp_path: Path,
) -> None:
    # A reader thread takes the GIL back after every row it reads, a writer after every
    # statement. Between slices of a busy loop's work, `asyncio.sleep(0)` left them waiting
    # for the whole of it (a scan of 4000 rows was still unread after 3000 slices);
    # `pause()` lets them through.
    store = await SqliteMetadataStore.open(tmp_path / "metadata.db")
    try:
        await store.put_many("p", [(b"k%05d" % i, b"v" * 100) for i in range(4000)])

        async def scan() -> int:
            return sum([len(rows) async for rows in store.scan_batches("p", batch_size=4000)])

        for _ in range(3):
            read = asyncio.ensure_future(scan())
            slices = await _busy_until(read, pause)
            assert await read == 4000
            assert slices < 1000, f"the scan waited {slices} slices of the loop's work"
            written = asyncio.ensure_future(
                store.put_many("q", [(b"k%05d" % i, b"v" * 100) for i in range(4000)])
            )
            slices = await _busy_until(written, pause)
            await written
            assert slices < 1000, f"the bulk write waited {slices} slices of the loop's work"
    finally:
        await store.close()


def test_a_bulk_load_runs_a_statement_per_few_hundred_rows(tmp_path: Path) -> None:
    # Each statement is a point where the writer thread must take the GIL back.
    store = asyncio.run(SqliteMetadataStore.open(tmp_path / "metadata.db"))
    asyncio.run(store.close())
    conn = sqlite3.connect(tmp_path / "metadata.db", isolation_level=None)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    rows = [(b"k%05d" % i, b"v") for i in reversed(range(3000))] + [(b"k00001", b"last")]
    conn.execute("BEGIN")
    _put_many(conn, "p", iter(rows))
    conn.execute("COMMIT")
    conn.set_trace_callback(None)
    assert len(statements) <= 2 + 3001 // 256 + 1
    found = dict(conn.execute("SELECT k, v FROM kv WHERE p = 'p'").fetchall())
    assert len(found) == 3000 and found[b"k00001"] == b"last"
    conn.close()
