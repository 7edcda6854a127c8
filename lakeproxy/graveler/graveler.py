"""The versioning core's facade: what the gateway and the api call.

`Graveler` composes the ref manager (commit graph), the staging manager (uncommitted rows)
and the committed trees (ranges and metaranges) over the two ports, a `MetadataStore` and a
`BlockStoreProvider`. Object reads, writes and listings live in `ObjectsMixin`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from lakeproxy.blockstore.base import BlockStoreProvider
from lakeproxy.errors import (
    BranchExists,
    InvalidArgument,
    NoChanges,
    PreconditionFailed,
    ProtectedBranch,
    RepositoryExists,
    TagExists,
    UncommittedChanges,
)
from lakeproxy.graveler.commit_worker import Applied, CommitWorkers, WorkerLost
from lakeproxy.graveler.committed.apply import ChangeStream, apply_changes
from lakeproxy.graveler.committed.diff import RawChange, diff_trees
from lakeproxy.graveler.committed.merge import MergeTooBig, merge_trees
from lakeproxy.graveler.committed.tree import EMPTY_ROOT, NodeCache, NodeRef, TreeStore
from lakeproxy.graveler.committed.writer import TreeWriter
from lakeproxy.graveler.ids import (
    validate_branch_name,
    validate_key,
    validate_metadata,
    validate_prefix,
    validate_repository_id,
    validate_tag_name,
)
from lakeproxy.graveler.model import (
    Branch,
    Change,
    Commit,
    DiffType,
    Entry,
    MergeStrategy,
    RefKind,
    Repository,
    ResolvedRef,
    Tag,
    same_identity,
)
from lakeproxy.graveler.multipart import MultipartMixin
from lakeproxy.graveler.objects import ObjectsMixin
from lakeproxy.graveler.observers import Observer, timed
from lakeproxy.graveler.refs import REPOSITORIES, Partitions, RefManager
from lakeproxy.graveler.staging import StagingManager, new_token, successor
from lakeproxy.metastore.base import ABSENT, Check, Delete, DeleteRange, MetadataStore, Op, Put
from lakeproxy.pause import pause

log = logging.getLogger(__name__)

_VOID_ROWS_LIMIT = 10_000  # rows checked before a branch just counts as dirty
_COMMIT_ATTEMPTS = 50
_DECODE_SLICE = 64  # changes of a diff page decoded between two pauses (about 0.7 ms)
_WORKER_FROM = 256  # changes from which a commit or a merge is built by a helper process


@dataclass(frozen=True, slots=True)
class CommitStats:
    """What the last commit or merge on this Graveler wrote (for benchmarks and metrics)."""

    changes: int
    nodes_written: int
    bytes_written: int


class Graveler(ObjectsMixin, MultipartMixin):
    """Repositories, branches, tags, commits, diffs and merges.

    Args:
        store: the metadata store.
        blocks: the provider of block stores for storage namespaces.
        cache_bytes: the size of the in-memory cache of decoded ranges.
        encoded_cache_bytes: the size of the cache of encoded ranges behind it.
        commit_workers: how many helper processes may build big commits at once (see
            `commit_worker`); 0 builds them in this process. Only stores that another
            process can open (SQLite, PostgreSQL) use them.
    """

    def __init__(
        self,
        store: MetadataStore,
        blocks: BlockStoreProvider,
        *,
        cache_bytes: int = 48 * 1024 * 1024,
        encoded_cache_bytes: int = 256 * 1024 * 1024,
        commit_workers: int = 1,
    ) -> None:
        self.store = store
        self.blocks = blocks
        self.refs = RefManager(store)
        self.staging = StagingManager(store)
        self.node_cache = NodeCache(cache_bytes, encoded_cache_bytes)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.last_commit_stats = CommitStats(0, 0, 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self.observers: list[Observer] = []  # told how long each commit and merge took
        spec = getattr(store, "reopen_spec", None)
        self.workers = (
            CommitWorkers(
                spec,
                commit_workers,
                cache_bytes=cache_bytes,
                encoded_cache_bytes=encoded_cache_bytes,
            )
            if spec and commit_workers > 0
            else None
        )

    def trees(self, repo: Repository) -> TreeStore:
        return TreeStore(self.store, Partitions.of(repo).nodes, self.node_cache)

    @asynccontextmanager
    async def _branch_lock(self, repo: Repository, branch: str) -> AsyncIterator[None]:
        """Serializes commits and merges of one branch inside this process."""
        key = (repo.uid, branch)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            yield

    async def root_of(self, repo: Repository, commit_id: str) -> NodeRef:
        commit = await self.refs.get_commit(repo, commit_id)
        return await self.trees(repo).root(commit.metarange_id)

    # Repositories

    async def create_repository(
        self,
        name: str,
        storage_namespace: str | None = None,
        *,
        default_branch: str = "main",
    ) -> Repository:
        """Create a repository with one branch holding an initial empty commit.

        Raises InvalidArgument for a bad name or namespace, RepositoryExists if the name is
        taken or the namespace is used by another repository.
        """
        validate_repository_id(name)
        validate_branch_name(default_branch)
        if storage_namespace is None:
            storage_namespace = self.blocks.default_namespace(name)
        namespace = self.blocks.validate_namespace(storage_namespace)
        async for other_name, raw in self.store.scan(REPOSITORIES):
            other = Repository.decode(other_name.decode(), raw)
            if other.storage_namespace == namespace and other.name != name:
                raise RepositoryExists(
                    f"storage namespace {namespace!r} is already used by repository "
                    f"{other.name!r}; choose another namespace",
                    repository=name,
                )
        import uuid

        repo = Repository(name, uuid.uuid4().hex, namespace, default_branch, time.time())
        parts = Partitions.of(repo)
        commit, raw_commit = Commit.create(
            (), EMPTY_ROOT.hex, "Repository created", "", {}, 1, repo.creation_date
        )
        branch = Branch(default_branch, commit.id, new_token())
        try:
            await self.store.write(
                [
                    Check(REPOSITORIES, name.encode(), ABSENT),
                    Put(parts.commits, commit.id.encode(), raw_commit),
                    Put(parts.branches, default_branch.encode(), branch.encode()),
                    Put(REPOSITORIES, name.encode(), repo.encode()),
                ]
            )
        except PreconditionFailed:
            raise RepositoryExists(
                f"repository {name!r} already exists", repository=name
            ) from None
        return repo

    async def get_repository(self, name: str) -> Repository:
        return await self.refs.get_repository(name)

    async def list_repositories(
        self, *, prefix: str = "", after: str = "", limit: int = 1000
    ) -> list[Repository]:
        """Repositories in name order, starting after `after`."""
        return [
            Repository.decode(k.decode(), v)
            async for k, v in self.store.scan(
                REPOSITORIES,
                after=after.encode() if after else None,
                prefix=prefix.encode(),
                limit=limit,
            )
        ]

    async def delete_repository(self, name: str) -> None:
        """Delete a repository's metadata. Its objects stay in the storage namespace."""
        repo = await self.refs.get_repository(name)
        await self.store.write(
            [Check(REPOSITORIES, name.encode(), repo.encode())]
            + [DeleteRange(p) for p in Partitions.of(repo).all()]
            + [DeleteRange(REPOSITORIES, name.encode(), name.encode() + b"\x00")]
        )

    # Branches

    async def create_branch(self, repo_name: str, name: str, source: str) -> Branch:
        """Create a branch at the committed state of `source` (any ref): one row, no copying."""
        repo = await self.refs.get_repository(repo_name)
        validate_branch_name(name)
        resolved = await self.refs.resolve(repo, source)
        branch = Branch(name, resolved.commit_id, new_token())
        if not await self.refs.create_absent(
            Partitions.of(repo).branches, name.encode(), branch.encode()
        ):
            raise BranchExists(
                f"branch {name!r} already exists in repository {repo.name!r}",
                repository=repo.name,
                branch=name,
            )
        return branch

    async def get_branch(self, repo_name: str, name: str) -> Branch:
        repo = await self.refs.get_repository(repo_name)
        return await self.refs.get_branch(repo, name)

    async def list_branches(
        self, repo_name: str, *, prefix: str = "", after: str = "", limit: int = 1000
    ) -> list[Branch]:
        repo = await self.refs.get_repository(repo_name)
        return [
            Branch.decode(k.decode(), v)
            async for k, v in self.store.scan(
                Partitions.of(repo).branches,
                after=after.encode() if after else None,
                prefix=prefix.encode(),
                limit=limit,
            )
        ]

    async def delete_branch(self, repo_name: str, name: str) -> None:
        """Delete a branch and its uncommitted changes; the default branch cannot be deleted."""
        repo = await self.refs.get_repository(repo_name)
        if name == repo.default_branch:
            raise InvalidArgument(
                f"branch {name!r} is the default branch of repository {repo.name!r} and "
                "cannot be deleted",
                repository=repo.name,
                branch=name,
            )
        branch = await self.refs.get_branch(repo, name)
        if branch.protected:
            raise ProtectedBranch(
                f"branch {name!r} is protected; unprotect it before deleting it",
                repository=repo.name,
                branch=name,
            )
        parts = Partitions.of(repo)
        await self.store.write(
            [Check(parts.branches, name.encode(), branch.encode())]
            + [DeleteRange(parts.branches, name.encode(), name.encode() + b"\x00")]
            + [Delete(parts.hidden, name.encode())]
            + [self.staging.drop_ops(parts.staging, t) for t in branch.tokens]
        )

    async def set_branch_hidden(self, repo_name: str, name: str, hidden: bool) -> None:
        """Mark a branch hidden from listings that leave hidden branches out (or unmark it).

        Short-lived work branches (transactions of the lakeFS clients) are hidden; the mark
        goes with the branch when it is deleted.
        """
        repo = await self.refs.get_repository(repo_name)
        branch = await self.refs.get_branch(repo, name)
        parts = Partitions.of(repo)
        key = name.encode()
        await self.store.write([
            Check(parts.branches, key, branch.encode()),
            Put(parts.hidden, key, b"") if hidden else Delete(parts.hidden, key),
        ])

    async def hidden_branches(self, repo_name: str) -> set[str]:
        """Names of the repository's hidden branches."""
        repo = await self.refs.get_repository(repo_name)
        return {k.decode() async for k, _ in self.store.scan(Partitions.of(repo).hidden)}

    async def set_branch_protection(self, repo_name: str, name: str, protected: bool) -> Branch:
        """Protect a branch (it then changes only by merge) or lift the protection."""
        repo = await self.refs.get_repository(repo_name)

        async def update(b: Branch) -> Branch:
            return Branch(b.name, b.head, b.staging_token, b.sealed_tokens, protected)

        return await self.refs.update_branch(repo, name, update)

    async def has_uncommitted(self, repo: Repository, branch: Branch) -> bool:
        return not await self.staging.is_empty(Partitions.of(repo).staging, branch.tokens)

    # Tags

    async def create_tag(self, repo_name: str, name: str, ref: str) -> Tag:
        """Tag the commit `ref` resolves to; tags never move."""
        repo = await self.refs.get_repository(repo_name)
        validate_tag_name(name)
        resolved = await self.refs.resolve(repo, ref)
        if not await self.refs.create_absent(
            Partitions.of(repo).tags, name.encode(), resolved.commit_id.encode()
        ):
            raise TagExists(
                f"tag {name!r} already exists in repository {repo.name!r}; tags are immutable",
                repository=repo.name,
                tag=name,
            )
        return Tag(name, resolved.commit_id)

    async def get_tag(self, repo_name: str, name: str) -> Tag:
        repo = await self.refs.get_repository(repo_name)
        return Tag(name, await self.refs.get_tag(repo, name))

    async def list_tags(
        self, repo_name: str, *, prefix: str = "", after: str = "", limit: int = 1000
    ) -> list[Tag]:
        repo = await self.refs.get_repository(repo_name)
        return [
            Tag(k.decode(), v.decode())
            async for k, v in self.store.scan(
                Partitions.of(repo).tags,
                after=after.encode() if after else None,
                prefix=prefix.encode(),
                limit=limit,
            )
        ]

    async def delete_tag(self, repo_name: str, name: str) -> None:
        repo = await self.refs.get_repository(repo_name)
        commit_id = await self.refs.get_tag(repo, name)
        part = Partitions.of(repo).tags
        await self.store.write(
            [
                Check(part, name.encode(), commit_id.encode()),
                DeleteRange(part, name.encode(), name.encode() + b"\x00"),
            ]
        )

    # Refs and history

    async def resolve_ref(self, repo_name: str, ref: str) -> ResolvedRef:
        repo = await self.refs.get_repository(repo_name)
        return await self.refs.resolve(repo, ref)

    async def get_commit(self, repo_name: str, ref: str) -> Commit:
        """The commit a ref expression names (a branch's committed head)."""
        repo = await self.refs.get_repository(repo_name)
        resolved = await self.refs.resolve(repo, ref)
        return await self.refs.get_commit(repo, resolved.commit_id)

    async def log(
        self,
        repo_name: str,
        ref: str,
        *,
        first_parent: bool = False,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Commit], bool]:
        """History of `ref`, newest first, paginated by commit id. See RefManager.log."""
        if limit < 1:
            raise InvalidArgument("limit must be at least 1")
        repo = await self.refs.get_repository(repo_name)
        resolved = await self.refs.resolve(repo, ref)
        return await self.refs.log(
            repo, resolved.commit_id, first_parent=first_parent, after=after, limit=limit
        )

    # Commit

    @timed("commit")
    async def commit(
        self,
        repo_name: str,
        branch_name: str,
        message: str,
        *,
        committer: str = "",
        metadata: dict[str, str] | None = None,
        allow_empty: bool = False,
        creation_date: float | None = None,
    ) -> Commit:
        """Commit a branch's uncommitted changes as one atomic snapshot.

        The staging token is sealed (new writes go to a fresh token and wait for the next
        commit), the sealed changes are applied to the head's tree rewriting only the ranges
        they touch, and the head moves by compare-and-swap. Killed midway, the branch keeps its
        old head and every staged write stays visible in the sealed token.

        Raises NoChanges when there is nothing to commit (unless `allow_empty`),
        ProtectedBranch for a protected branch.
        """
        if not isinstance(message, str) or not message.strip():
            raise InvalidArgument("a commit needs a non-empty message")
        meta = validate_metadata(metadata, "commit metadata")
        repo = await self.refs.get_repository(repo_name)
        async with self._branch_lock(repo, branch_name):
            branch = await self.refs.update_branch(
                repo, branch_name, self._seal(repo, refuse_protected=True)
            )
            ours = set(branch.sealed_tokens)
            parts = Partitions.of(repo)
            trees = self.trees(repo)
            for attempt in range(_COMMIT_ATTEMPTS):
                tokens = [t for t in branch.sealed_tokens if t in ours]
                head = await self.refs.get_commit(repo, branch.head)
                base = await trees.root(head.metarange_id)
                root, writer, stats = await self._apply_staged(trees, parts, tokens, base)
                landed_elsewhere = attempt > 0 and not tokens
                if root.id == base.id and not (allow_empty or landed_elsewhere):
                    await self._unseal(repo, branch_name, tokens)
                    raise NoChanges(
                        f"branch {branch_name!r} has no uncommitted changes to commit",
                        repository=repo.name,
                        branch=branch_name,
                    )
                commit, raw = Commit.create(
                    (head.id,), root.hex, message, committer, meta, head.generation + 1,
                    creation_date,
                )
                done = Branch(
                    branch.name,
                    commit.id,
                    branch.staging_token,
                    tuple(t for t in branch.sealed_tokens if t not in ours),
                    branch.protected,
                )
                # The applied tokens' rows are deleted after the commit, off its critical
                # path; their names are recorded with it so a crash cannot leak them.
                ops: list[Op] = [Put(parts.dropped, t, b"") for t in tokens]
                if not await self._publish(repo, branch, done, commit, raw, writer, ops):
                    branch = await self.refs.get_branch(repo, branch_name)
                    continue
                self.last_commit_stats = CommitStats(
                    stats.changes, stats.nodes_written, stats.bytes_written + len(raw)
                )
                self._background(self._drop_tokens(repo, tokens))
                return commit
        raise PreconditionFailed(
            f"branch {branch_name!r} kept moving during the commit; try again",
            repository=repo.name,
            branch=branch_name,
        )

    async def _apply_staged(
        self, trees: TreeStore, parts: Partitions, tokens: list[bytes], base: NodeRef
    ) -> tuple[NodeRef, TreeWriter | None, CommitStats]:
        """Apply the sealed `tokens` to the tree at `base`: in a helper process when there
        are many changes (the event loop only waits then), else here.

        Returns the new root, the writer whose last ranges are still to be stored with the
        commit (None when every range is stored), and what was applied and written.
        """
        stream = ChangeStream(self.staging.change_batches(parts.staging, tokens))
        if self.workers is not None and await stream.fill() and len(stream.keys) >= _WORKER_FROM:
            await stream.close()
            done = await _helped(
                trees, self.workers.apply(trees.partition, parts.staging, tokens, base)
            )
            if done is not None:
                return done
            stream = ChangeStream(self.staging.change_batches(parts.staging, tokens))
        root, writer = await apply_changes(trees, base, stream)
        return root, writer, CommitStats(stream.count, writer.nodes_written, writer.bytes_written)

    async def _merge_trees(
        self,
        trees: TreeStore,
        base: NodeRef,
        source: NodeRef,
        dest: NodeRef,
        strategy: MergeStrategy,
    ) -> tuple[NodeRef, TreeWriter | None, CommitStats]:
        """`merge_trees`: here, unless both sides moved from the base and the merge turns out
        to take more than a few hundred changes, in which case it stops and a helper process
        does it all.

        Returns the merged root, the writer whose last ranges are still to be stored with the
        merge commit (None when every range is stored), and what was written.
        """
        if self.workers is not None and len({base.id, source.id, dest.id}) == 3:
            try:
                root, writer = await merge_trees(
                    trees, base, source, dest, strategy, max_changes=_WORKER_FROM
                )
            except MergeTooBig:
                pass
            else:
                return root, writer, _written(writer)
            done = await _helped(
                trees, self.workers.merge(trees.partition, base, source, dest, strategy)
            )
            if done is not None:
                return done
        root, writer = await merge_trees(trees, base, source, dest, strategy)
        return root, writer, _written(writer)

    def _seal(self, repo: Repository, *, refuse_protected: bool):  # type: ignore[no-untyped-def]
        async def seal(b: Branch) -> Branch:
            if refuse_protected and b.protected:
                raise ProtectedBranch(
                    f"branch {b.name!r} is protected: it changes only by merge",
                    repository=repo.name,
                    branch=b.name,
                )
            return Branch(b.name, b.head, new_token(), b.tokens, b.protected)

        return seal

    async def _unseal(self, repo: Repository, branch_name: str, tokens: list[bytes]) -> None:
        """Forget sealed tokens whose changes turned out to change nothing."""
        drop = set(tokens)

        async def update(b: Branch) -> Branch:
            return Branch(
                b.name, b.head, b.staging_token,
                tuple(t for t in b.sealed_tokens if t not in drop), b.protected,
            )

        await self.refs.update_branch(repo, branch_name, update)
        await self._drop_tokens(repo, tokens)

    async def _drop_tokens(self, repo: Repository, tokens: list[bytes]) -> None:
        """Delete the rows of staging tokens no branch refers to any more."""
        if tokens:
            parts = Partitions.of(repo)
            await self.store.write(
                [self.staging.drop_ops(parts.staging, t) for t in tokens]
                + [Delete(parts.dropped, t) for t in tokens]
            )

    async def sweep_dropped_tokens(self, repo_name: str) -> int:
        """Finish deleting the rows of tokens a commit applied (after a crash, say)."""
        repo = await self.refs.get_repository(repo_name)
        tokens = [k async for k, _ in self.store.scan(Partitions.of(repo).dropped)]
        await self._drop_tokens(repo, tokens)
        return len(tokens)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run cleanup work after the caller's answer; `close` waits for it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Reset

    async def reset(self, repo_name: str, branch_name: str, *, key: str | None = None,
                    prefix: str | None = None) -> None:
        """Discard uncommitted changes: all of them, those of one key, or those under a prefix."""
        repo = await self.refs.get_repository(repo_name)
        parts = Partitions.of(repo)
        if key is not None or prefix is not None:
            raw = validate_prefix(prefix) if key is None else validate_prefix(key)
            branch = await self.refs.get_branch(repo, branch_name)
            if key is not None:
                ops = [self.staging.delete_op(parts.staging, t, raw) for t in branch.tokens]
            else:
                ops = [self.staging.drop_ops(parts.staging, t, raw) for t in branch.tokens]
            await self.store.write(ops)
            return
        async with self._branch_lock(repo, branch_name):
            old: list[bytes] = []

            async def update(b: Branch) -> Branch:
                old[:] = b.tokens
                return Branch(b.name, b.head, new_token(), (), b.protected)

            await self.refs.update_branch(repo, branch_name, update)
            await self._drop_tokens(repo, old)

    # Diff

    async def diff(
        self,
        repo_name: str,
        left: str,
        right: str,
        *,
        prefix: str = "",
        after: str = "",
        limit: int = 1000,
    ) -> tuple[list[Change], bool]:
        """Keys that differ between the commits two refs name, in key order, one page.

        Branches are compared at their committed heads; see `diff_uncommitted` for a branch's
        uncommitted changes. Returns the page and whether more changes follow.
        """
        raw, more = await self.diff_raw(repo_name, left, right, prefix=prefix, after=after,
                                        limit=limit)
        changes: list[Change] = []
        for lo in range(0, len(raw), _DECODE_SLICE):
            if lo:
                await pause()  # decoding a page of a thousand entries took milliseconds
            changes += [_change(key, lv, rv) for key, lv, rv in raw[lo:lo + _DECODE_SLICE]]
        return changes, more

    async def diff_raw(
        self,
        repo_name: str,
        left: str,
        right: str,
        *,
        prefix: str = "",
        after: str = "",
        limit: int = 1000,
    ) -> tuple[list[RawChange], bool]:
        """`diff` with keys and entries left encoded: (key, left or None, right or None).

        For serializers of big pages, which then decode only what they show.
        """
        repo = await self.refs.get_repository(repo_name)
        lc = (await self.refs.resolve(repo, left)).commit_id
        rc = (await self.refs.resolve(repo, right)).commit_id
        trees = self.trees(repo)
        lroot, rroot = await self.root_of(repo, lc), await self.root_of(repo, rc)
        pfx = validate_prefix(prefix)
        start = max(pfx, after.encode() + b"\x00" if after else b"")
        changes: list[RawChange] = []
        async for change in diff_trees(trees, lroot, rroot, start=start, stop=successor(pfx)
                                       if pfx else None):
            if len(changes) == limit:
                return changes, True
            changes.append(change)
        return changes, False

    async def diff_uncommitted(
        self, repo_name: str, branch_name: str, *, prefix: str = "", after: str = "",
        limit: int = 1000,
    ) -> tuple[list[Change], bool]:
        """A branch's uncommitted changes against its head commit, in key order, one page."""
        repo = await self.refs.get_repository(repo_name)
        branch = await self.refs.get_branch(repo, branch_name)
        trees = self.trees(repo)
        root = await self.root_of(repo, branch.head)
        pfx = validate_prefix(prefix)
        start = max(pfx, after.encode() + b"\x00" if after else b"")
        changes: list[Change] = []
        async for key, staged in self.staging.overlay(
            Partitions.of(repo).staging, branch.tokens, start, pfx
        ):
            committed = await trees.lookup(root, key)
            if not staged:
                if committed is None:
                    continue
                change = _change(key, committed, None)
            elif committed is not None and committed[:8] == staged[:8]:
                continue
            else:
                change = _change(key, committed, staged)
            if len(changes) == limit:
                return changes, True
            changes.append(change)
        return changes, False

    async def touches(
        self,
        repo_name: str | Repository,
        commit: Commit,
        *,
        keys: Sequence[str] = (),
        prefixes: Sequence[str] = (),
    ) -> bool:
        """Whether `commit` changed one of `keys`, or a key under one of `prefixes`, against
        its first parent (a root commit: whether any of them exists in it).

        Keys are two point lookups each, prefixes a diff bounded by the prefix that stops at
        the first change; nothing is resolved by name.
        """
        repo = await self._repo(repo_name)
        trees = self.trees(repo)
        root = await trees.root(commit.metarange_id)
        parent = await self.root_of(repo, commit.parents[0]) if commit.parents else EMPTY_ROOT
        if root.id == parent.id:
            return False
        for key in keys:
            raw = validate_key(key)
            before, after = await trees.lookup(parent, raw), await trees.lookup(root, raw)
            if (before is None) != (after is None) or (
                before is not None and after is not None and not same_identity(before, after)
            ):
                return True
        for prefix in prefixes:
            pfx = validate_prefix(prefix)
            changes = diff_trees(trees, parent, root, start=pfx,
                                 stop=successor(pfx) if pfx else None)
            async with aclosing(changes):
                async for _ in changes:
                    return True
        return False

    # Merge, revert, cherry-pick

    @timed("merge")
    async def merge(
        self,
        repo_name: str,
        source: str,
        dest_branch: str,
        *,
        strategy: MergeStrategy = MergeStrategy.FAIL,
        message: str | None = None,
        committer: str = "",
        metadata: dict[str, str] | None = None,
        fast_forward: bool = False,
        allow_empty: bool = False,
    ) -> Commit:
        """Three-way merge of the commit `source` names into `dest_branch`.

        Creates a merge commit with two parents (destination first). With `fast_forward`,
        when the destination has not moved since the merge base, the branch simply moves to
        the source commit. Raises MergeConflict listing every conflicting key (strategy FAIL),
        UncommittedChanges if the destination has uncommitted changes (staged rows that change
        nothing, such as identical re-uploads, are dropped instead), NoChanges when the
        source is already merged, InvalidArgument when merging a branch into itself.
        """
        meta = validate_metadata(metadata, "commit metadata")
        repo = await self.refs.get_repository(repo_name)
        resolved = await self.refs.resolve(repo, source)
        if resolved.branch is not None and resolved.branch.name == dest_branch:
            raise InvalidArgument(
                f"cannot merge branch {dest_branch!r} into itself", repository=repo.name
            )
        src = await self.refs.get_commit(repo, resolved.commit_id)
        msg = message or f"Merge '{source}' into '{dest_branch}'"
        trees = self.trees(repo)
        async with self._branch_lock(repo, dest_branch):
            for _ in range(_COMMIT_ATTEMPTS):
                branch = await self._clean_branch(repo, dest_branch, "merge into")
                base_id = await self.refs.merge_base(repo, src.id, branch.head)
                if base_id == src.id and not allow_empty:
                    raise NoChanges(
                        f"{source!r} is already merged into {dest_branch!r}: nothing to merge",
                        repository=repo.name,
                    )
                head = await self.refs.get_commit(repo, branch.head)
                if fast_forward and base_id == head.id:
                    moved = Branch(branch.name, src.id, branch.staging_token,
                                   branch.sealed_tokens, branch.protected)
                    if await self._publish(repo, branch, moved):
                        return src
                    continue
                base = EMPTY_ROOT if base_id is None else await self.root_of(repo, base_id)
                root, writer, stats = await self._merge_trees(
                    trees, base, await trees.root(src.metarange_id),
                    await trees.root(head.metarange_id), strategy,
                )
                result, raw = Commit.create(
                    (head.id, src.id), root.hex, msg, committer, meta,
                    max(head.generation, src.generation) + 1,
                )
                moved = Branch(branch.name, result.id, branch.staging_token,
                               branch.sealed_tokens, branch.protected)
                if await self._publish(repo, branch, moved, result, raw, writer):
                    self.last_commit_stats = CommitStats(
                        0, stats.nodes_written, stats.bytes_written + len(raw)
                    )
                    return result
        raise PreconditionFailed(
            f"branch {dest_branch!r} kept moving during the merge; try again",
            repository=repo.name,
        )

    async def revert(
        self, repo_name: str, branch_name: str, ref: str, *, parent_number: int | None = None,
        committer: str = "", message: str | None = None, metadata: dict[str, str] | None = None,
    ) -> Commit:
        """Add a commit on `branch_name` that undoes the changes the commit `ref` made."""
        return await self._replay(
            repo_name, branch_name, ref, parent_number, committer, message, metadata, undo=True
        )

    async def cherry_pick(
        self, repo_name: str, branch_name: str, ref: str, *, parent_number: int | None = None,
        committer: str = "", message: str | None = None, metadata: dict[str, str] | None = None,
    ) -> Commit:
        """Add a commit on `branch_name` that repeats the changes the commit `ref` made."""
        return await self._replay(
            repo_name, branch_name, ref, parent_number, committer, message, metadata, undo=False
        )

    async def _replay(
        self, repo_name: str, branch_name: str, ref: str, parent_number: int | None,
        committer: str, message: str | None, metadata: dict[str, str] | None, *, undo: bool,
    ) -> Commit:
        meta = validate_metadata(metadata, "commit metadata")
        repo = await self.refs.get_repository(repo_name)
        target = await self.refs.get_commit(repo, (await self.refs.resolve(repo, ref)).commit_id)
        parent_root = await self._parent_root(repo, target, parent_number)
        target_root = await self.trees(repo).root(target.metarange_id)
        base, source = (target_root, parent_root) if undo else (parent_root, target_root)
        if message is None:
            message = f"Revert {target.id}" if undo else target.message
            if not undo:
                meta = {**target.metadata, **meta}
        async with self._branch_lock(repo, branch_name):
            for _ in range(_COMMIT_ATTEMPTS):
                branch = await self._clean_branch(
                    repo, branch_name, "revert on" if undo else "cherry-pick onto"
                )
                head = await self.refs.get_commit(repo, branch.head)
                dest = await self.trees(repo).root(head.metarange_id)
                root, writer, _ = await self._merge_trees(
                    self.trees(repo), base, source, dest, MergeStrategy.FAIL
                )
                if root.id == dest.id:
                    raise NoChanges(
                        f"applying {target.id[:12]} to {branch_name!r} changes nothing",
                        repository=repo.name,
                    )
                commit, raw = Commit.create(
                    (head.id,), root.hex, message, committer, meta, head.generation + 1
                )
                moved = Branch(branch.name, commit.id, branch.staging_token,
                               branch.sealed_tokens, branch.protected)
                if await self._publish(repo, branch, moved, commit, raw, writer):
                    return commit
        raise PreconditionFailed(f"branch {branch_name!r} kept moving; try again")

    async def _drop_void_rows(self, repo: Repository, branch: Branch) -> bool:
        """Remove staged rows that change nothing (identical re-uploads, tombstones of absent
        keys) when they are all a branch holds; True when the branch is then clean.

        Such rows leave the branch's uncommitted diff empty, so refusing a merge over them would
        be a riddle; keeping them past a merge would let a stale row hide the merged value. Each
        row is deleted only if it is still exactly as read, so a write racing with this keeps
        its row (and the branch stays dirty).
        """
        if branch.sealed_tokens:
            return False  # a commit is applying them right now
        parts = Partitions.of(repo)
        token = branch.staging_token
        trees = self.trees(repo)
        root = await self.root_of(repo, branch.head)
        ops: list[Op] = []
        async for key, staged in self.staging.scan(parts.staging, token):
            if len(ops) >= 2 * _VOID_ROWS_LIMIT:
                return False
            committed = await trees.lookup(root, key)
            void = committed is None if not staged else (
                committed is not None and committed[:8] == staged[:8])
            if not void:
                return False
            ops.append(Check(parts.staging, token + key, staged))
            ops.append(Delete(parts.staging, token + key))
        if not ops:
            return True
        try:
            await self.store.write(ops)
        except PreconditionFailed:
            return False
        return True

    async def _parent_root(
        self, repo: Repository, commit: Commit, parent_number: int | None
    ) -> NodeRef:
        if len(commit.parents) > 1 and parent_number is None:
            raise InvalidArgument(
                f"commit {commit.id[:12]} is a merge commit: choose the parent to compare with "
                "(parent number 1 or 2)"
            )
        number = parent_number or 1
        if not commit.parents:
            if number != 1:
                raise InvalidArgument(f"commit {commit.id[:12]} has no parents")
            return EMPTY_ROOT
        if not 1 <= number <= len(commit.parents):
            raise InvalidArgument(
                f"parent number {number} is out of range: commit {commit.id[:12]} has "
                f"{len(commit.parents)} parent(s)"
            )
        return await self.root_of(repo, commit.parents[number - 1])

    async def _clean_branch(self, repo: Repository, name: str, what: str) -> Branch:
        branch = await self.refs.get_branch(repo, name)
        if await self.has_uncommitted(repo, branch) and not await self._drop_void_rows(
            repo, branch
        ):
            raise UncommittedChanges(
                f"cannot {what} branch {name!r}: it has uncommitted changes; commit or reset "
                "them first",
                repository=repo.name,
                branch=name,
            )
        return branch

    async def _publish(
        self,
        repo: Repository,
        expected: Branch,
        new: Branch,
        commit: Commit | None = None,
        raw_commit: bytes = b"",
        writer: TreeWriter | None = None,
        extra: list[Op] | None = None,
    ) -> bool:
        """In one transaction: store the last new ranges and the commit, and move the branch
        from `expected` to `new` by compare-and-swap. False when the branch changed meanwhile
        (nothing is written then)."""
        parts = Partitions.of(repo)
        ops: list[Op] = []
        if writer is not None:
            ops += [Put(parts.nodes, nid, raw) for nid, raw in writer.take_pending()]
        if commit is not None:
            ops.append(Put(parts.commits, commit.id.encode(), raw_commit))
        ops += [
            Check(parts.branches, expected.name.encode(), expected.encode()),
            Put(parts.branches, new.name.encode(), new.encode()),
            *(extra or []),
        ]
        try:
            await self.store.write(ops)
            return True
        except PreconditionFailed:
            return False

    async def settle(self) -> None:
        """Wait until the background cleanup started so far (and any it started) is done:
        after a big commit, the deletion of its staged rows."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish background cleanup, stop the commit helpers and close the stores."""
        await self.settle()
        if self.workers is not None:
            await self.workers.close()
        await self.blocks.close()
        await self.store.close()


def _written(writer: TreeWriter | None) -> CommitStats:
    return CommitStats(0, writer.nodes_written, writer.bytes_written) if writer else \
        CommitStats(0, 0, 0)


async def _helped(
    trees: TreeStore, work: Coroutine[Any, Any, Applied]
) -> tuple[NodeRef, None, CommitStats] | None:
    """The result of `work` done by a commit helper, its new ranges cached (encoded, as a
    writer here would have, a few frames per step of the event loop); None when the helper
    was lost and the caller must do the work itself."""
    try:
        done = await work
    except WorkerLost as exc:
        log.warning("building it in this process instead: %s", exc)
        return None
    trees.cache.remember_root(done.root)
    for n, frame in enumerate(done.ranges, 1):
        for nid, raw in frame:
            trees.cache.put_encoded(nid, raw)
        if n % 8 == 0:
            await asyncio.sleep(0)
    return done.root, None, CommitStats(done.changes, done.nodes_written, done.bytes_written)


def _change(key: bytes, left: bytes | None, right: bytes | None) -> Change:
    kind = DiffType.ADDED if left is None else DiffType.REMOVED if right is None else \
        DiffType.CHANGED
    return Change(
        key.decode(),
        kind,
        Entry.decode(left) if left else None,
        Entry.decode(right) if right else None,
    )


__all__ = ["CommitStats", "Graveler", "RefKind"]
