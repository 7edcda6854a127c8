"""Repositories, branches, tags and commits: the refs of the commit graph.

Branch records change only by compare-and-swap against the record they were computed from
(`update_branch`), so concurrent writers in one process or on many machines never lose each
other's updates.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lakeproxy.errors import (
    BranchNotFound,
    CommitNotFound,
    ConcurrentUpdate,
    InvalidArgument,
    PreconditionFailed,
    RefNotFound,
    RepositoryNotFound,
    TagNotFound,
)
from lakeproxy.graveler.ids import looks_like_commit_id
from lakeproxy.graveler.model import Branch, Commit, RefKind, Repository, ResolvedRef
from lakeproxy.metastore.base import ABSENT, MetadataStore

REPOSITORIES = "repos"
_CAS_ATTEMPTS = 50
_BRANCH_HINTS = 10_000
_REF_RE = re.compile(r"(?P<base>[^~^@]+)(?P<at>@?)(?P<mods>(?:[~^][0-9]*)*)")
_MOD_RE = re.compile(r"([~^])([0-9]*)")


@dataclass(frozen=True, slots=True)
class Partitions:
    """Names of one repository's partitions in the metadata store."""

    branches: str
    tags: str
    commits: str
    nodes: str
    staging: str
    dropped: str
    uploads: str
    hidden: str

    @classmethod
    def of(cls, repo: Repository) -> Partitions:
        base = f"r/{repo.uid}/"
        return cls(
            base + "b", base + "t", base + "c", base + "n", base + "s", base + "d", base + "u",
            base + "h",
        )

    def all(self) -> tuple[str, ...]:
        return (
            self.branches, self.tags, self.commits, self.nodes, self.staging, self.dropped,
            self.uploads, self.hidden,
        )


class RefManager:
    """Reads and updates refs and commits of every repository."""

    def __init__(self, store: MetadataStore, commit_cache_size: int = 100_000) -> None:
        self.store = store
        self._commits: OrderedDict[tuple[str, str], Commit] = OrderedDict()
        self._commit_cache_size = commit_cache_size
        self._branch_hints: dict[tuple[str, str], Branch] = {}

    # Branch hints: the last record of each branch this process read. A hint is only a guess,
    # never an answer: whoever uses one validates it in the same snapshot or transaction (a
    # read of the record together with the rows the hint led to, or a compare-and-swap
    # against it), so a stale hint costs a retry, never a stale result.

    def branch_hint(self, repo: Repository, name: str) -> Branch | None:
        """The last record of branch `name` seen by this process, if any (maybe stale)."""
        return self._branch_hints.get((repo.uid, name))

    def note_branch(self, repo: Repository, branch: Branch | None, name: str = "") -> None:
        """Remember `branch` as the hint for its name; None forgets the hint for `name`."""
        if branch is None:
            self._branch_hints.pop((repo.uid, name), None)
            return
        hints = self._branch_hints
        if len(hints) >= _BRANCH_HINTS and (repo.uid, branch.name) not in hints:
            hints.pop(next(iter(hints)))
        hints[(repo.uid, branch.name)] = branch

    # Repositories

    async def get_repository(self, name: str) -> Repository:
        """Raises RepositoryNotFound."""
        raw = await self.store.get(REPOSITORIES, name.encode())
        if raw is None:
            raise RepositoryNotFound(f"repository {name!r} does not exist", repository=name)
        return Repository.decode(name, raw)

    # Branches

    async def get_branch(self, repo: Repository, name: str) -> Branch:
        """Raises BranchNotFound."""
        raw = await self.store.get(Partitions.of(repo).branches, name.encode())
        if raw is None:
            raise BranchNotFound(
                f"branch {name!r} does not exist in repository {repo.name!r}",
                repository=repo.name,
                branch=name,
            )
        return Branch.decode(name, raw)

    async def update_branch(
        self,
        repo: Repository,
        name: str,
        update: Callable[[Branch], Awaitable[Branch | None]],
    ) -> Branch:
        """Read the branch, compute its new record with `update`, write it by compare-and-swap.

        `update` may run several times (once per lost race); it returns None to leave the
        branch unchanged. Raises ConcurrentUpdate after too many lost races.
        """
        part = Partitions.of(repo).branches
        for attempt in range(_CAS_ATTEMPTS):
            raw = await self.store.get(part, name.encode())
            if raw is None:
                raise BranchNotFound(
                    f"branch {name!r} does not exist in repository {repo.name!r}",
                    repository=repo.name,
                    branch=name,
                )
            new = await update(Branch.decode(name, raw))
            if new is None:
                return Branch.decode(name, raw)
            try:
                await self.store.set_if(part, name.encode(), new.encode(), expect=raw)
                return new
            except PreconditionFailed:
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
        raise ConcurrentUpdate(
            f"branch {name!r} kept changing while it was being updated; try again",
            repository=repo.name,
            branch=name,
        )

    # Commits

    async def get_commit(self, repo: Repository, commit_id: str) -> Commit:
        """Load a commit by its full id (cached: commits never change). Raises CommitNotFound."""
        ck = (repo.uid, commit_id)
        commit = self._commits.get(ck)
        if commit is not None:
            self._commits.move_to_end(ck)
            return commit
        raw = await self.store.get(Partitions.of(repo).commits, commit_id.encode())
        if raw is None:
            raise CommitNotFound(
                f"commit {commit_id!r} does not exist in repository {repo.name!r}",
                repository=repo.name,
                ref=commit_id,
            )
        commit = Commit.decode(commit_id, raw)
        self._commits[ck] = commit
        if len(self._commits) > self._commit_cache_size:
            self._commits.popitem(last=False)
        return commit

    async def find_commit(self, repo: Repository, prefix: str) -> Commit | None:
        """A commit by full id or unique prefix (>= 8 hex chars); None when there is none."""
        if not looks_like_commit_id(prefix):
            return None
        if len(prefix) == 32:
            try:
                return await self.get_commit(repo, prefix)
            except CommitNotFound:
                return None
        found = [
            k
            async for k, _ in self.store.scan(
                Partitions.of(repo).commits, prefix=prefix.encode(), limit=2
            )
        ]
        if len(found) > 1:
            raise InvalidArgument(
                f"commit id prefix {prefix!r} is ambiguous; give more characters",
                repository=repo.name,
                ref=prefix,
            )
        return await self.get_commit(repo, found[0].decode()) if found else None

    # Ref expressions

    async def resolve(self, repo: Repository, expr: str) -> ResolvedRef:
        """Resolve `main`, a tag, a commit id (prefix), `main@`, `x~N`, `x^N` and chains of them.

        A plain branch name includes the branch's uncommitted changes; `main@` and every
        expression with `~`/`^` name a commit. Raises RefNotFound or InvalidArgument.
        """
        m = _REF_RE.fullmatch(expr or "")
        if m is None:
            raise InvalidArgument(
                f"invalid ref {expr!r}: expected a branch, tag or commit id, optionally "
                "followed by @, ~N or ^N",
                repository=repo.name,
                ref=expr,
            )
        base, at, mods = m.group("base"), m.group("at"), m.group("mods")
        resolved = await self._resolve_name(repo, base)
        if at and resolved.kind is not RefKind.BRANCH:
            raise InvalidArgument(
                f"{base!r} is not a branch: '@' applies to branches only", ref=expr
            )
        if not at and not mods:
            return resolved
        commit_id = resolved.commit_id
        for op, num in _MOD_RE.findall(mods):
            n = int(num) if num else 1
            commit_id = await self._walk_parents(repo, commit_id, op, n, expr)
        if not mods:
            return ResolvedRef(RefKind.BRANCH, commit_id, resolved.branch, include_staging=False)
        return ResolvedRef(RefKind.COMMIT, commit_id)

    async def _resolve_name(self, repo: Repository, name: str) -> ResolvedRef:
        parts = Partitions.of(repo)
        raw = await self.store.get(parts.branches, name.encode())
        if raw is not None:
            branch = Branch.decode(name, raw)
            return ResolvedRef(RefKind.BRANCH, branch.head, branch, include_staging=True)
        raw = await self.store.get(parts.tags, name.encode())
        if raw is not None:
            return ResolvedRef(RefKind.TAG, raw.decode())
        commit = await self.find_commit(repo, name)
        if commit is not None:
            return ResolvedRef(RefKind.COMMIT, commit.id)
        raise RefNotFound(
            f"ref {name!r} is not a branch, tag or commit of repository {repo.name!r}",
            repository=repo.name,
            ref=name,
        )

    async def _walk_parents(
        self, repo: Repository, commit_id: str, op: str, n: int, expr: str
    ) -> str:
        if op == "~":
            for _ in range(n):
                commit = await self.get_commit(repo, commit_id)
                if not commit.parents:
                    raise RefNotFound(f"{expr!r} goes past the first commit", ref=expr)
                commit_id = commit.parents[0]
            return commit_id
        if n == 0:
            return commit_id
        commit = await self.get_commit(repo, commit_id)
        if n > len(commit.parents):
            raise RefNotFound(
                f"{expr!r}: commit {commit_id[:12]} has {len(commit.parents)} parent(s)", ref=expr
            )
        return commit.parents[n - 1]

    # Tags

    async def get_tag(self, repo: Repository, name: str) -> str:
        raw = await self.store.get(Partitions.of(repo).tags, name.encode())
        if raw is None:
            raise TagNotFound(
                f"tag {name!r} does not exist in repository {repo.name!r}",
                repository=repo.name,
                tag=name,
            )
        return raw.decode()

    # History

    async def log(
        self,
        repo: Repository,
        head: str,
        *,
        first_parent: bool = False,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Commit], bool]:
        """Commits reachable from `head`, newest first, one page at a time.

        The full log is ordered by generation (then id), so a commit always comes before its
        parents; `first_parent` follows first parents only. `after` is the id of the last
        commit of the previous page. Returns the page and whether more commits follow.
        """
        page: list[Commit] = []
        seen_after = after is None
        if first_parent:
            commit_id: str | None = head
            if after is not None:
                previous = await self.get_commit(repo, after)
                commit_id = previous.parents[0] if previous.parents else None
            while commit_id is not None:
                commit = await self.get_commit(repo, commit_id)
                if len(page) == limit:
                    return page, True
                page.append(commit)
                commit_id = commit.parents[0] if commit.parents else None
            return page, False
        first = await self.get_commit(repo, head)
        queue = [(-first.generation, first.id)]
        queued = {first.id}
        while queue:
            _, cid = heapq.heappop(queue)
            commit = await self.get_commit(repo, cid)
            if seen_after:
                if len(page) == limit:
                    return page, True
                page.append(commit)
            elif cid == after:
                seen_after = True
            for parent_id in commit.parents:
                if parent_id not in queued:
                    queued.add(parent_id)
                    parent = await self.get_commit(repo, parent_id)
                    heapq.heappush(queue, (-parent.generation, parent_id))
        return page, False

    async def merge_base(self, repo: Repository, a: str, b: str) -> str | None:
        """The best common ancestor of two commits (None when they share no history).

        Walks both histories together, highest generation first, marking which side reaches
        each commit; the first commit reached from both sides is the merge base.
        """
        if a == b:
            return a
        side: dict[str, int] = {a: 1, b: 2}
        ca, cb = await self.get_commit(repo, a), await self.get_commit(repo, b)
        queue = [(-ca.generation, a), (-cb.generation, b)]
        heapq.heapify(queue)
        while queue:
            _, cid = heapq.heappop(queue)
            flags = side[cid]
            if flags == 3:
                return cid
            commit = await self.get_commit(repo, cid)
            for parent_id in commit.parents:
                before = side.get(parent_id, 0)
                after_flags = before | flags
                if after_flags != before:
                    side[parent_id] = after_flags
                    if before == 0:
                        parent = await self.get_commit(repo, parent_id)
                        heapq.heappush(queue, (-parent.generation, parent_id))
        return None

    async def is_ancestor(self, repo: Repository, ancestor: str, descendant: str) -> bool:
        return await self.merge_base(repo, ancestor, descendant) == ancestor

    async def create_absent(self, partition: str, key: bytes, value: bytes) -> bool:
        """Write a record that must not exist yet; False if it already did."""
        try:
            await self.store.set_if(partition, key, value, expect=ABSENT)
            return True
        except PreconditionFailed:
            return False
