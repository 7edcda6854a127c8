"""Ordered scans by keyset pagination, shared by the SQL metadata stores.

A store supplies one query — "the first `count` keys of the partition from `lower` (inclusive
or not), below `upper`" — and gets `scan_batches`'s whole contract from `keyset_batches`: the
bounds from start/after/prefix, the limit, and the next batch read ahead while the caller works
on the current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

from lakeproxy.errors import InvalidArgument

Rows = list[tuple[bytes, bytes]]
# read(lower, inclusive, upper, count) -> up to `count` rows in key order
BatchQuery = Callable[[bytes, bool, bytes | None, int], Awaitable[Rows]]


def prefix_end(prefix: bytes) -> bytes | None:
    """Return the smallest key greater than every key that starts with `prefix`.

    Trailing 0xff bytes cannot be incremented, so they are dropped first; None means there is
    no such key (the prefix is empty or all 0xff) and the range is unbounded above.
    """
    stem = prefix.rstrip(b"\xff")
    if not stem:
        return None
    return stem[:-1] + bytes([stem[-1] + 1])


async def keyset_batches(
    read: BatchQuery,
    *,
    start: bytes,
    after: bytes | None,
    prefix: bytes,
    limit: int | None,
    batch_size: int,
) -> AsyncIterator[Rows]:
    """Batches of the keys >= `start`, > `after` (when given) that begin with `prefix`, at most
    `limit` keys in all; each batch is one `read`, and the next is read ahead.

    Raises:
        InvalidArgument: `batch_size` is less than 1.
    """
    if batch_size < 1:
        raise InvalidArgument("batch_size must be at least 1")
    lower, inclusive = max(start, prefix), True
    if after is not None and after >= lower:
        lower, inclusive = after, False
    upper = prefix_end(prefix)
    remaining = limit
    ahead: asyncio.Future[Rows] | None = None
    try:
        while remaining is None or remaining > 0:
            count = batch_size if remaining is None else min(batch_size, remaining)
            if ahead is not None:
                rows = await ahead
                ahead = None
            else:
                rows = await read(lower, inclusive, upper, count)
            if not rows:
                return
            if remaining is not None:
                remaining -= len(rows)
            lower, inclusive = rows[-1][0], False
            if len(rows) == count and (remaining is None or remaining > 0):
                nxt = batch_size if remaining is None else min(batch_size, remaining)
                ahead = asyncio.ensure_future(read(lower, inclusive, upper, nxt))
            yield rows
            if len(rows) < count:
                return
    finally:
        if ahead is not None:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ahead


class KeysetScans:
    """`scan` and `scan_batches` of the MetadataStore port, for a store that answers one keyset
    query, `_keyset_read(partition, lower, inclusive, upper, count)`."""

    def _keyset_read(
        self, partition: str, lower: bytes, inclusive: bool, upper: bytes | None, count: int
    ) -> Awaitable[Rows]:
        raise NotImplementedError

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
        """Yield (key, value) pairs of `partition` in ascending bytewise key order.

        Yields keys that are >= `start`, > `after` (when given) and begin with `prefix`, at
        most `limit` of them. Each batch of `batch_size` rows is one query (keyset pagination)
        and a consistent snapshot; no cursor or transaction stays open between batches.

        Raises:
            InvalidArgument: `batch_size` is less than 1.
        """
        async for rows in self.scan_batches(
            partition, start=start, after=after, prefix=prefix, limit=limit,
            batch_size=batch_size,
        ):
            for row in rows:
                yield row

    def scan_batches(
        self,
        partition: str,
        *,
        start: bytes = b"",
        after: bytes | None = None,
        prefix: bytes = b"",
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[Rows]:
        """Like `scan`, a batch (one query) at a time; the next batch is read ahead while the
        caller works on the current one."""
        return keyset_batches(
            functools.partial(self._keyset_read, partition), start=start, after=after,
            prefix=prefix, limit=limit, batch_size=batch_size,
        )
