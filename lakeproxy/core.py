"""Composition root of the versioning core: picks the metadata and block store adapters."""

from __future__ import annotations

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.config import Settings
from lakeproxy.graveler import Graveler
from lakeproxy.metastore import open_metastore


async def open_graveler(settings: Settings) -> Graveler:
    """Open the stores named by `settings` and the Graveler over them; close it when done.

    The metadata store is PostgreSQL when `settings.metadata_url` names one, else SQLite in
    the data directory; blocks of repositories with a local namespace live in the data
    directory either way.
    """
    store = await open_metastore(
        settings.metadata_url, settings.data_dir, sqlite_synchronous=settings.sqlite_synchronous
    )
    blocks = BlockStores(
        settings.data_dir / "blocks",
        s3=settings.s3,
        default_s3_namespace=settings.default_namespace,
    )
    return Graveler(
        store,
        blocks,
        encoded_cache_bytes=settings.range_cache_mb * 1024 * 1024,
        commit_workers=settings.commit_workers,
    )
