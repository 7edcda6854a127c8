"""The SQLite metadata store: the embedded default, safe for several processes on one file.

No SQLite call runs on the event loop. One writer thread owns the only write connection of a
store and applies queued writes with *group commit*: it takes every request waiting in its
queue, runs them in one `BEGIN IMMEDIATE` transaction (each inside its own SAVEPOINT, so a
failed precondition undoes only its own request), commits once, then settles every caller's
future. A small pool of reader threads, each with its own read-only connection, serves `get`,
`get_many` and `scan` batches concurrently with the writer, which WAL mode allows.

Several stores (in one process or many) may open the same file: `BEGIN IMMEDIATE` takes
SQLite's write lock before any precondition is read, so compare-and-swap stays correct across
processes, and a busy timeout makes a writer wait for the lock instead of failing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate, islice
from operator import itemgetter
from typing import Any, TypeVar

from lakeproxy.errors import InvalidArgument, PreconditionFailed, StorageError
from lakeproxy.metastore._sqlite_utils import Database
from lakeproxy.metastore.base import (
    ABSENT,
    Check,
    Delete,
    DeleteRange,
    Expect,
    Op,
    Put,
    holds_large_values,
)
from lakeproxy.metastore.keyset import KeysetScans
from lakeproxy.metastore.migrations import migrate
from lakeproxy.metastore.rowsql import RowStatements
from lakeproxy.metastore.sqlite_writer import (
    GroupCommitWriter,
    lower_thread_priority,
    translate_error,
)

T = TypeVar("T")

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

_WRITER_CACHE_KIB = 16 * 1024
_READER_CACHE_KIB = 8 * 1024
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
_BULK_CHUNK = 100_000
_RELEASE_STEP = 2048  # rows a bulk load lets go of at a time (see `_release`)
_INLINE_KEYS = 16  # get_many of at most this many keys reads on the caller's thread
_INLINE_ROWS = 256  # and so does a scan page of at most this many rows
_IN_LIST_CHUNK = 500  # well under SQLITE_MAX_VARIABLE_NUMBER on every SQLite build
_ROWS_PER_INSERT = 256  # rows of a bulk load bound into one statement (768 parameters)

_PACKED = (
    "SELECT group_concat(length(k)), CAST(group_concat(k, '') AS BLOB),"
    " group_concat(length(v)), CAST(group_concat(v, '') AS BLOB) FROM "
)
"""The head of a query that returns the rows it selects packed into one row.

A thread takes the GIL back after every row SQLite steps to, and while the event loop's
thread is busy each of those takes until that thread pauses (`lakeproxy.pause`): measured
with the loop busy in 2 ms slices, 14,000 ranges read 64 to a query took 11.6 s as rows and
2.3 s packed. group_concat copies each key and value byte for byte (SQLite treats a BLOB as
text in the database's UTF-8 without checking it); their lengths split them apart again.
"""


class _Sql(RowStatements):
    """The statements of one table (`kv` for small rows, `kvl` for large values)."""

    def __init__(self, table: str) -> None:
        super().__init__(table, "?")
        self.select_packed_in = f"{_PACKED}{table} WHERE p = ? AND k IN "
        self._upserts: dict[int, str] = {}

    def upsert_rows(self, count: int) -> str:
        """The upsert of `count` rows in one statement (later rows win over earlier ones)."""
        sql = self._upserts.get(count)
        if sql is None:
            rows = ", ".join(["(?, ?, ?)"] * count)
            sql = self._upserts[count] = self.upsert.replace("(?, ?, ?)", rows, 1)
        return sql


_KV, _KVL = _Sql("kv"), _Sql("kvl")


def _sql(partition: str) -> _Sql:
    return _KVL if holds_large_values(partition) else _KV


def connect(
    path: str, *, busy_timeout: float, cache_kib: int, synchronous: str = "FULL"
) -> Database:
    """Open one connection to `path` in driver autocommit mode, with the store's pragmas."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    db.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute(f"PRAGMA cache_size = {-cache_kib}")
    return db


def _enable_wal(db: Database, busy_timeout: float) -> None:
    """Switch the file to WAL, waiting up to `busy_timeout` for other openers.

    Two connections switching a fresh file at once can get SQLITE_BUSY at once: SQLite does
    not wait in its busy handler for a lock upgrade that could deadlock. Retrying is safe;
    the switch happens once and is a no-op after that.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def _open_writer(path: str, synchronous: str, busy_timeout: float) -> Database:
    try:
        db = connect(
            path, busy_timeout=busy_timeout, cache_kib=_WRITER_CACHE_KIB, synchronous=synchronous
        )
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the metadata database {path}: {exc}", path=path) from exc
    try:
        _enable_wal(db, busy_timeout)
        db.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        migrate(db, path)
    except sqlite3.Error as exc:
        db.close()
        raise StorageError(f"cannot open the metadata database {path}: {exc}", path=path) from exc
    except BaseException:
        db.close()
        raise
    return db


class _ReaderPool:
    """Threads that each own one read-only connection; a connection never changes thread."""

    def __init__(self, path: str, size: int, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(
            size, thread_name_prefix="lakeproxy-sqlite-read", initializer=lower_thread_priority
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._dbs: list[Database] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            db: Database | None = getattr(self._local, "db", None)
            if db is None:
                db = connect(
                    self._path, busy_timeout=self._busy_timeout, cache_kib=_READER_CACHE_KIB
                )
                db.execute("PRAGMA query_only = ON")
                self._local.db = db
                with self._lock:
                    self._dbs.append(db)
            return fn(db.conn, *args)
        except sqlite3.Error as exc:
            raise translate_error(exc, self._path) from exc

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for db in self._dbs:
            db.close()
        self._dbs.clear()


def _read_one(conn: sqlite3.Connection, partition: str, key: bytes) -> bytes | None:
    row = conn.execute(_sql(partition).get, (partition, key)).fetchone()
    return None if row is None else row[0]


def _split(lengths: str, joined: bytes) -> list[bytes]:
    ends = list(accumulate(map(int, lengths.split(","))))
    if ends[-1] != len(joined):
        raise sqlite3.DatabaseError("a packed read did not add up (is the database not UTF-8?)")
    return [joined[a:b] for a, b in zip([0, *ends], ends, strict=False)]


def _unpacked(row: tuple[str | None, bytes, str, bytes]) -> tuple[list[bytes], list[bytes]]:
    """The keys and the values of a row read with `_PACKED`."""
    key_lengths, keys, value_lengths, values = row
    if key_lengths is None:  # no row matched
        return [], []
    return _split(key_lengths, keys), _split(value_lengths, values)


def _read_many(conn: sqlite3.Connection, partition: str, keys: list[bytes]) -> dict[bytes, bytes]:
    """Look keys up in chunks, packed (`_PACKED`), all in one snapshot: one statement is its
    own, several share a read transaction."""
    sql = _sql(partition)
    statements = [
        (sql.select_packed_in + "(" + ", ".join("?" * len(chunk)) + ")", (partition, *chunk))
        for chunk in (keys[i : i + _IN_LIST_CHUNK] for i in range(0, len(keys), _IN_LIST_CHUNK))
    ]
    if len(statements) == 1:
        return dict(zip(*_unpacked(conn.execute(*statements[0]).fetchone()), strict=True))
    found: dict[bytes, bytes] = {}
    conn.execute("BEGIN")
    try:
        for statement in statements:
            found.update(zip(*_unpacked(conn.execute(*statement).fetchone()), strict=True))
    finally:
        conn.execute("ROLLBACK")
    return found


def _read_multi(
    conn: sqlite3.Connection, items: Sequence[tuple[str, bytes]]
) -> list[bytes | None]:
    """Point reads of any partitions, inside one read transaction so the answer is a snapshot."""
    conn.execute("BEGIN")
    try:
        return [
            None if (row := conn.execute(_sql(item[0]).get, item).fetchone()) is None else row[0]
            for item in items
        ]
    finally:
        conn.execute("ROLLBACK")


def _read_batch(
    conn: sqlite3.Connection,
    partition: str,
    lower: bytes,
    inclusive: bool,
    upper: bytes | None,
    count: int,
) -> list[tuple[bytes, bytes]]:
    """One keyset-pagination page: the first `count` keys from `lower`, below `upper`."""
    sql = _sql(partition).select_from + (">=" if inclusive else ">") + " ?"
    params: list[object] = [partition, lower]
    if upper is not None:
        sql += " AND k < ?"
        params.append(upper)
    params.append(count)
    return conn.execute(sql + " ORDER BY k LIMIT ?", params).fetchall()


def _set(conn: sqlite3.Connection, partition: str, key: bytes, value: bytes) -> None:
    conn.execute(_sql(partition).upsert, (partition, key, value))


def _set_if(
    conn: sqlite3.Connection, partition: str, key: bytes, value: bytes, expect: Expect
) -> None:
    if expect is ABSENT:
        cursor = conn.execute(_sql(partition).insert_new, (partition, key, value))
    else:
        cursor = conn.execute(_sql(partition).swap, (value, partition, key, expect))
    if cursor.rowcount != 1:
        raise PreconditionFailed(
            "the record changed since it was read", partition=partition, key=key
        )


def _delete(conn: sqlite3.Connection, partition: str, key: bytes) -> None:
    conn.execute(_sql(partition).delete, (partition, key))


def _delete_range(conn: sqlite3.Connection, op: DeleteRange) -> None:
    sql = _sql(op.partition)
    if op.end is None:
        conn.execute(sql.delete_from, (op.partition, op.start))
    else:
        conn.execute(sql.delete_between, (op.partition, op.start, op.end))


def _write(conn: sqlite3.Connection, ops: tuple[Op, ...]) -> None:
    """Evaluate every Check first (against the state before the batch), then apply in order."""
    for op in ops:
        if isinstance(op, Check):
            row = conn.execute(_sql(op.partition).get, (op.partition, op.key)).fetchone()
            holds = row is None if op.expect is ABSENT else row is not None and row[0] == op.expect
            if not holds:
                raise PreconditionFailed(
                    "the record changed since it was read", partition=op.partition, key=op.key
                )
    for op in ops:
        if isinstance(op, Put):
            conn.execute(_sql(op.partition).upsert, (op.partition, op.key, op.value))
        elif isinstance(op, Delete):
            conn.execute(_sql(op.partition).delete, (op.partition, op.key))
        elif isinstance(op, DeleteRange):
            _delete_range(conn, op)


def _put_many(
    conn: sqlite3.Connection, partition: str, items: Iterable[tuple[bytes, bytes]]
) -> None:
    # Sorting each chunk turns random b-tree inserts into mostly sequential ones (about twice
    # as fast for keys in random order, free for sorted ones); the sort is stable, so the last
    # of duplicate keys still wins. Memory is bounded by one chunk, whatever `items` is.
    #
    # Rows go in a few hundred per statement, not one per step of `executemany`: after each
    # statement this thread must take the GIL back, and while the event loop's thread is busy
    # (the commit that produces these rows) each such wait can last until that thread next
    # blocks or pauses. Measured with the loop's thread busy in 2 ms slices: 108 MB of ranges
    # took 8.1 s in single-row statements and 0.9 s in these (0.65 s with the loop idle).
    rows = iter(items)
    sql = _sql(partition)
    while chunk := list(islice(rows, _BULK_CHUNK)):
        chunk.sort(key=itemgetter(0))
        for lo in range(0, len(chunk), _ROWS_PER_INSERT):
            part = chunk[lo : lo + _ROWS_PER_INSERT]
            conn.execute(
                sql.upsert_rows(len(part)), [x for kv in part for x in (partition, *kv)]
            )
        _release(chunk)


def _release(rows: list[Any]) -> None:
    """Empty `rows` a slice at a time.

    Freeing a big list at once is one C call that holds the GIL throughout (about 13 ms for
    100k rows), so the event loop's thread would wait that long; between slices it can run.
    """
    while rows:
        del rows[-_RELEASE_STEP:]


class SqliteMetadataStore(KeysetScans):
    """A `MetadataStore` in one SQLite file, shared safely by threads, coroutines and processes.

    Create it with the async `SqliteMetadataStore.open(path)`; the constructor is internal.
    Call `close()` when done. Writes are durable when they return: with the default
    ``synchronous="FULL"`` a committed write survives a crash of the process and of the machine.
    """

    def __init__(
        self,
        path: str,
        writer: GroupCommitWriter,
        readers: _ReaderPool,
        synchronous: str = "FULL",
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._writer = writer
        self._readers = readers
        self._closed = False
        self._inline = threading.local()  # the point-read connection of each calling thread
        self._inline_lock = threading.Lock()
        self._inline_dbs: list[Database] = []

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        readers: int = 4,
        busy_timeout: float = 30.0,
    ) -> SqliteMetadataStore:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        Args:
            path: The database file; its directory must exist.
            synchronous: SQLite's `synchronous` pragma: FULL (default) survives power loss,
                NORMAL survives a process crash but may lose the last commits on power loss.
            readers: How many reader threads (and read connections) to run.
            busy_timeout: Seconds to wait for another process's write lock before failing.

        Raises:
            InvalidArgument: `synchronous` or `readers` is not valid.
            StorageError: The file cannot be opened, or its schema is newer than this code.
        """
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise InvalidArgument(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if readers < 1:
            raise InvalidArgument("readers must be at least 1")
        file = os.fspath(path)
        db = await asyncio.to_thread(_open_writer, file, mode, busy_timeout)
        return cls(
            file, GroupCommitWriter(db, file), _ReaderPool(file, readers, busy_timeout), mode
        )

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    @property
    def reopen_spec(self) -> tuple[str, ...]:
        """What another process passes to `open_by_spec` to open this same store."""
        return ("sqlite", self._path, self._synchronous)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the metadata store {self._path} is closed", path=self._path)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        return await self._readers.run(fn, *args)

    async def _submit(
        self, apply: Callable[[sqlite3.Connection], None], bulk: bool = False
    ) -> None:
        self._check_open()
        await self._writer.submit(apply, bulk=bulk)

    async def get(self, partition: str, key: bytes) -> bytes | None:
        """Return the value at (`partition`, `key`), or None when there is none.

        A point read of a primary key takes microseconds, less than a hop to a reader thread
        and back, so it runs on the caller's thread; if SQLite reports the database busy it
        is retried on a reader thread, which may wait for the lock.
        """
        return await self._read_inline(_read_one, partition, key)

    async def _read_inline(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a small read on the caller's thread; if SQLite reports the database busy, run
        it on a reader thread, which may wait for the lock (the caller's thread never does)."""
        self._check_open()
        try:
            return fn(self._inline_connection(), *args)
        except sqlite3.OperationalError:
            return await self._read(fn, *args)
        except sqlite3.Error as exc:
            raise translate_error(exc, self._path) from exc

    def _inline_connection(self) -> sqlite3.Connection:
        db: Database | None = getattr(self._inline, "db", None)
        if db is None:
            db = connect(self._path, busy_timeout=0, cache_kib=_READER_CACHE_KIB)
            db.execute("PRAGMA query_only = ON")
            self._inline.db = db
            with self._inline_lock:
                self._inline_dbs.append(db)
        return db.conn

    async def get_many(self, partition: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """Return the values of the given keys that exist, read from one snapshot."""
        keys = list(keys)
        if not keys:
            return {}
        if len(keys) <= _INLINE_KEYS:
            # A few lookups take less than the hop to a reader thread and back (as `get`).
            return await self._read_inline(_read_many, partition, keys)
        return await self._read(_read_many, partition, keys)

    async def get_multi(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Return the value at each (partition, key) of `items`, in order, from one snapshot.

        A few point reads take microseconds, so they run on the caller's thread, as `get`
        does (on a reader thread if SQLite reports the database busy).
        """
        self._check_open()
        items = list(items)
        if not items:
            return []
        return await self._read_inline(_read_multi, items)

    async def set(self, partition: str, key: bytes, value: bytes) -> None:
        """Write a value unconditionally; durable when this returns."""
        await self._submit(lambda conn: _set(conn, partition, key, value))

    async def set_if(self, partition: str, key: bytes, value: bytes, *, expect: Expect) -> None:
        """Write iff the current value equals `expect` (or the key is absent, for ABSENT).

        Raises:
            PreconditionFailed: The current value differs from `expect`; nothing was written.
        """
        await self._submit(lambda conn: _set_if(conn, partition, key, value, expect))

    async def delete(self, partition: str, key: bytes) -> None:
        """Delete a key; deleting a missing key is not an error."""
        await self._submit(lambda conn: _delete(conn, partition, key))

    async def write(self, ops: Sequence[Op]) -> None:
        """Apply `ops` atomically, in order, after checking every `Check` against the old state.

        Raises:
            PreconditionFailed: A check failed; nothing was written.
            TypeError: An element of `ops` is not an `Op`.
        """
        batch = tuple(ops)
        for op in batch:
            if not isinstance(op, Put | Delete | DeleteRange | Check):
                raise TypeError(f"not a metadata store operation: {op!r}")
        if batch:
            await self._submit(lambda conn: _write(conn, batch))

    async def put_many(self, partition: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write many values into one partition in one transaction (bulk load).

        `items` is consumed on the writer thread, streaming, so a generator of any size loads
        in bounded memory. If iterating it raises, nothing of it is written and the error
        propagates.
        """
        await self._submit(lambda conn: _put_many(conn, partition, items), bulk=True)

    def _keyset_read(
        self, partition: str, lower: bytes, inclusive: bool, upper: bytes | None, count: int
    ) -> Awaitable[list[tuple[bytes, bytes]]]:
        if count <= _INLINE_ROWS:
            return self._read_inline(_read_batch, partition, lower, inclusive, upper, count)
        return self._read(_read_batch, partition, lower, inclusive, upper, count)

    async def close(self) -> None:
        """Finish queued writes, then stop the threads and close every connection.

        Calling it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._writer.stop()
        self._readers.close()
        with self._inline_lock:
            for db in self._inline_dbs:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._inline_dbs.clear()
