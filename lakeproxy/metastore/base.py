"""The metadata store port: an ordered key-value store with partitions.

The versioning core keeps everything it knows (repositories, branches, tags, commits, ranges and
staged entries) in a `MetadataStore`. Keys are bytes and are ordered bytewise inside a partition;
values are opaque bytes. SQL and its dialects never leak past an implementation of this port.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias


class Absent(enum.Enum):
    """Sentinel for "the key must not exist" in conditional writes."""

    ABSENT = "absent"


ABSENT = Absent.ABSENT
Expect: TypeAlias = bytes | Absent


LARGE_VALUES_SUFFIX = "/n"
"""A partition whose name ends with this holds large, write-once values (the core's tree
nodes, several KiB each). A store may keep such partitions apart from the small rows: the
SQLite store keeps them in a rowid table, where values of many KiB read several times and
write about twice as fast as in the key-clustered table that suits small rows."""


def holds_large_values(partition: str) -> bool:
    return partition.endswith(LARGE_VALUES_SUFFIX)


@dataclass(frozen=True, slots=True)
class Put:
    """Write `value` at (`partition`, `key`), replacing what is there."""

    partition: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove (`partition`, `key`); removing a missing key is not an error."""

    partition: str
    key: bytes


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Remove every key of `partition` in [`start`, `end`); `end=None` means to the end."""

    partition: str
    start: bytes = b""
    end: bytes | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """Precondition: (`partition`, `key`) currently holds `expect` (or is absent for ABSENT)."""

    partition: str
    key: bytes
    expect: Expect


Op: TypeAlias = Put | Delete | DeleteRange | Check


class MetadataStore(Protocol):
    """An ordered, transactional key-value store shared by every lakeproxy process.

    Every method is safe to call concurrently from many coroutines, and (for stores that are
    shared between processes) from many processes. Writes are durable when the call returns.
    """

    async def get(self, partition: str, key: bytes) -> bytes | None:
        """Return the value at (`partition`, `key`), or None when there is none."""
        ...

    async def get_many(self, partition: str, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """Return the values of the given keys that exist; missing keys are left out."""
        ...

    async def get_multi(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Return the value at each (partition, key) of `items`, in order; None where there is
        none.

        All values are read from one consistent snapshot, whatever their partitions: records
        that must agree with each other (a branch record and the staging rows of its tokens)
        are read together, in one round trip to a shared store.
        """
        ...

    async def set(self, partition: str, key: bytes, value: bytes) -> None:
        """Write a value unconditionally."""
        ...

    async def set_if(self, partition: str, key: bytes, value: bytes, *, expect: Expect) -> None:
        """Write iff the current value equals `expect` (or the key is absent, for ABSENT).

        Atomic per key. Raises PreconditionFailed when the current value differs.
        """
        ...

    async def delete(self, partition: str, key: bytes) -> None:
        """Delete a key; deleting a missing key is not an error."""
        ...

    async def write(self, ops: Sequence[Op]) -> None:
        """Apply `ops` atomically, in order: all of them or none.

        Every `Check` is evaluated against the state before the batch. Raises
        PreconditionFailed (and writes nothing) when any check fails.
        """
        ...

    async def put_many(self, partition: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Write many values into one partition in one transaction (bulk load)."""
        ...

    def scan(
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

        Yields only keys that are >= `start`, > `after` (when given) and begin with `prefix`:
        all three bounds apply together. Rows are fetched `batch_size` at a time; each batch
        is a consistent read, but writes between batches may or may not be seen.
        """
        ...

    def scan_batches(
        self,
        partition: str,
        *,
        start: bytes = b"",
        after: bytes | None = None,
        prefix: bytes = b"",
        limit: int | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[list[tuple[bytes, bytes]]]:
        """Exactly the rows `scan` yields, as non-empty lists of up to `batch_size` rows."""
        ...

    async def close(self) -> None:
        """Release connections and threads. The store is unusable afterwards."""
        ...
