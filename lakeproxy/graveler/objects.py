"""Object reads, writes and listings on refs: the part of the facade the S3 gateway uses most."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack
import xxhash

from lakeproxy.errors import (
    ConcurrentUpdate,
    InvalidArgument,
    ObjectNotFound,
    PreconditionFailed,
    ProtectedBranch,
    ReadOnlyRef,
)
from lakeproxy.graveler.committed.cursor import TreeCursor
from lakeproxy.graveler.ids import validate_key, validate_metadata, validate_prefix
from lakeproxy.graveler.model import (
    DEFAULT_CONTENT_TYPE,
    IDENTITY_BYTES,
    Branch,
    Entry,
    ListPage,
    RefKind,
    Repository,
    ResolvedRef,
    _unpack_address,
    _unpack_hex,
)
from lakeproxy.graveler.refs import Partitions
from lakeproxy.graveler.staging import successor
from lakeproxy.metastore.base import ABSENT, Check, Op

if TYPE_CHECKING:
    from lakeproxy.graveler.graveler import Graveler

_WRITE_ATTEMPTS = 50
MAX_LIST_KEYS = 1000
_LIST_BATCH = 1024
_ITER_FIRST = 64  # entries in the first chunk of `iter_entries`, four times more each time
_ITER_MOST = 4096
_Page = TypeVar("_Page")

# Sorted keys and their encoded values (b"": a tombstone).
Batch = tuple[list[bytes], list[bytes]]


@dataclass(frozen=True, slots=True)
class RawListPage:
    """One page of a listing in key order: `values[i]` is the encoded entry at `keys[i]`, or
    None when `keys[i]` is a common prefix."""

    keys: list[str]
    values: list[bytes | None]
    has_more: bool


def physical_path() -> str:
    """A new unique physical path: time-sliced so garbage collection can skip young slices."""
    return f"data/{time.strftime('%Y%m%d%H', time.gmtime())}/{uuid.uuid4().hex}"


_HASH_BATCH = 1024 * 1024
_HASH_QUEUED = 3
_HASH_THREAD = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lakeproxy-hash")


class _Hasher:
    """Counts and hashes a byte stream as it passes through.

    Small bodies are hashed inline. Large ones are hashed a MiB at a time on a helper thread
    (hashlib and xxhash release the GIL), overlapping with receiving and storing the next
    MiB, so MD5 runs at close to one core's speed without stalling the event loop.
    """

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.xxh = xxhash.xxh3_128()
        self.size = 0

    def _update(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.md5.update(data)
            self.xxh.update(data)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        # The hash thread runs batches in the order they were queued, so a few can wait
        # there while the next MiB arrives: the stream stalls only when it is that far ahead.
        pending: deque[asyncio.Future[None]] = deque()
        batch: list[bytes] = []
        batched = 0
        try:
            async for chunk in self._chunks:
                self.size += len(chunk)
                batch.append(chunk)
                batched += len(chunk)
                if batched >= _HASH_BATCH:
                    if len(pending) >= _HASH_QUEUED:
                        await pending.popleft()
                    pending.append(loop.run_in_executor(_HASH_THREAD, self._update, batch))
                    batch, batched = [], 0
                yield chunk
            while pending:
                await pending.popleft()
            self._update(batch)
        finally:
            for queued in pending:
                with contextlib.suppress(BaseException):
                    await queued


class ObjectsMixin:
    """Reads see staging then sealed tokens then the committed tree; writes go to staging."""

    async def _repo(self: Graveler, repo: str | Repository) -> Repository:
        """The repository record: looked up by name, or as given by a caller that holds it."""
        return repo if isinstance(repo, Repository) else await self.refs.get_repository(repo)

    async def _read_target(self: Graveler, repo_name: str | Repository, ref: str) -> tuple[
        Repository, ResolvedRef
    ]:
        repo = await self._repo(repo_name)
        return repo, await self.refs.resolve(repo, ref)

    async def _lookup(self: Graveler, repo: Repository, resolved: ResolvedRef,
                      key: bytes) -> bytes | None:
        for _ in range(_WRITE_ATTEMPTS):
            if resolved.include_staging and resolved.branch is not None:
                staged = await self.staging.get(
                    Partitions.of(repo).staging, resolved.branch.tokens, key
                )
                if staged is not None:
                    return staged or None
                fresh = await self._moved_branch(repo, resolved)
                if fresh is not None:
                    resolved = fresh
                    continue
            return await self.trees(repo).lookup(
                await self.root_of(repo, resolved.commit_id), key
            )
        raise ConcurrentUpdate(
            "the branch kept changing while it was read; try again", repository=repo.name
        )

    async def _moved_branch(self: Graveler, repo: Repository,
                            resolved: ResolvedRef) -> ResolvedRef | None:
        """None when the branch record `resolved` was read from is still current; else the
        branch resolved afresh.

        A commit (in this process or another one) publishes its new head and then deletes the
        rows of the tokens it applied. A read that missed in the tokens of an older record may
        have looked after that deletion, and the older head lacks what they held: the miss
        counts only if the record has not changed since.
        """
        if resolved.branch is None:
            return None
        name = resolved.branch.name
        raw = await self.store.get(Partitions.of(repo).branches, name.encode())
        if raw is not None and Branch.decode(name, raw) == resolved.branch:
            return None
        return await self.refs.resolve(repo, name)

    async def _point_read(self: Graveler, repo: Repository, ref: str,
                          key: bytes) -> bytes | None:
        """The encoded entry at `key` on `ref`, or None.

        On a branch, the branch record and the staged rows of the tokens its hint lists are
        read in one snapshot, in one round trip when the hint is current (else once more with
        the tokens just read). A staging miss is then final for that record, whose committed
        tree never changes: no commit can slip between the two reads.
        """
        if not ref or "~" in ref or "^" in ref or "@" in ref:
            return await self._lookup(repo, await self.refs.resolve(repo, ref), key)
        parts = Partitions.of(repo)
        name = ref.encode()
        for _ in range(_WRITE_ATTEMPTS):
            hint = self.refs.branch_hint(repo, ref)
            tokens = () if hint is None else hint.tokens
            found = await self.store.get_multi(
                [(parts.branches, name), (parts.tags, name),
                 *[(parts.staging, token + key) for token in tokens]]
            )
            raw_branch = found[0]
            if raw_branch is None:
                self.refs.note_branch(repo, None, ref)
                tag = found[1]
                resolved = (ResolvedRef(RefKind.TAG, tag.decode()) if tag is not None
                            else await self.refs.resolve(repo, ref))
                return await self._lookup(repo, resolved, key)
            branch = Branch.decode(ref, raw_branch)
            if branch != hint:
                self.refs.note_branch(repo, branch)
                if branch.tokens != tokens:
                    continue
            staged = next((value for value in found[2:] if value is not None), None)
            if staged is not None:
                return staged or None
            return await self.trees(repo).lookup(await self.root_of(repo, branch.head), key)
        raise ConcurrentUpdate(
            "the branch kept changing while it was read; try again", repository=repo.name
        )

    async def get_entry(
        self: Graveler, repo_name: str | Repository, ref: str, key: str
    ) -> Entry:
        """The entry at `key` on `ref`; raises ObjectNotFound."""
        raw_key = validate_key(key)
        repo = await self._repo(repo_name)
        raw = await self._point_read(repo, ref, raw_key)
        if raw is None:
            raise ObjectNotFound(
                f"object {key!r} does not exist on {ref!r} in repository {repo.name!r}",
                repository=repo.name, ref=ref, key=key,
            )
        return Entry.decode(raw)

    async def iter_entries(
        self: Graveler, repo_name: str, ref: str, *, prefix: str = "", after: str = ""
    ) -> AsyncIterator[tuple[str, Entry]]:
        """Every entry on `ref` under `prefix` with key > `after`, in key order."""
        repo, resolved = await self._read_target(repo_name, ref)
        pfx = validate_prefix(prefix)
        start = max(pfx, after.encode() + b"\x00" if after else b"")
        size = _ITER_FIRST
        while True:
            chunk, resolved = await self._checked_listing(
                repo, resolved,
                lambda r, start=start, size=size: self._raw_chunk(repo, r, start, pfx, size),
            )
            for key, value in chunk:
                yield key.decode(), Entry.decode(value)
            if len(chunk) < size:
                return
            start = chunk[-1][0] + b"\x00"
            size = min(size * 4, _ITER_MOST)

    async def _raw_chunk(
        self: Graveler, repo: Repository, resolved: ResolvedRef, start: bytes, prefix: bytes,
        size: int,
    ) -> list[tuple[bytes, bytes]]:
        """The first `size` entries (no tombstones) of `_raw_batches`."""
        chunk: list[tuple[bytes, bytes]] = []
        batches = self._raw_batches(repo, resolved, start, prefix)
        async with contextlib.aclosing(batches):
            async for keys, values in batches:
                for key, value in zip(keys, values, strict=True):
                    if value:
                        chunk.append((key, value))
                        if len(chunk) == size:
                            return chunk
        return chunk

    async def _checked_listing(
        self: Graveler, repo: Repository, resolved: ResolvedRef,
        build: Callable[[ResolvedRef], Awaitable[_Page]],
    ) -> tuple[_Page, ResolvedRef]:
        """`build(resolved)`, built again on the branch read afresh for as long as a commit
        dropped staging rows the listing may have read meanwhile; also the ref it was built on.
        """
        for _ in range(_WRITE_ATTEMPTS):
            page = await build(resolved)
            moved = await self._listing_moved(repo, resolved)
            if moved is None:
                return page, resolved
            resolved = moved
        raise ConcurrentUpdate(
            "the branch kept changing while it was listed; try again", repository=repo.name
        )

    async def _listing_moved(self: Graveler, repo: Repository,
                             resolved: ResolvedRef) -> ResolvedRef | None:
        """None when the branch still lists every staging token `resolved` read; else the
        branch resolved afresh.

        A commit publishes its new head and then deletes the rows of the tokens it applied.
        A listing that read such a token after the deletion lacks those rows, and so does the
        older head it read: its page counts only if none of its tokens has gone since (a
        token that has left a branch never comes back).
        """
        branch = resolved.branch
        if not resolved.include_staging or branch is None:
            return None
        raw = await self.store.get(Partitions.of(repo).branches, branch.name.encode())
        if raw is None:
            return await self.refs.resolve(repo, branch.name)
        fresh = Branch.decode(branch.name, raw)
        if all(token in fresh.tokens for token in branch.tokens):
            return None
        self.refs.note_branch(repo, fresh)
        return ResolvedRef(RefKind.BRANCH, fresh.head, fresh, include_staging=True)

    async def list_entries(
        self: Graveler,
        repo_name: str,
        ref: str,
        *,
        prefix: str = "",
        after: str = "",
        delimiter: str = "",
        limit: int = MAX_LIST_KEYS,
    ) -> ListPage:
        """One page of a listing, S3 style: entries and common prefixes under `prefix`.

        With a delimiter, keys sharing the part of the key up to the first delimiter after the
        prefix are rolled up into one common prefix, and the listing seeks past all of them
        instead of stepping through them. `after` may be a key or a common prefix returned
        by the previous page. It is `list_raw`'s page with the entries decoded.
        """
        raw = await self.list_raw(repo_name, ref, prefix=prefix, after=after,
                                  delimiter=delimiter, limit=limit)
        entries = [(k, Entry.decode(v)) for k, v in zip(raw.keys, raw.values, strict=True)
                   if v is not None]
        prefixes = [k for k, v in zip(raw.keys, raw.values, strict=True) if v is None]
        return ListPage(entries, prefixes, raw.has_more,
                        raw.keys[-1] if raw.has_more else None)

    async def list_raw(
        self: Graveler,
        repo_name: str | Repository,
        ref: str,
        *,
        prefix: str = "",
        after: str = "",
        delimiter: str = "",
        limit: int = MAX_LIST_KEYS,
    ) -> RawListPage:
        """The page `list_entries` returns, read a range (or a staging batch) at a time.

        Entries and common prefixes come in one key-ordered list and entries stay encoded
        (`listed_fields` reads what a listing shows), so serializers of big pages spend
        neither an await nor an `Entry` per key.
        """
        if not 1 <= limit <= MAX_LIST_KEYS:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIST_KEYS}")
        repo, resolved = await self._read_target(repo_name, ref)
        pfx = validate_prefix(prefix)
        delim = delimiter.encode()
        start = pfx
        if after:
            raw_after = after.encode()
            rolled = _rollup(raw_after, pfx, delim)
            start = max(start, rolled + b"\xff" if rolled else raw_after + b"\x00")
        page, _ = await self._checked_listing(
            repo, resolved, lambda r: self._raw_page(repo, r, start, pfx, delim, limit)
        )
        return page

    async def _raw_page(
        self: Graveler, repo: Repository, resolved: ResolvedRef, start: bytes, pfx: bytes,
        delim: bytes, limit: int,
    ) -> RawListPage:
        keys: list[str] = []
        values: list[bytes | None] = []
        while True:
            restart = None
            batches = self._raw_batches(repo, resolved, start, pfx)
            async with contextlib.aclosing(batches):
                async for batch_keys, batch_values in batches:
                    for key, value in zip(batch_keys, batch_values, strict=True):
                        if not value:
                            continue
                        if len(keys) == limit:
                            return RawListPage(keys, values, True)
                        rolled = _rollup(key, pfx, delim) if delim else None
                        if rolled:
                            keys.append(rolled.decode())
                            values.append(None)
                            restart = rolled + b"\xff"
                            break
                        keys.append(key.decode())
                        values.append(value)
                    if restart is not None:
                        break
            if restart is None:
                return RawListPage(keys, values, False)
            start = restart

    def _raw_batches(
        self: Graveler, repo: Repository, resolved: ResolvedRef, start: bytes, prefix: bytes
    ) -> AsyncIterator[Batch]:
        """What `ref` shows from `start` under `prefix`: staging tokens over the committed tree, as
        sorted batches of rows (tombstones included)."""
        committed = self._committed_batches(repo, resolved.commit_id, start, prefix)
        if not resolved.include_staging or resolved.branch is None:
            return committed
        part = Partitions.of(repo).staging
        layers = [self._staged_batches(part, t, start, prefix) for t in resolved.branch.tokens]
        return _merge_batches([*layers, committed])

    async def _committed_batches(
        self: Graveler, repo: Repository, commit_id: str, start: bytes, prefix: bytes
    ) -> AsyncIterator[Batch]:
        cursor = TreeCursor(self.trees(repo), await self.root_of(repo, commit_id))
        await cursor.seek(start)
        end = successor(prefix) if prefix else None
        while True:
            keys, values = await cursor.next_batch()
            if not keys:
                return
            if end is not None and keys[-1] >= end:
                cut = bisect_left(keys, end)
                if cut:
                    yield keys[:cut], values[:cut]
                return
            yield keys, values

    async def _staged_batches(
        self: Graveler, partition: str, token: bytes, start: bytes, prefix: bytes
    ) -> AsyncIterator[Batch]:
        skip = len(token)
        async for rows in self.store.scan_batches(
            partition, start=token + start, prefix=token + prefix, batch_size=_LIST_BATCH
        ):
            yield [k[skip:] for k, _ in rows], [v for _, v in rows]

    # Writes

    async def _writable_branch(self: Graveler, repo: Repository, name: str, *,
                               hinted: bool = False) -> Branch:
        """The branch record to write through; raises ReadOnlyRef or ProtectedBranch.

        `hinted`: the branch's hint will do when it allows writing, for a caller whose write
        compares the record it got (a stale hint then fails that write, which reads afresh).
        """
        if hinted:
            hint = self.refs.branch_hint(repo, name)
            if hint is not None and not hint.protected:
                return hint
        branch_raw = await self.store.get(Partitions.of(repo).branches, name.encode())
        if branch_raw is None:
            resolved = await self.refs.resolve(repo, name)
            if resolved.kind is RefKind.BRANCH:
                # `main@`, `main~1`, …: an expression over a branch names a fixed commit.
                what = f"{name!r} names a fixed commit ({resolved.commit_id[:12]}), not the branch"
            else:
                what = f"{name!r} is a {resolved.kind.value}"
            raise ReadOnlyRef(
                f"{what}, which is read-only: only a branch name can be written to",
                repository=repo.name, ref=name,
            )
        branch = Branch.decode(name, branch_raw)
        self.refs.note_branch(repo, branch)
        if branch.protected:
            raise ProtectedBranch(
                f"branch {name!r} is protected: it changes only by merge",
                repository=repo.name, branch=name,
            )
        return branch

    async def _stage(
        self: Graveler,
        repo: Repository,
        branch_name: str,
        key: bytes,
        value: bytes | None,
        *,
        expect_etag: str | None = None,
        expect_absent: bool = False,
        branch: Branch | None = None,
    ) -> None:
        """Write `value` (None: remove `key`) into the branch's staging token.

        The row is written in one transaction with a check that the branch record is still
        the one read (`branch`, when the caller just read it): if a commit sealed the token
        meanwhile, the write fails and is repeated into the new token, so it is never lost
        and never lands in a token a commit has already read. Conditional writes also guard
        the staging row with a compare-and-swap.
        """
        parts = Partitions.of(repo)
        part = parts.staging
        for _ in range(_WRITE_ATTEMPTS):
            if branch is None:
                branch = await self._writable_branch(repo, branch_name)
            token = branch.staging_token
            ops: list[Op] = [Check(parts.branches, branch_name.encode(), branch.encode())]
            current = None
            if value is None or expect_etag is not None or expect_absent:
                row = await self.store.get(part, token + key)
                current = await self._lookup(
                    repo, ResolvedRef(RefKind.BRANCH, branch.head, branch, True), key
                )
                _check_condition(key, current, expect_etag, expect_absent)
                ops.append(Check(part, token + key, ABSENT if row is None else row))
            if value is not None:
                op = self.staging.put_op(part, token, key, value)
            elif current is None:
                raise ObjectNotFound(
                    f"object {key.decode()!r} does not exist on branch {branch_name!r}",
                    repository=repo.name, ref=branch_name, key=key.decode(),
                )
            elif await self._hidden_without_tombstone(repo, branch, key):
                op = self.staging.delete_op(part, token, key)
            else:
                op = self.staging.put_op(part, token, key, b"")
            try:
                await self.store.write([*ops, op])
                return
            except PreconditionFailed:
                branch = None  # sealed, committed or changed meanwhile: read it again
        raise PreconditionFailed(
            f"object {key.decode()!r} kept changing while it was written; try again",
            repository=repo.name, key=key.decode(),
        )

    async def _hidden_without_tombstone(
        self: Graveler, repo: Repository, branch: Branch, key: bytes
    ) -> bool:
        """True when `key` exists only in the current staging token (no tombstone needed)."""
        if branch.sealed_tokens and await self.staging.get(
            Partitions.of(repo).staging, branch.sealed_tokens, key
        ) is not None:
            return False
        root = await self.root_of(repo, branch.head)
        return await self.trees(repo).lookup(root, key) is None

    async def set_entry(
        self: Graveler,
        repo_name: str,
        branch: str,
        key: str,
        entry: Entry,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> Entry:
        """Point `key` on `branch` at `entry` (an uncommitted change).

        `if_match` requires the current entry's ETag; `if_none_match` requires that no entry
        exists. Raises PreconditionFailed when the condition does not hold, ReadOnlyRef for a
        tag or commit, ProtectedBranch for a protected branch.
        """
        raw_key = validate_key(key)
        repo = await self.refs.get_repository(repo_name)
        await self._stage(repo, branch, raw_key, entry.encode(), expect_etag=if_match,
                          expect_absent=if_none_match)
        return entry

    async def delete_entry(self: Graveler, repo_name: str, branch: str, key: str) -> None:
        """Remove `key` from `branch` (an uncommitted change); raises ObjectNotFound."""
        raw_key = validate_key(key)
        repo = await self.refs.get_repository(repo_name)
        await self._stage(repo, branch, raw_key, None)

    async def stage_many(
        self: Graveler, repo_name: str, branch_name: str, items: list[tuple[str, Entry]]
    ) -> None:
        """Stage many entries at once (imports and bulk loads). Not conditional."""
        repo = await self.refs.get_repository(repo_name)
        rows = sorted((validate_key(k), e.encode()) for k, e in items)
        while True:
            branch = await self._writable_branch(repo, branch_name)
            await self.staging.put_many(Partitions.of(repo).staging, branch.staging_token, rows)
            again = await self.refs.get_branch(repo, branch_name)
            if again.staging_token == branch.staging_token:
                return

    async def delete_entries(
        self: Graveler, repo_name: str, branch_name: str, keys: list[str]
    ) -> list[str]:
        """`delete_entry` for many keys, written in one transaction.

        Each key is removed exactly as `delete_entry` would (a tombstone only where a committed
        or sealed entry must be hidden), all rows guarded by compare-and-swap together with
        the branch record, and the whole batch is repeated if anything changed meanwhile.

        Returns:
            The keys that do not exist on the branch (nothing was deleted for them).

        Raises:
            ReadOnlyRef, ProtectedBranch, BranchNotFound: for the whole batch.
            PreconditionFailed: when the branch kept changing through every attempt.
        """
        raw_keys = sorted({validate_key(k) for k in keys})
        repo = await self.refs.get_repository(repo_name)
        for _ in range(_WRITE_ATTEMPTS):
            branch = await self._writable_branch(repo, branch_name)
            ops, missing = await self._delete_ops(repo, branch, raw_keys)
            if len(ops) == 1:
                return missing
            try:
                await self.store.write(ops)
                return missing
            except PreconditionFailed:
                continue  # sealed, committed or written meanwhile: read everything again
        raise PreconditionFailed(
            f"branch {branch_name!r} kept changing while {len(raw_keys)} objects were deleted; "
            "try again",
            repository=repo.name, ref=branch_name,
        )

    async def _delete_ops(
        self: Graveler, repo: Repository, branch: Branch, keys: list[bytes]
    ) -> tuple[list[Op], list[str]]:
        """The guarded writes that delete `keys` from `branch`, and the keys that are missing."""
        parts = Partitions.of(repo)
        part, token, sealed = parts.staging, branch.staging_token, branch.sealed_tokens
        staged = await self.store.get_many(
            part, [t + k for t in branch.tokens for k in keys]
        ) if keys else {}
        trees = self.trees(repo)
        root = await self.root_of(repo, branch.head)
        ops: list[Op] = [Check(parts.branches, branch.name.encode(), branch.encode())]
        missing: list[str] = []
        for key in keys:
            newest = next((v for t in branch.tokens if (v := staged.get(t + key)) is not None),
                          None)
            committed: bytes | None = None
            if newest is None:
                committed = await trees.lookup(root, key)
            if not (newest if newest is not None else committed):
                missing.append(key.decode())
                continue
            if any(t + key in staged for t in sealed):
                tombstone = True
            else:
                if newest is not None:
                    committed = await trees.lookup(root, key)
                tombstone = committed is not None
            row = staged.get(token + key)
            ops.append(Check(part, token + key, ABSENT if row is None else row))
            ops.append(self.staging.put_op(part, token, key, b"") if tombstone
                       else self.staging.delete_op(part, token, key))
        return ops, missing

    async def put_object(
        self: Graveler,
        repo_name: str,
        branch: str,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        checksums: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
        expected_size: int | None = None,
        expected_md5: bytes | None = None,
    ) -> Entry:
        """Store the bytes of `chunks` and point `key` on `branch` at them.

        The bytes are durably stored and verified (size, MD5) before the key changes, so a
        failed or interrupted upload leaves the branch as it was. `checksums` (client-supplied
        checksums to keep with the entry) may be a function, called once the bytes are in,
        for checksums that arrive after the body (aws-chunked trailers).
        """
        raw_key = validate_key(key)
        meta = validate_metadata(dict(metadata or {}), "user metadata")
        repo = await self.refs.get_repository(repo_name)
        target = await self._writable_branch(repo, branch, hinted=True)
        blocks = await self.blocks.get(repo.storage_namespace)
        path = physical_path()
        hasher = _Hasher(chunks)
        await blocks.put(path, hasher, fresh=True)
        try:
            if expected_size is not None and hasher.size != expected_size:
                raise InvalidArgument(
                    f"received {hasher.size} bytes but {expected_size} were announced",
                    key=key,
                )
            if expected_md5 is not None and hasher.md5.digest() != expected_md5:
                raise InvalidArgument("the content's MD5 does not match Content-MD5", key=key)
            entry = Entry(
                path, hasher.size, hasher.md5.hexdigest(), hasher.xxh.hexdigest(), time.time(),
                content_type or DEFAULT_CONTENT_TYPE, meta,
                dict((checksums() if callable(checksums) else checksums) or {}),
            )
            await self._stage(repo, branch, raw_key, entry.encode(), expect_etag=if_match,
                              expect_absent=if_none_match, branch=target)
        except BaseException:
            await blocks.delete(path)
            raise
        return entry

    async def open_object(
        self: Graveler, repo_name: str | Repository, entry: Entry, *, start: int = 0,
        end: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream the bytes [start, end) of an entry's physical object."""
        repo = await self._repo(repo_name)
        blocks = await self.blocks.get(repo.storage_namespace)
        async for chunk in blocks.get(entry.address, start=start, end=end):
            yield chunk

    async def copy_entry(
        self: Graveler,
        repo_name: str,
        src_ref: str,
        src_key: str,
        dst_branch: str,
        dst_key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Entry:
        """Copy an entry within a repository: the new key shares the physical object.

        `content_type` and `metadata`, when given, replace the source's.
        """
        entry = await self.get_entry(repo_name, src_ref, src_key)
        new = copy_of(entry, content_type=content_type, metadata=metadata)
        return await self.set_entry(repo_name, dst_branch, dst_key, new)


def copy_of(
    entry: Entry, *, content_type: str | None = None, metadata: Mapping[str, str] | None = None
) -> Entry:
    """A new entry for the same physical object (zero copy), dated now; `content_type` and
    `metadata`, when given, replace the source's."""
    return Entry(
        entry.address, entry.size, entry.etag, entry.checksum, time.time(),
        content_type if content_type is not None else entry.content_type,
        validate_metadata(dict(metadata), "user metadata") if metadata is not None
        else entry.metadata,
        entry.checksums,
    )


def listed_fields(raw: bytes) -> tuple[str, int, str, float, str, dict[str, str]]:
    """What a listing shows of an encoded entry, without building an `Entry`: (address,
    size, ETag, last-modified, content type, user metadata). Mirrors `Entry.decode`."""
    address, size, etag, _checksum, mtime, ctype, meta, _sums = msgpack.unpackb(
        raw[IDENTITY_BYTES:]
    )
    return _unpack_address(address), size, _unpack_hex(etag), mtime, ctype, meta or {}


async def _merge_batches(streams: list[AsyncIterator[Batch]]) -> AsyncIterator[Batch]:
    """Union of sorted batch streams by key; for equal keys the earliest stream's value wins.

    Each round merges, in one sort, everything up to the smallest last key of the batches
    in hand, so no stream is awaited more than once per batch.
    """
    try:
        heads: list[list[Any]] = []  # [stream index, keys, values, position]
        for i, stream in enumerate(streams):
            first = await anext(stream, None)
            if first is not None and first[0]:
                heads.append([i, first[0], first[1], 0])
        while len(heads) > 1:
            bound = min(keys[-1] for _, keys, _, _ in heads)
            rows: list[tuple[bytes, int, bytes]] = []
            for head in heads:
                i, keys, values, pos = head
                cut = bisect_right(keys, bound, pos)
                rows += zip(keys[pos:cut], repeat(i), values[pos:cut])
                head[3] = cut
            rows.sort()  # (key, stream) pairs are unique: values are never compared
            out_keys: list[bytes] = []
            out_values: list[bytes] = []
            last = None
            for key, _, value in rows:
                if key != last:
                    out_keys.append(key)
                    out_values.append(value)
                    last = key
            yield out_keys, out_values
            for head in heads:
                if head[3] == len(head[1]):
                    batch = await anext(streams[head[0]], None)
                    head[1:] = [batch[0], batch[1], 0] if batch else [[], [], 0]
            heads = [head for head in heads if head[1]]
        for i, keys, values, pos in heads:
            yield keys[pos:], values[pos:]
            async for batch in streams[i]:
                yield batch
    finally:
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]


def _rollup(key: bytes, prefix: bytes, delimiter: bytes) -> bytes | None:
    """The common prefix `key` rolls up into under `delimiter`, or None."""
    if not delimiter or not key.startswith(prefix):
        return None
    pos = key.find(delimiter, len(prefix))
    return None if pos < 0 else key[: pos + len(delimiter)]


def _check_condition(
    key: bytes, current: bytes | None, etag: str | None, absent: bool
) -> None:
    if absent and current is not None:
        raise PreconditionFailed(
            f"object {key.decode()!r} already exists", key=key.decode()
        )
    if etag is not None:
        if current is None:
            raise PreconditionFailed(
                f"object {key.decode()!r} does not exist", key=key.decode()
            )
        actual = Entry.decode(current).etag
        if etag.strip('"') not in (actual, "*"):
            raise PreconditionFailed(
                f"object {key.decode()!r} has ETag {actual!r}, not {etag!r}", key=key.decode()
            )
