"""Group commit for the SQLite metadata store: one writer thread, many waiting coroutines.

Coroutines submit a write as a function of the write connection and await a future. The writer
thread takes every request waiting in its queue (up to `MAX_GROUP`), runs them in order inside
one `BEGIN IMMEDIATE` transaction, each in its own SAVEPOINT, and commits once. A request that
raises (a failed precondition, say) is rolled back to its savepoint and gets its own exception;
the others still commit. Futures are settled only after COMMIT returns, so a caller is told
"done" only once its write is durable. One fsync thus serves a whole group of writers.

A bulk request (`put_many`) always runs alone in its own transaction: it can be large, and
alone it needs no savepoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable

from lakeproxy.errors import InvalidArgument, StorageError
from lakeproxy.metastore._sqlite_utils import Database

HELPER_NICENESS = 10
"""How much lower than the event loop's thread the store's own threads run (Linux).

With two cores, an event loop, a writer and a reader all wanting CPU during a big commit,
the scheduler could leave the loop waiting a whole time slice; the store's threads do bulk
work that can wait, the loop serves requests that cannot."""


def lower_thread_priority() -> None:
    """Make the calling thread yield the CPU to the event loop's thread (Linux, where niceness
    is per thread); elsewhere, or when not allowed, nothing changes."""
    native_id = threading.get_native_id()
    if os.uname().sysname != "Linux" or native_id == os.getpid():
        return  # never the process's main thread (that would renice the process elsewhere)
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, native_id)
        os.setpriority(os.PRIO_PROCESS, native_id, min(19, current + HELPER_NICENESS))


MAX_GROUP = 512
"""The most requests one transaction applies; bounds the latency a group adds."""

Apply = Callable[[sqlite3.Connection], None]


def translate_error(exc: BaseException, path: str) -> BaseException:
    """Map a SQLite exception to lakeproxy's hierarchy; anything else is returned unchanged."""
    if isinstance(exc, sqlite3.IntegrityError):
        err: BaseException = InvalidArgument(
            f"the metadata store rejected a row (keys and values must be bytes): {exc}", path=path
        )
    elif isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.ProgrammingError):
        err = StorageError(f"the metadata database {path} failed: {exc}", path=path)
    else:
        return exc
    err.__cause__ = exc
    return err


class _Request:
    __slots__ = ("apply", "bulk", "future", "loop")

    def __init__(self, apply: Apply, bulk: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.apply = apply
        self.bulk = bulk
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()


_STOP = object()

_Settled = list[tuple["asyncio.Future[None]", BaseException | None]]


def _settle(settled: _Settled) -> None:
    """Runs on the caller's event loop. Futures whose caller was cancelled are left alone."""
    for future, error in settled:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class GroupCommitWriter:
    """Owns the write connection `db` and the thread that applies requests in groups."""

    def __init__(self, db: Database, path: str) -> None:
        self._db = db
        self._path = path
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._held: _Request | None = None
        self._thread = threading.Thread(
            target=self._run, name="lakeproxy-sqlite-writer", daemon=True
        )
        self._thread.start()

    def submit(self, apply: Apply, *, bulk: bool = False) -> asyncio.Future[None]:
        """Queue `apply` for the writer thread; the future settles after its group commits."""
        request = _Request(apply, bulk, asyncio.get_running_loop())
        self._queue.put(request)
        return request.future

    def stop(self) -> None:
        """Apply what is queued, stop the thread and close the connection (blocking)."""
        self._queue.put(_STOP)
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        lower_thread_priority()
        stopping = False
        while not stopping:
            group, stopping = self._next_group()
            if group:
                self._commit_guarded(group)
            # Let go of the requests (and what their functions hold) now, while the writer is
            # idle anyway, not when the next request arrives and someone is waiting for it.
            del group
        leftovers: list[_Request] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Request):
                leftovers.append(item)
        closed = StorageError(f"the metadata store {self._path} is closed", path=self._path)
        self._resolve(leftovers, [closed] * len(leftovers))

    def _next_group(self) -> tuple[list[_Request], bool]:
        """Block for one request, then take whatever else is already waiting."""
        first = self._held if self._held is not None else self._queue.get()
        self._held = None
        if not isinstance(first, _Request):
            return [], True
        group = [first]
        if first.bulk:
            return group, False
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Request):
                return group, True
            if item.bulk:
                self._held = item
                break
            group.append(item)
        return group, False

    def _commit_guarded(self, group: list[_Request]) -> None:
        """Commit a group; whatever happens, every future of the group gets settled."""
        try:
            errors = self._commit(group)
        except Exception as exc:
            errors = [self._group_failure(exc) for _ in group]
        self._resolve(group, errors)

    def _group_failure(self, exc: Exception) -> BaseException:
        err = StorageError(
            f"the metadata database {self._path} could not commit: {exc}", path=self._path
        )
        err.__cause__ = exc
        return err

    def _commit(self, group: list[_Request]) -> list[BaseException | None]:
        conn = self._db.conn
        alone = len(group) == 1
        conn.execute("BEGIN IMMEDIATE")
        try:
            errors = [self._apply(conn, request, savepoint=not alone) for request in group]
            conn.execute("ROLLBACK" if alone and errors[0] is not None else "COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return errors

    def _apply(
        self, conn: sqlite3.Connection, request: _Request, *, savepoint: bool
    ) -> BaseException | None:
        if savepoint:
            conn.execute("SAVEPOINT request")
        try:
            request.apply(conn)
        except Exception as exc:
            if not conn.in_transaction:
                raise  # SQLite abandoned the whole transaction: the group fails
            if savepoint:
                conn.execute("ROLLBACK TO request")
                conn.execute("RELEASE request")
            return translate_error(exc, self._path)
        if savepoint:
            conn.execute("RELEASE request")
        return None

    @staticmethod
    def _resolve(group: list[_Request], errors: list[BaseException | None]) -> None:
        by_loop: defaultdict[asyncio.AbstractEventLoop, _Settled] = defaultdict(list)
        for request, error in zip(group, errors, strict=True):
            by_loop[request.loop].append((request.future, error))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, settled)
