"""Shared fixtures: metadata stores (every adapter), block stores on disk, and a Graveler."""

from __future__ import annotations

import contextlib
import functools
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from lakeproxy.blockstore import S3Settings
from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.graveler import Graveler
from lakeproxy.metastore.base import MetadataStore
from lakeproxy.metastore.memory import MemoryMetadataStore
from lakeproxy.metastore.postgres import PostgresMetadataStore
from lakeproxy.metastore.sqlite import SqliteMetadataStore
from tests.s3server import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, REGION, moto_server

# The PostgreSQL server of the test run (trust auth); each test gets its own schema in it.
POSTGRES_URL = os.environ.get(
    "LAKE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

METASTORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_unreachable(url: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL at `url` cannot be used, or None when a connection works."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def require_postgres(reason: str | None, env: Mapping[str, str] | None = None) -> None:
    """Skip the test when PostgreSQL is unreachable (`reason`) — but fail it when CI is set.

    In CI a missing database must turn the run red, not quietly skip half of the suite.
    """
    if reason is None:
        return
    env = os.environ if env is None else env
    where = urllib.parse.urlsplit(POSTGRES_URL).netloc
    if env.get("CI"):
        pytest.fail(f"PostgreSQL at {where} is unreachable and CI is set: {reason}")
    pytest.skip(f"PostgreSQL at {where} is unreachable: {reason}")


@functools.cache
def _postgres_reason() -> str | None:
    return postgres_unreachable()


def with_params(url: str, **params: str) -> str:
    """`url` with query parameters added (or replaced)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def drop_schema(schema: str, url: str = POSTGRES_URL) -> None:
    """Drop a schema and everything in it, after ending the sessions still using it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (schema,),
        )
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def fresh_schema(**params: str) -> Iterator[str]:
    """A metadata URL naming a new, randomly named schema; dropped when the block ends.

    The schema's name is also the connections' application name, so a test can find (and
    terminate) exactly the backends of its own stores.
    """
    require_postgres(_postgres_reason())
    schema = f"lpt_{uuid.uuid4().hex[:16]}"
    try:
        yield with_params(POSTGRES_URL, schema=schema, application_name=schema, **params)
    finally:
        drop_schema(schema)


@pytest.fixture
def postgres_metadata_url() -> Iterator[str]:
    """A metadata URL for one test: a fresh schema, small pools, dropped at teardown."""
    with fresh_schema(pool_min="1", pool_max="4") as url:
        yield url


async def open_metastore(kind: str, tmp_path: Path, url: str | None = None) -> MetadataStore:
    if kind == "memory":
        return MemoryMetadataStore()
    if kind == "sqlite":
        return await SqliteMetadataStore.open(tmp_path / "metadata.db", synchronous="NORMAL")
    if kind == "postgres":
        assert url is not None, "a PostgreSQL store needs a metadata URL"
        return await PostgresMetadataStore.open(url)
    raise ValueError(kind)


@pytest.fixture(params=METASTORES)
async def metastore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[
    MetadataStore
]:
    url = request.getfixturevalue("postgres_metadata_url") if request.param == "postgres" else None
    store = await open_metastore(request.param, tmp_path, url)
    yield store
    await store.close()


@pytest.fixture
async def graveler(metastore: MetadataStore, tmp_path: Path) -> AsyncIterator[Graveler]:
    g = Graveler(metastore, BlockStores(tmp_path / "blocks"))
    yield g
    await g.blocks.close()
    if g.workers is not None:
        await g.workers.close()


@pytest.fixture
async def repo(graveler: Graveler) -> str:
    await graveler.create_repository("repo1")
    return "repo1"


async def body(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def put(g: Graveler, repo: str, branch: str, key: str, data: bytes = b"x") -> None:
    """Upload `data` at `key`."""
    await g.put_object(repo, branch, key, body(data))


async def read(g: Graveler, repo: str, ref: str, key: str) -> bytes:
    entry = await g.get_entry(repo, ref, key)
    return b"".join([c async for c in g.open_object(repo, entry)])


async def keys(g: Graveler, repo: str, ref: str, prefix: str = "") -> list[str]:
    return [k async for k, _ in g.iter_entries(repo, ref, prefix=prefix)]


def files_under(root: Path) -> Iterable[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# An S3 endpoint (moto's server mode) for the S3 block store, and a fresh bucket per test.


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server shared by the whole session."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_settings(s3_endpoint: str) -> S3Settings:
    """Settings reaching the moto server with fake credentials."""
    return S3Settings(
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=FAKE_ACCESS_KEY_ID,
        secret_access_key=FAKE_SECRET_ACCESS_KEY,
    )


@pytest.fixture(scope="session")
def s3_admin(s3_settings: S3Settings) -> Iterator[Any]:
    """A plain boto3 client of the moto server, to arrange and inspect buckets."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_settings.endpoint_url,
        region_name=s3_settings.region,
        aws_access_key_id=s3_settings.access_key_id,
        aws_secret_access_key=s3_settings.secret_access_key,
    )
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_admin: Any) -> str:
    """A new, empty bucket on the moto server."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_admin.create_bucket(Bucket=name)
    return name
