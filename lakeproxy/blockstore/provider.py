"""One shared, lazily opened block store per storage namespace."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lakeproxy.blockstore import S3Settings, open_block_store, parse_namespace
from lakeproxy.blockstore.base import BlockStore


class BlockStores:
    """The `BlockStoreProvider` of a server: local namespaces live under `local_root`.

    Args:
        local_root: the folder `local://NAME` namespaces are folders of.
        s3: how to reach S3 for `s3://` namespaces.
        default_s3_namespace: when set (`s3://bucket/prefix`), repositories created without a
            namespace get `<default>/<repository>`; otherwise `local://<repository>`.
    """

    def __init__(
        self,
        local_root: Path,
        *,
        s3: S3Settings | None = None,
        default_s3_namespace: str | None = None,
    ) -> None:
        self.local_root = Path(local_root)
        self.s3 = s3
        self.default_s3_namespace = default_s3_namespace
        self._open: dict[str, BlockStore] = {}
        self._lock = asyncio.Lock()

    def validate_namespace(self, namespace: str) -> str:
        scheme, location = parse_namespace(namespace)
        return f"{scheme}://{location}"

    def default_namespace(self, repository: str) -> str:
        if self.default_s3_namespace:
            return f"{self.default_s3_namespace.rstrip('/')}/{repository}"
        return f"local://{repository}"

    async def get(self, namespace: str) -> BlockStore:
        store = self._open.get(namespace)
        if store is not None:
            return store
        async with self._lock:
            store = self._open.get(namespace)
            if store is None:
                store = await open_block_store(
                    namespace, local_root=self.local_root, s3=self.s3
                )
                self._open[namespace] = store
            return store

    async def close(self) -> None:
        stores, self._open = list(self._open.values()), {}
        for store in stores:
            await store.close()
