"""The SQLite store's own threads give way to the event loop's thread."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import weakref
from pathlib import Path

import pytest

from lakeproxy.metastore.sqlite import SqliteMetadataStore
from lakeproxy.metastore.sqlite_writer import HELPER_NICENESS

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="niceness is per thread on Linux")


def _niceness(thread: threading.Thread) -> int:
    assert thread.native_id is not None
    return os.getpriority(os.PRIO_PROCESS, thread.native_id)


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
        for thread in writers + readers:
            assert _niceness(thread) == min(19, main + HELPER_NICENESS), thread.name
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
