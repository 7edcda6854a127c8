"""Composition root of the versioning core: picks the metadata and block store adapters."""

from __future__ import annotations

import asyncio

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.config import Settings
from lakeproxy.errors import InvalidArgument
from lakeproxy.graveler import Graveler
from lakeproxy.metastore.sqlite import SqliteMetadataStore


async def open_graveler(settings: Settings) -> Graveler:
    """Open the stores named by `settings` and the Graveler over them; close it when done."""
    if settings.metadata_url is not None:
        raise InvalidArgument(
            f"unsupported metadata store {settings.metadata_url!r}: only the embedded SQLite "
            "store (no metadata URL) is available in this version"
        )
    await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
    store = await SqliteMetadataStore.open(
        settings.data_dir / "metadata.db", synchronous=settings.sqlite_synchronous
    )
    blocks = BlockStores(
        settings.data_dir / "blocks",
        s3=settings.s3,
        default_s3_namespace=settings.default_namespace,
    )
    return Graveler(store, blocks)
