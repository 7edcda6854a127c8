"""PostgreSQL connections dropped mid-request: retried, or a retryable error, never a wrong answer.

The store's backends are found by their application name (each test's schema name) and ended
with `pg_terminate_backend` from a second connection. To drop a connection at a known point,
the test first makes the store's statement wait on a lock the test holds, then terminates the
waiting backend: it is then certain the statement was running and had not committed.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lakeproxy.errors import PreconditionFailed, ServiceUnavailable
from lakeproxy.metastore.base import ABSENT, Check, Put
from lakeproxy.metastore.postgres import PostgresMetadataStore
from tests.conftest import POSTGRES_URL, fresh_schema
from tests.server import Server, lake_serve

pytestmark = pytest.mark.postgres

WAIT_SECONDS = 20.0


@pytest.fixture
async def store(postgres_metadata_url: str) -> AsyncIterator[PostgresMetadataStore]:
    opened = await PostgresMetadataStore.open(postgres_metadata_url)
    yield opened
    await opened.close()


@asynccontextmanager
async def admin() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection of the test's own, outside the store's pool."""
    conn = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


_terminated: set[int] = set()


async def terminate_waiting(conn: psycopg.AsyncConnection[Any], app: str) -> int:
    """Wait until a backend of `app` waits for a lock, terminate it, and return its pid.

    A terminated backend may linger in pg_stat_activity for a moment: it is not picked twice.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock' AND NOT pid = ANY(%s)",
            (app, list(_terminated)),
        )
        row = await cur.fetchone()
        if row is not None:
            await conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            _terminated.add(int(row[0]))
            return int(row[0])
        await asyncio.sleep(0.02)
    raise AssertionError(f"no backend of {app} started waiting for the lock")


async def test_a_read_whose_connection_drops_is_retried(store: PostgresMetadataStore) -> None:
    await store.set("p", b"k", b"v")
    async with admin() as locker, admin() as killer:
        await locker.execute("BEGIN")
        await locker.execute(f'LOCK TABLE "{store.schema}".kv IN ACCESS EXCLUSIVE MODE')
        read = asyncio.ensure_future(store.get("p", b"k"))
        first = await terminate_waiting(killer, store.schema)
        second = await terminate_waiting(killer, store.schema)  # the retry waits again
        assert first != second
        await locker.execute("ROLLBACK")
        assert await asyncio.wait_for(read, WAIT_SECONDS) == b"v"
    assert await store.get_many("p", [b"k"]) == {b"k": b"v"}


async def test_a_transaction_dropped_before_commit_is_retried(
    store: PostgresMetadataStore,
) -> None:
    await store.set("p", b"branch", b"head-1")
    async with admin() as locker, admin() as killer:
        await locker.execute("BEGIN")
        await locker.execute(
            f'SELECT 1 FROM "{store.schema}".kv WHERE p = %s AND k = %s FOR UPDATE',
            ("p", b"branch"),
        )
        write = asyncio.ensure_future(store.write([
            Check("p", b"branch", b"head-1"),
            Put("p", b"branch", b"head-2"),
            Put("p", b"new", b"n"),
        ]))
        await terminate_waiting(killer, store.schema)  # waiting in its checks: not committed
        await terminate_waiting(killer, store.schema)
        await locker.execute("ROLLBACK")
        await asyncio.wait_for(write, WAIT_SECONDS)
    assert await store.get_many("p", [b"branch", b"new"]) == {b"branch": b"head-2", b"new": b"n"}


async def test_a_bulk_load_dropped_before_commit_is_retried(store: PostgresMetadataStore) -> None:
    rows = ((b"%06d" % i, b"x" * 100) for i in range(10_000))  # a generator, read once
    async with admin() as locker, admin() as killer:
        await locker.execute("BEGIN")
        await locker.execute(f'LOCK TABLE "{store.schema}".kv IN SHARE MODE')
        load = asyncio.ensure_future(store.put_many("p", rows))
        await terminate_waiting(killer, store.schema)
        await locker.execute("ROLLBACK")
        await asyncio.wait_for(load, WAIT_SECONDS)
    assert len([k async for k, _ in store.scan("p", batch_size=3000)]) == 10_000


async def test_a_write_with_an_unknown_outcome_is_service_unavailable(
    store: PostgresMetadataStore,
) -> None:
    await store.set("p", b"k", b"v1")
    async with admin() as locker, admin() as killer:
        await locker.execute("BEGIN")
        await locker.execute(
            f'SELECT 1 FROM "{store.schema}".kv WHERE p = %s AND k = %s FOR UPDATE', ("p", b"k")
        )
        swap = asyncio.ensure_future(store.set_if("p", b"k", b"v2", expect=b"v1"))
        batch = asyncio.ensure_future(store.write([
            Check("p", b"other", ABSENT),
            Put("p", b"other", b"o"),
            Put("p", b"k", b"v3"),  # waits for the lock after the checks passed
        ]))
        await terminate_waiting(killer, store.schema)
        await terminate_waiting(killer, store.schema)
        await locker.execute("ROLLBACK")
        results = await asyncio.wait_for(
            asyncio.gather(swap, batch, return_exceptions=True), WAIT_SECONDS
        )
    assert all(isinstance(r, ServiceUnavailable) for r in results), results
    assert all(r.__cause__ is not None for r in results)
    # Neither committed, and nothing of the batch is visible: the store answers as before.
    assert await store.get_many("p", [b"k", b"other"]) == {b"k": b"v1"}
    await store.set_if("p", b"k", b"v2", expect=b"v1")
    assert await store.get("p", b"k") == b"v2"


async def test_writes_under_random_connection_drops_stay_whole(
    store: PostgresMetadataStore,
) -> None:
    """Batches and compare-and-swaps race a killer: each is applied whole or not at all."""
    stop = asyncio.Event()
    killed = 0

    async def killer() -> None:
        nonlocal killed
        async with admin() as conn:
            for _ in range(200):
                if stop.is_set():
                    return
                cur = await conn.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                    " FROM pg_stat_activity WHERE application_name = %s", (store.schema,)
                )
                row = await cur.fetchone()
                killed += int(row[0]) if row else 0
                await asyncio.sleep(0.015)

    async def batch(n: int) -> str:
        ops = [Put("g", b"%04d-%02d" % (n, i), b"x" * 200) for i in range(20)]
        try:
            await store.write([Check("g", b"%04d-00" % n, ABSENT), *ops])
        except ServiceUnavailable:
            return "unknown"
        return "acked"

    async def increment() -> str:
        for _ in range(50):
            try:
                current = await store.get("c", b"n")
                new = b"%d" % (int(current or b"0") + 1)
                await store.set_if("c", b"n", new, expect=current if current else ABSENT)
                return "acked"
            except PreconditionFailed:
                continue
            except ServiceUnavailable as exc:
                if "may or may not" in str(exc):
                    return "unknown"
        return "gave up"

    task = asyncio.ensure_future(killer())
    try:
        outcomes = await asyncio.gather(*(batch(n) for n in range(150)))
        counts = await asyncio.gather(*(increment() for _ in range(150)))
    finally:
        stop.set()
        await task
    assert killed > 0
    rows = [k async for k, _ in store.scan("g")]
    groups: dict[bytes, int] = {}
    for key in rows:
        groups[key[:4]] = groups.get(key[:4], 0) + 1
    assert set(groups.values()) <= {20}, "a batch was applied in part"
    for n, outcome in enumerate(outcomes):
        if outcome == "acked":
            assert groups.get(b"%04d" % n) == 20
    total = int(await store.get("c", b"n") or b"0")
    acked, unknown = counts.count("acked"), counts.count("unknown")
    assert acked <= total <= acked + unknown
    await store.set("after", b"k", b"v")  # the store keeps serving
    assert await store.get("after", b"k") == b"v"


# Through `lake serve`: PUTs while the server's backends are terminated.


@pytest.fixture
def pg_server(tmp_path: Path) -> Iterator[Server]:
    with fresh_schema() as url, lake_serve(tmp_path / "data", metadata_url=url) as running:
        yield running


def s3_of(server: Server, attempts: int = 1) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"},
                      retries={"max_attempts": attempts, "mode": "standard"}),
    )


def test_puts_through_the_gateway_while_backends_are_terminated(pg_server: Server) -> None:
    assert pg_server.metadata_url is not None
    schema = pg_server.metadata_url.split("schema=")[1].split("&")[0]
    s3 = s3_of(pg_server)
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    stop = threading.Event()
    killed = [0]

    def killer() -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for _ in range(1000):
                if stop.wait(0.03):
                    return
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                    " FROM pg_stat_activity WHERE application_name = %s", (schema,)
                ).fetchone()
                killed[0] += int(row[0]) if row else 0

    def put(i: int) -> tuple[int, str]:
        key = f"main/k{i:04d}"
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=f"value {i}".encode())
        except ClientError as exc:
            response = exc.response
            status = response["ResponseMetadata"]["HTTPStatusCode"]
            assert status == 503, response
            assert response["Error"]["Code"] in ("ServiceUnavailable", "SlowDown"), response
            assert response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"), response
            return i, "503"
        return i, "ok"

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            outcomes = dict(pool.map(put, range(300)))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert killed[0] > 0
    fine = [i for i, outcome in outcomes.items() if outcome == "ok"]
    assert fine, "no PUT succeeded"
    # The server keeps serving: every acknowledged PUT reads back, through a fresh client too.
    reader = s3_of(pg_server, attempts=3)
    for i in fine:
        got = reader.get_object(Bucket=bucket, Key=f"main/k{i:04d}")["Body"].read()
        assert got == f"value {i}".encode()
    listed = {
        o["Key"] for page in reader.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="main/") for o in page.get("Contents", [])
    }
    assert {f"main/k{i:04d}" for i in fine} <= listed
    assert listed <= {f"main/k{i:04d}" for i in outcomes}  # a 503 may have landed, nothing else
    reader.put_object(Bucket=bucket, Key="main/after", Body=b"later")
    assert reader.get_object(Bucket=bucket, Key="main/after")["Body"].read() == b"later"
