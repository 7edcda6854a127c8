"""The SQLite store's own threads give way to the event loop's thread."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from lakeproxy.metastore.sqlite import SqliteMetadataStore
from lakeproxy.metastore.sqlite_writer import HELPER_NICENESS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="niceness is per thread on Linux")


def _niceness(thread: threading.Thread) -> int:
    assert thread.native_id is not None
    return os.getpriority(os.PRIO_PROCESS, thread.native_id)


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
