"""The block store port: bytes at physical paths inside one storage namespace.

A `BlockStore` is bound to a repository's storage namespace (a folder of the local data
directory, or a bucket and prefix on S3); paths are relative to it and use "/" separators.
Physical objects are written once under unique paths and never overwritten in place.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BlockStat:
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class PartInfo:
    part_number: int
    size: int


class BlockStore(Protocol):
    """Object bytes of one storage namespace."""

    namespace: str

    async def put(
        self, path: str, chunks: AsyncIterable[bytes], *, fresh: bool = False
    ) -> int:
        """Store the concatenation of `chunks` at `path` and return its size.

        The object becomes readable only once every byte is durably stored; if the iterator
        raises or the call is cancelled, nothing is left at `path` and temporary data is removed.
        `fresh`: `path` is a new address of the caller's own that nothing reads before this
        call returns, so a store may write it in place instead of through a temporary copy
        (the durability and failure guarantees stay the same).
        """
        ...

    def get(self, path: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes [`start`, `end`) of the object (`end=None`: to the end).

        Raises ObjectNotFound when the object does not exist.
        """
        ...

    async def stat(self, path: str) -> BlockStat | None:
        """Size of the object at `path`, or None if there is none."""
        ...

    async def delete(self, path: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[BlockStat]:
        """Yield every object whose path starts with `prefix`, in path order."""
        ...

    async def create_multipart(self, path: str) -> str:
        """Start a multipart upload that will end up at `path`; returns its upload id."""
        ...

    async def put_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes],
        *, size: int | None = None,
    ) -> PartInfo:
        """Store one part (1..10000) of an upload; a part stored again replaces the previous one.

        `size`, when given, is the part's announced length: a body of another length fails
        with InvalidArgument.
        """
        ...

    async def complete_multipart(self, path: str, upload_id: str, parts: Sequence[int]) -> int:
        """Join the given parts, in the given order, into the object at `path`; returns its size.

        Raises UploadNotFound for an unknown upload id, InvalidArgument for a missing part.
        """
        ...

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        """Discard an upload and its parts; aborting an unknown upload is not an error."""
        ...

    def local_path(self, path: str) -> str | None:
        """The file system path of the object when it is a local file (for sendfile), else None."""
        ...

    async def close(self) -> None:
        """Release clients and connections."""
        ...


class BlockStoreProvider(Protocol):
    """Hands out the block store of a storage namespace (`local://NAME`, `s3://bucket/prefix`)."""

    def validate_namespace(self, namespace: str) -> str:
        """Check a namespace URI and return its normal form; raises InvalidArgument."""
        ...

    def default_namespace(self, repository: str) -> str:
        """The namespace a repository gets when its creator names none."""
        ...

    async def get(self, namespace: str) -> BlockStore:
        """The (shared, already open) block store of a namespace."""
        ...

    async def close(self) -> None:
        """Close every block store handed out."""
        ...
