"""Value types of the versioning core: entries, commits, branches, tags, repositories, diffs.

Entries travel through the core as their encoded bytes (staging rows and ranges store exactly
these bytes), so commits, diffs and merges never decode an entry they don't have to. The first
eight bytes of an encoded entry are its *identity*: a hash of what a reader can observe (size,
ETag, content type, user metadata), not of where the bytes live. Two entries with the same
identity are the same object for diff and merge, so re-uploading identical bytes is no change.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack
import xxhash

IDENTITY_BYTES = 8
TOMBSTONE = b""
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def entry_identity(
    size: int, etag: str, content_type: str, metadata: Mapping[str, str]
) -> bytes:
    """The identity hash of an entry's observable content."""
    canonical = msgpack.packb([size, etag, content_type, sorted(metadata.items())])
    return xxhash.xxh3_64_digest(canonical)


@dataclass(frozen=True, slots=True)
class Entry:
    """What a key points to: a physical object and what S3 says about it."""

    address: str
    size: int
    etag: str
    checksum: str
    last_modified: float = field(default_factory=time.time)
    content_type: str = DEFAULT_CONTENT_TYPE
    metadata: Mapping[str, str] = field(default_factory=dict)
    checksums: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> bytes:
        return entry_identity(self.size, self.etag, self.content_type, self.metadata)

    def encode(self) -> bytes:
        """Identity prefix + msgpack body: the form stored in staging rows and ranges.

        Hex digests and lakeproxy's own physical addresses are stored as raw bytes, which
        makes ranges (and so every commit, diff and merge) about a third smaller.
        """
        body = msgpack.packb(
            [
                _pack_address(self.address),
                self.size,
                _pack_hex(self.etag),
                _pack_hex(self.checksum),
                self.last_modified,
                self.content_type,
                dict(self.metadata) or None,
                dict(self.checksums) or None,
            ]
        )
        return self.identity + body

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        address, size, etag, checksum, mtime, ctype, meta, sums = msgpack.unpackb(
            raw[IDENTITY_BYTES:]
        )
        return cls(
            _unpack_address(address), size, _unpack_hex(etag), _unpack_hex(checksum), mtime,
            ctype, meta or {}, sums or {},
        )


_HEX = re.compile(r"[0-9a-f]{32}")
_OWN_ADDRESS = re.compile(r"data/([0-9]{10})/([0-9a-f]{32})")


def _pack_hex(text: str) -> str | bytes:
    return bytes.fromhex(text) if _HEX.fullmatch(text) else text


def _unpack_hex(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _pack_address(address: str) -> str | bytes:
    m = _OWN_ADDRESS.fullmatch(address)
    if m is None:
        return address
    return int(m.group(1)).to_bytes(5, "big") + bytes.fromhex(m.group(2))


def _unpack_address(value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    return f"data/{int.from_bytes(value[:5], 'big'):010d}/{value[5:].hex()}"


def same_identity(a: bytes, b: bytes) -> bool:
    """Whether two encoded entries (neither a tombstone) are the same object."""
    return a[:IDENTITY_BYTES] == b[:IDENTITY_BYTES]


@dataclass(frozen=True, slots=True)
class Commit:
    """An immutable snapshot: a metarange plus who, when, why and its parents."""

    id: str
    parents: tuple[str, ...]
    metarange_id: str
    message: str
    committer: str
    creation_date: float
    metadata: Mapping[str, str]
    generation: int

    @staticmethod
    def encode_fields(
        parents: tuple[str, ...],
        metarange_id: str,
        message: str,
        committer: str,
        creation_date: float,
        metadata: Mapping[str, str],
        generation: int,
    ) -> bytes:
        return msgpack.packb(
            [list(parents), metarange_id, message, committer, creation_date,
             sorted(metadata.items()), generation]
        )

    @classmethod
    def create(
        cls,
        parents: tuple[str, ...],
        metarange_id: str,
        message: str,
        committer: str,
        metadata: Mapping[str, str],
        generation: int,
        creation_date: float | None = None,
    ) -> tuple[Commit, bytes]:
        """Build a commit and its canonical bytes; the id is the xxh3-128 of those bytes."""
        when = time.time() if creation_date is None else creation_date
        raw = cls.encode_fields(
            parents, metarange_id, message, committer, when, metadata, generation
        )
        commit = cls(
            xxhash.xxh3_128_hexdigest(raw), parents, metarange_id, message, committer,
            when, dict(metadata), generation,
        )
        return commit, raw

    @classmethod
    def decode(cls, commit_id: str, raw: bytes) -> Commit:
        parents, mr, message, committer, when, meta, gen = msgpack.unpackb(raw)
        return cls(commit_id, tuple(parents), mr, message, committer, when, dict(meta), gen)


@dataclass(frozen=True, slots=True)
class Branch:
    """A movable pointer to a commit, with its uncommitted changes.

    `staging_token` receives new writes. `sealed_tokens` (newest first) hold changes that a
    commit is applying right now, or that a commit interrupted by a crash left behind; reads
    see them, and the next commit applies them.
    """

    name: str
    head: str
    staging_token: bytes
    sealed_tokens: tuple[bytes, ...] = ()
    protected: bool = False

    def encode(self) -> bytes:
        return msgpack.packb(
            [self.head, self.staging_token, list(self.sealed_tokens), self.protected]
        )

    @classmethod
    def decode(cls, name: str, raw: bytes) -> Branch:
        head, token, sealed, protected = msgpack.unpackb(raw)
        return cls(name, head, token, tuple(sealed), protected)

    @property
    def tokens(self) -> tuple[bytes, ...]:
        """Every staging token a read must consult, newest first."""
        return (self.staging_token, *self.sealed_tokens)


@dataclass(frozen=True, slots=True)
class Repository:
    name: str
    uid: str
    storage_namespace: str
    default_branch: str
    creation_date: float

    def encode(self) -> bytes:
        return msgpack.packb(
            [self.uid, self.storage_namespace, self.default_branch, self.creation_date]
        )

    @classmethod
    def decode(cls, name: str, raw: bytes) -> Repository:
        uid, ns, default_branch, created = msgpack.unpackb(raw)
        return cls(name, uid, ns, default_branch, created)


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    commit_id: str


class RefKind(enum.Enum):
    BRANCH = "branch"
    TAG = "tag"
    COMMIT = "commit"


@dataclass(frozen=True, slots=True)
class ResolvedRef:
    """What a ref expression names.

    `branch` is set when the expression starts with a branch name; reads see the branch's
    uncommitted changes only when `include_staging` (a plain branch name, not `main@`).
    """

    kind: RefKind
    commit_id: str
    branch: Branch | None = None
    include_staging: bool = False


class DiffType(enum.Enum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Change:
    """One key that differs between two snapshots."""

    key: str
    type: DiffType
    left: Entry | None
    right: Entry | None


class MergeStrategy(enum.Enum):
    """How a merge resolves keys changed differently on both sides."""

    FAIL = "fail"
    SOURCE_WINS = "source-wins"
    DEST_WINS = "dest-wins"


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a listing: entries, common prefixes, and where to continue."""

    entries: list[tuple[str, Entry]]
    common_prefixes: list[str]
    has_more: bool
    next_after: str | None
