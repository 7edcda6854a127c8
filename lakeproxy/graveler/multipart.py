"""Multipart uploads: parts stored in the block store, their records in the metadata store.

Upload and part records live in the repository's metadata, so an upload started through one
server process can be continued and completed through another. Completing an upload joins the
parts inside the block store (a server-side concatenation or S3's own multipart completion);
the bytes never pass through Python again.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgpack
import xxhash

from lakeproxy.errors import (
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    UploadNotFound,
)
from lakeproxy.graveler.ids import validate_key, validate_metadata
from lakeproxy.graveler.model import DEFAULT_CONTENT_TYPE, Entry, Repository
from lakeproxy.graveler.objects import _Hasher, physical_path
from lakeproxy.graveler.refs import Partitions
from lakeproxy.metastore.base import Delete, DeleteRange

if TYPE_CHECKING:
    from lakeproxy.graveler.graveler import Graveler

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress."""

    upload_id: str
    branch: str
    key: str
    address: str
    block_upload_id: str
    created: float
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    checksum_algorithm: str | None = None

    def encode(self) -> bytes:
        return msgpack.packb([self.branch, self.key, self.address, self.block_upload_id,
                              self.created, self.content_type, dict(self.metadata),
                              self.checksum_algorithm])

    @classmethod
    def decode(cls, upload_id: str, raw: bytes) -> Upload:
        branch, key, address, block_id, created, ctype, meta, algo = msgpack.unpackb(raw)
        return cls(upload_id, branch, key, address, block_id, created, ctype, meta, algo)


@dataclass(frozen=True, slots=True)
class Part:
    """One stored part: its number, MD5 ETag, size, content hash and client checksums."""

    number: int
    etag: str
    size: int
    xxh3: str
    last_modified: float
    checksums: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return msgpack.packb([self.etag, self.size, self.xxh3, self.last_modified,
                              dict(self.checksums)])

    @classmethod
    def decode(cls, number: int, raw: bytes) -> Part:
        etag, size, xxh3, mtime, sums = msgpack.unpackb(raw)
        return cls(number, etag, size, xxh3, mtime, sums)


def _part_key(upload_id: str, number: int) -> bytes:
    return f"{upload_id}/{number:05d}".encode()


class MultipartMixin:
    """Create, fill, list, complete and abort multipart uploads."""

    async def create_upload(
        self: Graveler,
        repo_name: str,
        branch: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        checksum_algorithm: str | None = None,
    ) -> Upload:
        """Start an upload that will become `key` on `branch` once completed."""
        validate_key(key)
        meta = validate_metadata(dict(metadata or {}), "user metadata")
        repo = await self.refs.get_repository(repo_name)
        await self._writable_branch(repo, branch)
        blocks = await self.blocks.get(repo.storage_namespace)
        address = physical_path()
        block_upload_id = await blocks.create_multipart(address)
        upload = Upload(uuid.uuid4().hex, branch, key, address, block_upload_id, time.time(),
                        content_type or DEFAULT_CONTENT_TYPE, meta, checksum_algorithm)
        await self.store.set(Partitions.of(repo).uploads, upload.upload_id.encode(),
                             upload.encode())
        return upload

    async def get_upload(self: Graveler, repo_name: str, upload_id: str) -> Upload:
        repo = await self.refs.get_repository(repo_name)
        return await self._upload(repo, upload_id)

    async def _upload(self: Graveler, repo: Repository, upload_id: str) -> Upload:
        raw = None
        if upload_id and "/" not in upload_id:
            raw = await self.store.get(Partitions.of(repo).uploads, upload_id.encode())
        if raw is None:
            raise UploadNotFound(
                "The specified upload does not exist: it was never started, or it was "
                "completed or aborted", repository=repo.name, upload_id=upload_id,
            )
        return Upload.decode(upload_id, raw)

    async def upload_part(
        self: Graveler,
        repo_name: str,
        upload_id: str,
        number: int,
        chunks: AsyncIterable[bytes],
        *,
        checksums: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        size: int | None = None,
    ) -> Part:
        """Store part `number` (1..10000) of an upload; uploading a number again replaces it.

        `checksums` (client-supplied checksums to keep with the part) may be a function,
        called once the bytes are in, for checksums that arrive after the body (aws-chunked
        trailers). `size` is the announced length of the part, when known: a body of another
        length fails.
        """
        if not 1 <= number <= MAX_PARTS:
            raise InvalidArgument(f"part number must be between 1 and {MAX_PARTS}")
        repo = await self.refs.get_repository(repo_name)
        upload = await self._upload(repo, upload_id)
        blocks = await self.blocks.get(repo.storage_namespace)
        hasher = _Hasher(chunks)
        await blocks.put_part(upload.address, upload.block_upload_id, number, hasher, size=size)
        part = Part(number, hasher.md5.hexdigest(), hasher.size, hasher.xxh.hexdigest(),
                    time.time(),
                    dict((checksums() if callable(checksums) else checksums) or {}))
        await self.store.set(Partitions.of(repo).uploads, _part_key(upload_id, number),
                             part.encode())
        return part

    async def list_parts(
        self: Graveler, repo_name: str, upload_id: str, *, after: int = 0, limit: int = 1000
    ) -> tuple[Upload, list[Part], bool]:
        """Parts of an upload in number order after `after`; and whether more follow."""
        repo = await self.refs.get_repository(repo_name)
        upload = await self._upload(repo, upload_id)
        parts: list[Part] = []
        async for k, v in self.store.scan(
            Partitions.of(repo).uploads, prefix=f"{upload_id}/".encode(),
            after=_part_key(upload_id, after), limit=limit + 1,
        ):
            parts.append(Part.decode(int(k.rsplit(b"/", 1)[1]), v))
        return upload, parts[:limit], len(parts) > limit

    async def list_uploads(
        self: Graveler, repo_name: str, *, after: str = "", limit: int = 1000
    ) -> tuple[list[Upload], bool]:
        """Uploads in progress, ordered by upload id."""
        repo = await self.refs.get_repository(repo_name)
        uploads: list[Upload] = []
        async for k, v in self.store.scan(
            Partitions.of(repo).uploads, after=after.encode() + b"/\xff" if after else None
        ):
            if b"/" in k:
                continue
            if len(uploads) == limit:
                return uploads, True
            uploads.append(Upload.decode(k.decode(), v))
        return uploads, False

    async def complete_upload(
        self: Graveler,
        repo_name: str,
        upload_id: str,
        parts: Sequence[tuple[int, str]],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        min_part_size: int = MIN_PART_SIZE,
    ) -> Entry:
        """Join the listed (number, ETag) parts into the upload's object and stage it.

        Parts must be listed in ascending order, match the stored ETags, and all but the last
        be at least `min_part_size` bytes. The object's ETag is the MD5 of the parts' MD5s
        followed by `-N`.
        """
        repo = await self.refs.get_repository(repo_name)
        upload = await self._upload(repo, upload_id)
        if not parts:
            raise InvalidArgument("a multipart upload must be completed with at least one part")
        numbers = [n for n, _ in parts]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            raise InvalidPartOrder(
                "The list of parts was not in ascending order: parts must be ordered by part "
                "number", upload_id=upload_id,
            )
        part_keys = [_part_key(upload_id, n) for n in numbers]
        found = await self.store.get_many(Partitions.of(repo).uploads, part_keys)
        stored: list[Part] = []
        for (number, etag), pk in zip(parts, part_keys, strict=True):
            raw = found.get(pk)
            part = Part.decode(number, raw) if raw is not None else None
            if part is None or etag.strip().strip('"') != part.etag:
                raise InvalidPart(
                    f"part {number} was not uploaded or its ETag is not {etag!r}",
                    upload_id=upload_id,
                )
            stored.append(part)
        for part in stored[:-1]:
            if part.size < min_part_size:
                raise EntityTooSmall(
                    f"part {part.number} is {part.size} bytes: every part but the last must be "
                    f"at least {min_part_size} bytes", upload_id=upload_id,
                )
        blocks = await self.blocks.get(repo.storage_namespace)
        size = await blocks.complete_multipart(upload.address, upload.block_upload_id, numbers)
        md5s = b"".join(bytes.fromhex(p.etag) for p in stored)
        suffix = f"-{len(stored)}"
        entry = Entry(
            upload.address, size, hashlib.md5(md5s, usedforsecurity=False).hexdigest() + suffix,
            xxhash.xxh3_128_hexdigest(b"".join(bytes.fromhex(p.xxh3) for p in stored)) + suffix,
            time.time(), upload.content_type, upload.metadata,
            _composite_checksums(stored, upload.checksum_algorithm),
        )
        await self._stage(repo, upload.branch, validate_key(upload.key), entry.encode(),
                          expect_etag=if_match, expect_absent=if_none_match)
        await self._forget_upload(repo, upload_id)
        return entry

    async def abort_upload(self: Graveler, repo_name: str, upload_id: str) -> None:
        """Discard an upload and its parts."""
        repo = await self.refs.get_repository(repo_name)
        upload = await self._upload(repo, upload_id)
        blocks = await self.blocks.get(repo.storage_namespace)
        await blocks.abort_multipart(upload.address, upload.block_upload_id)
        await self._forget_upload(repo, upload_id)

    async def _forget_upload(self: Graveler, repo: Repository, upload_id: str) -> None:
        part = Partitions.of(repo).uploads
        prefix = f"{upload_id}/".encode()
        await self.store.write([
            Delete(part, upload_id.encode()),
            DeleteRange(part, prefix, prefix[:-1] + b"0"),
        ])


def _composite_checksums(parts: list[Part], algorithm: str | None) -> dict[str, str]:
    """S3-style composite checksum (checksum of the parts' checksums, `-N`), when every part
    carried one of the upload's algorithm."""
    if not algorithm:
        return {}
    import base64

    from lakeproxy.checksums import digest

    name = algorithm.lower()
    raw_parts = []
    for part in parts:
        value = part.checksums.get(name)
        if value is None:
            return {}
        raw_parts.append(base64.b64decode(value))
    combined = digest(name, b"".join(raw_parts))
    return {name: base64.b64encode(combined).decode() + f"-{len(parts)}"}
