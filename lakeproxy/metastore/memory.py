"""An in-process metadata store: the reference behaviour of the port, used by fast tests."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Iterable, Sequence

from lakeproxy.errors import InvalidArgument, PreconditionFailed
from lakeproxy.metastore.base import ABSENT, Check, Delete, DeleteRange, Expect, Op, Put


class _Partition:
    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.values: dict[bytes, bytes] = {}

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.values:
            bisect.insort(self.keys, key)
        self.values[key] = value

    def delete(self, key: bytes) -> None:
        if self.values.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]

    def delete_range(self, start: bytes, end: bytes | None) -> None:
        lo = bisect.bisect_left(self.keys, start)
        hi = len(self.keys) if end is None else bisect.bisect_left(self.keys, end)
        for key in self.keys[lo:hi]:
            del self.values[key]
        del self.keys[lo:hi]


class MemoryMetadataStore:
    """Keeps everything in dictionaries and sorted lists; nothing survives the process."""

    def __init__(self) -> None:
        self._parts: dict[str, _Partition] = {}

    def _part(self, partition: str) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        return part

    async def get(self, partition: str, key: bytes) -> bytes | None:
        part = self._parts.get(partition)
        return None if part is None else part.values.get(key)

    async def get_many(self, partition: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        part = self._parts.get(partition)
        if part is None:
            return {}
        return {k: part.values[k] for k in keys if k in part.values}

    async def get_multi(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        parts = self._parts
        return [
            None if (part := parts.get(partition)) is None else part.values.get(key)
            for partition, key in items
        ]

    async def set(self, partition: str, key: bytes, value: bytes) -> None:
        self._part(partition).put(key, value)

    async def set_if(self, partition: str, key: bytes, value: bytes, *, expect: Expect) -> None:
        await self.write([Check(partition, key, expect), Put(partition, key, value)])

    async def delete(self, partition: str, key: bytes) -> None:
        self._part(partition).delete(key)

    async def write(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if not isinstance(op, Put | Delete | DeleteRange | Check):
                raise TypeError(f"not a metadata store operation: {op!r}")
        for op in ops:
            if isinstance(op, Check):
                current = await self.get(op.partition, op.key)
                if (current is not None) if op.expect is ABSENT else (current != op.expect):
                    raise PreconditionFailed(
                        "the record changed since it was read", partition=op.partition, key=op.key
                    )
        for op in ops:
            if isinstance(op, Put):
                self._part(op.partition).put(op.key, op.value)
            elif isinstance(op, Delete):
                self._part(op.partition).delete(op.key)
            elif isinstance(op, DeleteRange):
                self._part(op.partition).delete_range(op.start, op.end)

    async def put_many(self, partition: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        # Materialized first so that a source failing midway writes nothing, as a transaction.
        rows = list(items)
        part = self._part(partition)
        for key, value in rows:
            part.put(key, value)

    async def scan(
        self,
        partition: str,
        *,
        start: bytes = b"",
        after: bytes | None = None,
        prefix: bytes = b"",
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        if batch_size < 1:
            raise InvalidArgument("batch_size must be at least 1")
        part = self._parts.get(partition)
        if part is None:
            return
        lower = max(start, prefix)
        yielded = 0
        while limit is None or yielded < limit:
            if after is not None and after >= lower:
                pos = bisect.bisect_right(part.keys, after)
            else:
                pos = bisect.bisect_left(part.keys, lower)
            if pos >= len(part.keys):
                return
            key = part.keys[pos]
            if not key.startswith(prefix):
                return
            yield key, part.values[key]
            yielded += 1
            after = key
            if yielded % batch_size == 0:
                await asyncio.sleep(0)

    async def scan_batches(
        self,
        partition: str,
        *,
        start: bytes = b"",
        after: bytes | None = None,
        prefix: bytes = b"",
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        batch: list[tuple[bytes, bytes]] = []
        async for row in self.scan(
            partition, start=start, after=after, prefix=prefix, limit=limit,
            batch_size=batch_size,
        ):
            batch.append(row)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def close(self) -> None:
        self._parts.clear()
