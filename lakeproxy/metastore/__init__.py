"""Metadata store adapters, and `open_metastore`, which picks one from a URL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lakeproxy.errors import InvalidArgument
from lakeproxy.metastore.base import MetadataStore

SQLITE_FILE = "metadata.db"


async def open_metastore(
    url: str | None,
    data_dir: str | os.PathLike[str],
    *,
    sqlite_synchronous: str = "FULL",
) -> MetadataStore:
    """Open the metadata store named by `url`.

    Args:
        url: ``postgresql://…`` or ``postgres://…`` for PostgreSQL (``schema=NAME`` or
            ``options=-csearch_path%3DNAME`` picks the schema, created when missing); None
            for the embedded SQLite store in `data_dir`.
        data_dir: The data directory (created when missing) of the embedded store.
        sqlite_synchronous: SQLite's durability mode, for the embedded store.

    Raises:
        InvalidArgument: `url` names no store lakeproxy knows, or is malformed.
        ServiceUnavailable: The PostgreSQL server cannot be reached.
        StorageError: The store cannot be opened.
    """
    if url is None:
        from lakeproxy.metastore.sqlite import SqliteMetadataStore

        directory = Path(data_dir)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        return await SqliteMetadataStore.open(
            directory / SQLITE_FILE, synchronous=sqlite_synchronous
        )
    from lakeproxy.metastore.pg_url import is_postgres_url

    if is_postgres_url(url):
        from lakeproxy.metastore.postgres import PostgresMetadataStore

        return await PostgresMetadataStore.open(url)
    raise InvalidArgument(
        "unsupported metadata store URL: use postgresql://USER@HOST:PORT/DATABASE "
        "(or leave it unset for the embedded SQLite store in the data directory)"
    )


async def open_by_spec(spec: tuple[str, ...]) -> MetadataStore:
    """Open, in another process, the store whose `reopen_spec` is `spec`.

    Raises:
        InvalidArgument: `spec` names no store lakeproxy knows.
    """
    match spec:
        case ("sqlite", path, synchronous):
            from lakeproxy.metastore.sqlite import SqliteMetadataStore

            return await SqliteMetadataStore.open(path, synchronous=synchronous)
        case ("postgres", url):
            from lakeproxy.metastore.postgres import PostgresMetadataStore

            return await PostgresMetadataStore.open(url)
    raise InvalidArgument(f"unknown metadata store: {spec[:1]!r}")
