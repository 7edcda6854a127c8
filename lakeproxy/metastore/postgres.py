"""The PostgreSQL metadata store: one truth shared by any number of lakeproxy processes.

Every partition lives in one table ``kv (p, k, v)`` whose primary key orders keys bytewise
(bytea). Connections come from a psycopg pool in autocommit mode, so a point read or a
single-key write is one statement and one round trip. Every round trip costs CPU in the
client and in the server, so the store spends as few as it can: `get_multi` reads records of
several partitions in one statement; point reads that arrive while the few statements of point
reads allowed at once are running wait and are then read together, in one statement; and
`write(ops)` is one call of a server-side function (created by a migration) that runs the
checks and then the operations in the statement's implicit transaction. Statements are
prepared on their first use on a connection.

A check of a value locks its row (FOR SHARE, or FOR UPDATE when the batch also writes that
key) so that nobody changes it before the commit; a check for absence inserts a placeholder
row with ON CONFLICT DO NOTHING, which holds the key exactly as a row lock would, and the
placeholder is removed again unless the batch writes the key. No lock outlives the statement,
and no transaction spans a commit's heavy work: the core computes trees first and only then
swaps the branch head in one `write`.

Lost connections are told apart by what they may have done. A read is retried on a fresh
connection. A write whose backend reported its own termination while it was still checking
its preconditions surely did not commit, and is retried too; any other write that lost its
connection may have committed, so it raises ServiceUnavailable (the gateway answers 503 with
Retry-After) rather than guess. Deadlocks and serialization failures are reported by the
server before anything commits, so they are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import select
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from lakeproxy.errors import (
    InvalidArgument,
    LakeproxyError,
    PreconditionFailed,
    ServiceUnavailable,
    StorageError,
)
from lakeproxy.metastore.base import ABSENT, Check, Delete, DeleteRange, Expect, Op, Put
from lakeproxy.metastore.keyset import KeysetScans
from lakeproxy.metastore.pg_migrations import migrate, quote_ident
from lakeproxy.metastore.pg_url import PostgresTarget, parse_postgres_url
from lakeproxy.metastore.rowsql import RowStatements

Conn = psycopg.AsyncConnection[Any]

_READ_ATTEMPTS = 4
_TXN_ATTEMPTS = 6
_BULK_ROWS = 2000
_BULK_BYTES = 4 * 1024 * 1024
_REPLAY_BYTES = 64 * 1024 * 1024
# SQLSTATEs of a connection that is gone or going: class 08 and the shutdown codes.
_LOST_STATES = ("57P01", "57P02", "57P03")
# SQLSTATEs with which the server aborts a transaction it did not commit.
_ABORTED_STATES = ("40001", "40P01")
# The SQLSTATE with which `lakeproxy_write` reports a check that does not hold.
_CHECK_FAILED = "LP412"
# What the context of an error raised while `lakeproxy_write` checked its batch holds.
_CHECKING = "lakeproxy_checks("
_UNION_MAX = 64
# Statements of point reads run at once (each on its own connection), and most reads (of
# callers) that one statement serves.
_READ_LANES = 2
_BATCH_READS = 64


class _Statements(RowStatements):
    """The SQL of a store, with its table's schema-qualified name filled in."""

    def __init__(self, schema: str) -> None:
        kv = f"{quote_ident(schema)}.kv"
        super().__init__(kv, "%s")
        self.get_many = f"SELECT k, v FROM {kv} WHERE p = %s AND k = ANY(%s)"
        # Records of any partitions: one index probe each, numbered so that the answer lines
        # up with the request (2**n probes, n = 0..6); more of them: a join with the
        # unnested lists.
        self.get_multi = {
            n: " UNION ALL ".join(
                f"SELECT {i}, v FROM {kv} WHERE p = %s AND k = %s" for i in range(n)
            )
            for n in (1 << b for b in range(_UNION_MAX.bit_length()))
        }
        self.get_multi_unnest = (
            f"SELECT q.i - 1, kv.v FROM unnest(%s::text[], %s::bytea[])"
            f" WITH ORDINALITY AS q (p, k, i)"
            f' JOIN {kv} AS kv ON kv.p = q.p COLLATE "C" AND kv.k = q.k'
        )
        self.write = (
            f"SELECT {quote_ident(schema)}.lakeproxy_write("
            "%s::text[], %s::bytea[], %s::bytea[], %s, %s::text[], %s::bytea[], %s::bytea[], %s)"
        )
        self.bulk_upsert = (
            f"INSERT INTO {kv} (p, k, v) SELECT %s, r.k, r.v"
            " FROM unnest(%s::bytea[], %s::bytea[]) AS r (k, v)"
            " ON CONFLICT (p, k) DO UPDATE SET v = excluded.v"
        )
        self.scan = {
            (inclusive, bounded): self.select_from
            + (">= %s" if inclusive else "> %s")
            + (" AND k < %s" if bounded else "")
            + " ORDER BY k LIMIT %s"
            for inclusive in (True, False)
            for bounded in (True, False)
        }


def _lost(exc: BaseException) -> bool:
    """True when `exc` says the connection broke (the server may or may not have acted)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _LOST_STATES


def _aborted(exc: BaseException) -> bool:
    """True when the server aborted the transaction itself (deadlock, serialization)."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in _ABORTED_STATES


def _check_bytes(*values: object) -> None:
    for value in values:
        if not isinstance(value, bytes):
            raise InvalidArgument(
                f"the metadata store takes keys and values as bytes, not {type(value).__name__}"
            )


def _idle_and_alive(conn: Conn) -> bool:
    """Whether a connection just taken from the pool looks usable, without a round trip.

    An idle connection has nothing to read. When its backend is terminated the server sends
    an error and closes the socket, which makes it readable: such a connection is dropped
    and another one taken, instead of a write failing on it with an unknowable outcome. This
    costs one non-blocking `select`.
    """
    if conn.closed or conn.broken:
        return False
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return not readable


@dataclass(slots=True)
class _Txn:
    """What a transaction attempt did so far; `committing` is set once COMMIT may be sent."""

    committing: bool = False


@dataclass(frozen=True, slots=True)
class _KeyCheck:
    partition: str
    key: bytes
    expect: Expect
    exclusive: bool  # the batch writes this key: lock it for update, not for share


def _touches(op: Op, partition: str, key: bytes) -> bool:
    if isinstance(op, Put | Delete):
        return op.partition == partition and op.key == key
    if isinstance(op, DeleteRange):
        return (
            op.partition == partition and op.start <= key and (op.end is None or key < op.end)
        )
    return False


def _plan_checks(batch: tuple[Op, ...]) -> list[_KeyCheck]:
    """One check per distinct key, in key order (so transactions lock rows in one order).

    Raises PreconditionFailed at once when two checks of one key expect different things:
    they cannot both hold.
    """
    wanted: dict[tuple[str, bytes], Expect] = {}
    for op in batch:
        if isinstance(op, Check):
            seen = wanted.setdefault((op.partition, op.key), op.expect)
            if seen != op.expect:
                raise PreconditionFailed(
                    "the record changed since it was read", partition=op.partition, key=op.key
                )
    return [
        _KeyCheck(p, k, expect, any(_touches(op, p, k) for op in batch))
        for (p, k), expect in sorted(wanted.items(), key=lambda item: item[0])
    ]


def _write_params(checks: list[_KeyCheck], batch: tuple[Op, ...]) -> tuple[object, ...]:
    """The arguments of `lakeproxy_write` for a batch: its checks, then its operations.

    Placeholders of absent-checks that no operation replaces or removes are deleted last.
    """
    check_parts: list[str] = []
    check_keys: list[bytes] = []
    check_values: list[bytes | None] = []
    modes = []
    for check in checks:
        check_parts.append(check.partition)
        check_keys.append(check.key)
        if check.expect is ABSENT:
            check_values.append(None)
            modes.append("a")
        else:
            check_values.append(check.expect)
            modes.append("x" if check.exclusive else "s")
    parts: list[str] = []
    keys: list[bytes] = []
    values: list[bytes | None] = []
    kinds = []
    for op in batch:
        if isinstance(op, Put):
            parts.append(op.partition)
            keys.append(op.key)
            values.append(op.value)
            kinds.append("p")
        elif isinstance(op, Delete):
            parts.append(op.partition)
            keys.append(op.key)
            values.append(None)
            kinds.append("d")
        elif isinstance(op, DeleteRange):
            parts.append(op.partition)
            keys.append(op.start)
            values.append(op.end)
            kinds.append("r" if op.end is None else "b")
    for check in checks:
        if check.expect is ABSENT and not check.exclusive:
            parts.append(check.partition)
            keys.append(check.key)
            values.append(None)
            kinds.append("d")
    return (check_parts, check_keys, check_values, "".join(modes),
            parts, keys, values, "".join(kinds))


def _while_checking(exc: psycopg.Error) -> bool:
    """True when the server reported that it ended a `lakeproxy_write` call while the call
    was still checking its batch: nothing was written, and nothing will be."""
    return exc.sqlstate in _LOST_STATES and _CHECKING in (exc.diag.context or "")


@dataclass(slots=True)
class _Chunks:
    """The rows of a `put_many`, deduplicated and sorted chunk by chunk, replayable.

    Chunks already read are kept (up to `_REPLAY_BYTES`) so that a transaction that lost its
    connection before COMMIT can be run again from the start.
    """

    source: Iterator[tuple[bytes, bytes]]
    kept: list[dict[bytes, bytes]] = field(default_factory=list)
    kept_bytes: int = 0
    replayable: bool = True
    exhausted: bool = False

    def __iter__(self) -> Iterator[dict[bytes, bytes]]:
        yield from self.kept
        while not self.exhausted:
            chunk, size = self._read_chunk()
            if not chunk:
                break
            if self.replayable:
                if self.kept_bytes + size <= _REPLAY_BYTES:
                    self.kept.append(chunk)
                    self.kept_bytes += size
                else:
                    self.replayable = False
                    self.kept.clear()
            yield chunk

    def _read_chunk(self) -> tuple[dict[bytes, bytes], int]:
        chunk: dict[bytes, bytes] = {}
        size = 0
        for key, value in self.source:
            _check_bytes(key, value)
            chunk[key] = value
            size += len(key) + len(value)
            if len(chunk) >= _BULK_ROWS or size >= _BULK_BYTES:
                return chunk, size
        self.exhausted = True
        return chunk, size


class PostgresMetadataStore(KeysetScans):
    """A `MetadataStore` in a PostgreSQL schema, shared by every process that opens it.

    Create it with the async `PostgresMetadataStore.open(url)`; the constructor is internal.
    Call `close()` when done.
    """

    def __init__(
        self, target: PostgresTarget, pool: AsyncConnectionPool[Any], url: str = ""
    ) -> None:
        self._target = target
        self._pool = pool
        self._url = url  # the URL it was opened with (see `reopen_spec`)
        self._sql = _Statements(target.schema)
        self._closed = False
        # Point reads waiting for a read lane, and how many lanes are busy (see `_point_reads`).
        self._waiting: list[tuple[Sequence[tuple[str, bytes]], asyncio.Future[Any]]] = []
        self._lanes_busy = 0
        self._lanes = max(1, min(_READ_LANES, target.pool_max // 2))
        self._lane_tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_min: int | None = None,
        pool_max: int | None = None,
        connection_timeout: float = 10.0,
    ) -> PostgresMetadataStore:
        """Connect to the server named by `url`, bring the schema up to date, open the pool.

        Args:
            url: ``postgresql://…`` (see `lakeproxy.metastore.pg_url` for the parameters
                lakeproxy reads: ``schema``, ``pool_min``, ``pool_max``).
            pool_min: Connections kept open (the URL's ``pool_min`` wins).
            pool_max: Most connections open at once (the URL's ``pool_max`` wins).
            connection_timeout: Seconds to wait for a connection, at start and for every
                operation.

        Raises:
            InvalidArgument: The URL is malformed.
            ServiceUnavailable: The server cannot be reached.
            StorageError: The schema is newer than this lakeproxy, or PostgreSQL refused.
        """
        target = parse_postgres_url(url, pool_min=pool_min, pool_max=pool_max)
        try:
            conn = await psycopg.AsyncConnection.connect(
                target.conninfo,
                autocommit=True,
                connect_timeout=max(1, round(connection_timeout)),
            )
        except psycopg.Error as exc:
            raise ServiceUnavailable(
                f"cannot reach the metadata database ({target.display}): {exc}"
            ) from exc
        try:
            await migrate(conn, target.schema)
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot prepare the metadata schema ({target.display}): {exc}"
            ) from exc
        finally:
            await conn.close()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            target.conninfo,
            min_size=target.pool_min,
            max_size=target.pool_max,
            # Every statement is prepared on its first use on a connection: a store runs a
            # few dozen statement shapes, over and over.
            kwargs={"autocommit": True, "prepare_threshold": 0},
            timeout=connection_timeout,
            open=False,
            name=f"lakeproxy-{target.schema}",
        )
        try:
            await pool.open(wait=True, timeout=connection_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise ServiceUnavailable(
                f"cannot open connections to the metadata database ({target.display})"
            ) from exc
        return cls(target, pool, url)

    @property
    def schema(self) -> str:
        """The PostgreSQL schema that holds the store."""
        return self._target.schema

    @property
    def reopen_spec(self) -> tuple[str, ...] | None:
        """What another process passes to `open_by_spec` to open this same store."""
        return ("postgres", self._url) if self._url else None

    # Running statements

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the metadata store is closed", schema=self.schema)

    def _unavailable(self, exc: BaseException, doing: str) -> ServiceUnavailable:
        """The error to raise (from `exc`) when the database cannot be used right now."""
        return ServiceUnavailable(
            f"the metadata database ({self._target.display}) is unavailable while {doing}: "
            f"{exc}; retry later",
            schema=self.schema,
        )

    def _translate(self, exc: psycopg.Error) -> LakeproxyError:
        """The error to raise (from `exc`) for anything else PostgreSQL reports."""
        if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
            return InvalidArgument(
                f"the metadata database rejected a row: {exc}", schema=self.schema
            )
        return StorageError(f"the metadata database failed: {exc}", schema=self.schema)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        """A pooled connection that was alive when handed out (dead ones are dropped)."""
        conn = await self._take()
        try:
            yield conn
        finally:
            await self._pool.putconn(conn)

    async def _take(self) -> Conn:
        """A pooled connection that is alive (dead ones are dropped); `putconn` it back."""
        for _ in range(self._target.pool_max + 1):
            conn = await self._pool.getconn()
            if _idle_and_alive(conn):
                return conn
            await conn.close()  # the pool replaces a closed connection
            await self._pool.putconn(conn)
        raise psycopg.OperationalError("every pooled connection was closed by the server")

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 5)))

    async def _rows(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """Run one read statement and return its rows (binary); retried on a fresh connection
        if the connection breaks."""
        self._check_open()
        pool = self._pool
        for attempt in range(_READ_ATTEMPTS):
            try:
                conn = await self._take()
                try:
                    cur = await conn.execute(sql, params, binary=True)
                    return await cur.fetchall()
                finally:
                    await pool.putconn(conn)
            except PoolTimeout as exc:
                raise self._unavailable(exc, "reading") from exc
            except psycopg.Error as exc:
                if not (_lost(exc) or _aborted(exc)):
                    raise self._translate(exc) from exc
                if attempt + 1 == _READ_ATTEMPTS:
                    raise self._unavailable(exc, "reading") from exc
            await self._backoff(attempt)
        raise AssertionError("unreachable")

    async def _statement(self, sql: str, params: tuple[object, ...]) -> int:
        """Run one autocommit write and return its row count.

        A broken connection leaves the outcome unknown (the statement may have committed),
        so it is not retried: it raises ServiceUnavailable.
        """
        self._check_open()
        for attempt in range(_TXN_ATTEMPTS):
            try:
                conn = await self._take()
                try:
                    cur = await conn.execute(sql, params)
                    return cur.rowcount
                finally:
                    await self._pool.putconn(conn)
            except PoolTimeout as exc:
                raise self._unavailable(exc, "writing") from exc
            except psycopg.Error as exc:
                if _lost(exc):
                    raise self._unavailable(exc, "writing (the write may or may not have "
                                            "been applied)") from exc
                if not _aborted(exc):
                    raise self._translate(exc) from exc
            await self._backoff(attempt)
        raise self._unavailable(RuntimeError("too many aborted attempts"), "writing")

    async def _transact(
        self,
        fn: Callable[[Conn, _Txn], Awaitable[None]],
        can_retry: Callable[[], bool] = lambda: True,
    ) -> None:
        """Run a transaction; attempts that surely did not commit are retried from scratch."""
        self._check_open()
        for attempt in range(_TXN_ATTEMPTS):
            txn = _Txn()
            try:
                async with self._connection() as conn:
                    try:
                        await fn(conn, txn)
                    except BaseException:
                        await _rollback(conn)
                        raise
                return
            except PoolTimeout as exc:
                raise self._unavailable(exc, "writing") from exc
            except psycopg.Error as exc:
                if _lost(exc) and txn.committing:
                    raise self._unavailable(exc, "committing (the write may or may not "
                                            "have been applied)") from exc
                if not (_lost(exc) or _aborted(exc)):
                    raise self._translate(exc) from exc
                if not can_retry() or attempt + 1 == _TXN_ATTEMPTS:
                    raise self._unavailable(exc, "writing (nothing was applied)") from exc
            await self._backoff(attempt)
        raise AssertionError("unreachable")

    # Reads

    async def get(self, partition: str, key: bytes) -> bytes | None:
        """Return the value at (`partition`, `key`), or None when there is none."""
        return (await self._point_reads(((partition, key),)))[0]

    async def get_many(self, partition: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """Return the values of the given keys that exist, read in one statement (a snapshot)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        _check_bytes(*wanted)
        return dict(await self._rows(self._sql.get_many, (partition, wanted)))

    async def get_multi(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Return the value at each (partition, key) of `items`, in order (None: no value).

        Read in one statement, so from one snapshot.
        """
        return await self._point_reads(items) if items else []

    async def _point_reads(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Values of (partition, key) pairs, read in one statement shared with concurrent reads.

        At most a few statements of point reads run at once (the read lanes). Reads that come
        while every lane is busy wait, and the next free lane reads all of them in one
        statement: under load one round trip serves many requests, which saves CPU in this
        process and in the server. Every caller still gets values from one snapshot taken
        after it asked, so nothing it reads is older than its call.
        """
        for partition, key in items:
            if not isinstance(partition, str):
                raise InvalidArgument("the metadata store takes partition names as text")
            _check_bytes(key)
        if self._lanes_busy < self._lanes and not self._waiting:
            self._lanes_busy += 1
            try:
                return await self._read_points(items)
            finally:
                self._lanes_busy -= 1
                if self._waiting and self._lanes_busy < self._lanes:
                    self._start_lane()
        future: asyncio.Future[list[bytes | None]] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if self._lanes_busy < self._lanes:
            self._start_lane()
        return await future

    def _start_lane(self) -> None:
        self._lanes_busy += 1
        task = asyncio.ensure_future(self._drain_waiting())
        self._lane_tasks.add(task)
        task.add_done_callback(self._lane_tasks.discard)

    async def _drain_waiting(self) -> None:
        """Serve waiting point reads, a statement at a time, until none are left."""
        try:
            while self._waiting:
                batch, self._waiting = (self._waiting[:_BATCH_READS],
                                        self._waiting[_BATCH_READS:])
                items = [item for wanted, _ in batch for item in wanted]
                try:
                    values = await self._read_points(items)
                except BaseException as exc:  # every caller of the batch gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for wanted, future in batch:
                    end = start + len(wanted)
                    if not future.done():
                        future.set_result(values[start:end])
                    start = end
        finally:
            self._lanes_busy -= 1

    async def _read_points(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """One statement: up to 64 records as that many index probes joined by UNION ALL,
        more as a join with the unnested lists."""
        count = len(items)
        found: list[bytes | None] = [None] * count
        if count <= _UNION_MAX:
            params: list[object] = []
            for item in items:
                params += item
            # A few shapes (1, 2, 4, 8… probes), each prepared once per connection: the
            # last probe is repeated up to the next shape.
            shape = 1 << (count - 1).bit_length()
            params += items[-1] * (shape - count)
            rows = await self._rows(self._sql.get_multi[shape], params)
        else:
            rows = await self._rows(self._sql.get_multi_unnest,
                                    ([p for p, _ in items], [k for _, k in items]))
        for i, value in rows:
            if i < count:
                found[i] = value
        return found

    # Writes

    async def set(self, partition: str, key: bytes, value: bytes) -> None:
        """Write a value unconditionally; durable when this returns."""
        _check_bytes(key, value)
        await self._statement(self._sql.upsert, (partition, key, value))

    async def set_if(self, partition: str, key: bytes, value: bytes, *, expect: Expect) -> None:
        """Write iff the current value equals `expect` (or the key is absent, for ABSENT).

        One statement: an insert that does nothing on a conflict, or an update whose WHERE
        compares the current value (PostgreSQL re-checks it against the latest version when
        another transaction changed the row meanwhile).

        Raises:
            PreconditionFailed: The current value differs from `expect`; nothing was written.
            ServiceUnavailable: The connection broke; the write may or may not have happened.
        """
        _check_bytes(key, value)
        if expect is ABSENT:
            count = await self._statement(self._sql.insert_new, (partition, key, value))
        else:
            _check_bytes(expect)
            count = await self._statement(self._sql.swap, (value, partition, key, expect))
        if count != 1:
            raise PreconditionFailed(
                "the record changed since it was read", partition=partition, key=key
            )

    async def delete(self, partition: str, key: bytes) -> None:
        """Delete a key; deleting a missing key is not an error."""
        _check_bytes(key)
        await self._statement(self._sql.delete, (partition, key))

    async def write(self, ops: Sequence[Op]) -> None:
        """Apply `ops` atomically, in order, after checking every `Check` against the old state.

        One call of the schema's `lakeproxy_write` function: one round trip.

        Raises:
            PreconditionFailed: A check failed; nothing was written.
            TypeError: An element of `ops` is not an `Op`.
            ServiceUnavailable: The connection broke once the checks had passed (the batch
                may or may not have been applied), or kept breaking before.
        """
        batch = tuple(ops)
        for op in batch:
            if not isinstance(op, Put | Delete | DeleteRange | Check):
                raise TypeError(f"not a metadata store operation: {op!r}")
            if isinstance(op, Put):
                _check_bytes(op.key, op.value)
        if not batch:
            return
        checks = _plan_checks(batch)
        params = _write_params(checks, batch)
        self._check_open()
        for attempt in range(_TXN_ATTEMPTS):
            try:
                conn = await self._take()
                try:
                    await conn.execute(self._sql.write, params)
                finally:
                    await self._pool.putconn(conn)
                return
            except PoolTimeout as exc:
                raise self._unavailable(exc, "writing") from exc
            except psycopg.Error as exc:
                if exc.sqlstate == _CHECK_FAILED:
                    failed = checks[int(exc.diag.message_detail or 0) - 1]
                    raise PreconditionFailed(
                        "the record changed since it was read",
                        partition=failed.partition, key=failed.key,
                    ) from None
                if _lost(exc) and not _while_checking(exc):
                    raise self._unavailable(exc, "writing (the write may or may not have "
                                            "been applied)") from exc
                if not (_lost(exc) or _aborted(exc)):
                    raise self._translate(exc) from exc
                if attempt + 1 == _TXN_ATTEMPTS:
                    raise self._unavailable(exc, "writing (nothing was applied)") from exc
            await self._backoff(attempt)
        raise AssertionError("unreachable")

    async def put_many(self, partition: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write many values into one partition in one transaction (bulk load).

        Rows are sent in chunks, each one `INSERT … SELECT FROM unnest(keys, values)`
        statement, pipelined, so a chunk is built while the server stores the previous
        one; COMMIT goes alone once every chunk is stored, so a connection lost before it
        is retried (from rows kept in memory, up to 64 MiB of them). Within the call the
        last of duplicate keys wins. `items` is read as it is sent; if iterating it raises,
        nothing of it is written and the error propagates.
        """
        chunks = _Chunks(iter(items))

        async def run(conn: Conn, txn: _Txn) -> None:
            async with conn.pipeline() as pipeline:
                await conn.execute("BEGIN")
                for chunk in chunks:
                    ordered = sorted(chunk)
                    await conn.execute(
                        self._sql.bulk_upsert,
                        (partition, ordered, [chunk[k] for k in ordered]),
                    )
                await pipeline.sync()  # every row is in: a failure until here is retryable
                txn.committing = True
                await conn.execute("COMMIT")

        await self._transact(run, can_retry=lambda: chunks.replayable)

    # Scans

    async def _keyset_read(
        self, partition: str, lower: bytes, inclusive: bool, upper: bytes | None, count: int
    ) -> list[tuple[bytes, bytes]]:
        """One keyset-pagination page: the first `count` keys from `lower`, below `upper`."""
        sql = self._sql.scan[(inclusive, upper is not None)]
        params: tuple[object, ...] = (
            (partition, lower, count) if upper is None else (partition, lower, upper, count)
        )
        return await self._rows(sql, params)  # type: ignore[return-value]

    async def close(self) -> None:
        """Close every pooled connection. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()


async def _rollback(conn: Conn) -> None:
    """End a transaction left open by a failed attempt (the pool would warn otherwise)."""
    if conn.broken or conn.closed:
        return
    if conn.pgconn.transaction_status in (pq.TransactionStatus.INTRANS,
                                          pq.TransactionStatus.INERROR):
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")
