"""Stateful property test of the versioning core against a plain-Python model.

A hypothesis `RuleBasedStateMachine` drives random sequences of writes, deletes (one key or a
whole prefix), identical re-uploads, commits, branch creations (from a branch or a past
commit) and deletions, merges (every strategy, of a branch or a past commit), resets (all, one
key, a prefix), reverts and cherry-picks through `Graveler`, and after every step compares
everything a user can observe (bytes, entries, listings with a delimiter and their pages, logs
and their pages, diffs against main, uncommitted changes) with a model made of dicts:

- a commit is a snapshot `key -> content` plus its parents and generation;
- a branch is a head commit plus a staged overlay `key -> content | None (tombstone)`
  that mirrors the staging rows: a delete of a key that exists only in staging drops the
  row, a delete of a committed key writes a tombstone, and a branch with any row counts as
  having uncommitted changes (merge and revert refuse it) even when every row re-uploads
  identical bytes; a commit that changes nothing raises NoChanges and forgets the rows;
- a merge is three-way over the snapshots: the merge base is the common ancestor with the
  highest generation (ties broken by the smaller id, as `RefManager.merge_base` does);
  "changed" compares content, so a key re-set to the same bytes is unchanged;
- a revert (cherry-pick) is the same three-way merge, from the commit to its parent (from
  the parent to the commit), onto the branch head, failing on any conflict.

The rules are synchronous: each machine owns an event loop (`asyncio.new_event_loop()`) and
drives the async core with `loop.run_until_complete`. The machine runs on the in-memory
metadata store, on the in-memory store with tiny range sizes (so that the few keys make trees
of several levels), and, with fewer examples, on SQLite.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.errors import (
    BranchExists,
    BranchNotFound,
    InvalidArgument,
    LakeproxyError,
    MergeConflict,
    NoChanges,
    ObjectNotFound,
    UncommittedChanges,
)
from lakeproxy.graveler import Change, Commit, DiffType, Entry, Graveler, MergeStrategy
from lakeproxy.graveler.committed.apply import apply_changes
from lakeproxy.graveler.committed.writer import DEFAULT_SHAPE, Shape
from lakeproxy.metastore.memory import MemoryMetadataStore
from lakeproxy.metastore.sqlite import SqliteMetadataStore
from tests.conftest import body, read

T = TypeVar("T")

REPO = "stateful-repo"
MAIN = "main"
# A small key space: a top-level key and keys under two prefixes (one with a nested prefix),
# so listings with a delimiter roll keys up and prefix resets touch several keys.
KEYS = ["a/1", "a/2", "a/3", "b/1", "b/x/1", "b/x/2", "top"]
PREFIXES = ["a/", "b/", "b/x/", ""]
# A few distinct contents (including the empty object) so identical re-uploads happen.
CONTENTS = [b"", b"one", b"two", b"three"]
OTHER_BRANCHES = ["b1", "b2", "b3"]
BRANCH_NAMES = [MAIN, *OTHER_BRANCHES]

# Puts (bytes) and deletes (None) on one branch.
EDITS = st.lists(
    st.tuples(st.sampled_from(KEYS), st.none() | st.sampled_from(CONTENTS)), min_size=1, max_size=4
)

Snapshot = dict[str, bytes]
Staged = dict[str, bytes | None]  # None: a tombstone hiding a committed key


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


ETAG_TO_CONTENT = {md5(c): c for c in CONTENTS}


# The model


@dataclass
class MCommit:
    id: str
    parents: tuple[str, ...]
    snapshot: Snapshot
    generation: int


@dataclass
class MBranch:
    head: str
    staged: Staged = field(default_factory=dict)


@dataclass(frozen=True)
class Expected:
    """What the model predicts an operation raises (None: success)."""

    error: type[LakeproxyError] | None = None
    conflicts: tuple[str, ...] | None = None


class Model:
    def __init__(self) -> None:
        self.commits: dict[str, MCommit] = {}
        self.order: list[str] = []  # commit ids in creation order
        self.branches: dict[str, MBranch] = {}

    def add_commit(self, cid: str, parents: tuple[str, ...], snapshot: Snapshot) -> MCommit:
        generation = 1 + max((self.commits[p].generation for p in parents), default=0)
        commit = MCommit(cid, parents, dict(snapshot), generation)
        assert cid not in self.commits, f"commit id {cid} reused"
        self.commits[cid] = commit
        self.order.append(cid)
        return commit

    def committed(self, branch: str) -> Snapshot:
        return self.commits[self.branches[branch].head].snapshot

    def view(self, branch: str) -> Snapshot:
        """The branch as a reader sees it: staged rows over the committed snapshot."""
        result = dict(self.committed(branch))
        for key, value in self.branches[branch].staged.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = value
        return result

    def ancestors(self, cid: str) -> set[str]:
        seen = {cid}
        todo = [cid]
        while todo:
            for parent in self.commits[todo.pop()].parents:
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def first_parent_chain(self, cid: str) -> list[str]:
        chain = [cid]
        while self.commits[chain[-1]].parents:
            chain.append(self.commits[chain[-1]].parents[0])
        return chain

    def full_log(self, cid: str) -> list[str]:
        """Every commit reachable from `cid`, by generation descending, then by id."""
        return sorted(self.ancestors(cid), key=lambda c: (-self.commits[c].generation, c))

    def merge_base(self, a: str, b: str) -> str:
        """The best common ancestor: the highest generation one (smallest id on a tie)."""
        common = self.ancestors(a) & self.ancestors(b)
        assert common, "every commit descends from the repository's first commit"
        return min(common, key=lambda c: (-self.commits[c].generation, c))


def diff_snapshots(left: Snapshot, right: Snapshot) -> list[tuple[str, DiffType, Any, Any]]:
    out = []
    for key in sorted(left.keys() | right.keys()):
        lv, rv = left.get(key), right.get(key)
        if lv == rv:
            continue
        kind = DiffType.ADDED if lv is None else DiffType.REMOVED if rv is None else \
            DiffType.CHANGED
        out.append((key, kind, lv, rv))
    return out


def three_way(
    base: Snapshot, source: Snapshot, dest: Snapshot, strategy: MergeStrategy
) -> tuple[Snapshot, list[str]]:
    """The merged snapshot and the keys changed differently on both sides (in key order).

    With MergeStrategy.FAIL the snapshot leaves conflicting keys as on `dest` (the merge is
    refused anyway); the other strategies resolve them.
    """
    result = dict(dest)
    conflicts = []
    for key in sorted(base.keys() | source.keys() | dest.keys()):
        b, s, d = base.get(key), source.get(key), dest.get(key)
        if s == b:  # unchanged on source: keep dest
            continue
        if d in (b, s):  # changed on source only, or the same change on both sides
            take = s
        else:
            conflicts.append(key)
            take = s if strategy is MergeStrategy.SOURCE_WINS else d
        if take is None:
            result.pop(key, None)
        else:
            result[key] = take
    return result, conflicts


# The machine


class GravelerMachine(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        # Block stores fsync every object: on tmpfs, when there is one, that costs nothing.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.tmp = Path(tempfile.mkdtemp(prefix="lakeproxy-stateful-", dir=shm))
        self.loop = asyncio.new_event_loop()
        self.g: Graveler = self.run(self._open())
        self.model = Model()
        self.checks = 0
        self.checked: dict[str, object] = {}  # what each branch was last fully checked at
        self.bytes_at: dict[str, bytes] = {}
        self.run(self.g.create_repository(REPO))
        first = self.run(self.g.get_commit(REPO, MAIN))
        assert first.parents == ()
        self.model.add_commit(first.id, (), {})
        self.metarange_of: dict[frozenset[tuple[str, str]], str] = {
            frozenset(): first.metarange_id
        }
        self.model.branches[MAIN] = MBranch(first.id)

    async def _open(self) -> Graveler:
        if self.kind == "memory":
            store: Any = MemoryMetadataStore()
        else:
            store = await SqliteMetadataStore.open(self.tmp / "metadata.db", synchronous="OFF")
        return Graveler(store, BlockStores(self.tmp / "blocks"))

    def teardown(self) -> None:
        try:
            self.run(self.g.close())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # Helpers

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)  # type: ignore[arg-type]

    def attempt(
        self, label: str, expected: Expected, call: Callable[[], Awaitable[T]]
    ) -> T | None:
        """Run `call`; check it raises exactly what the model predicts."""
        event(f"{label}: {expected.error.__name__ if expected.error else 'ok'}")
        try:
            result = self.run(call())
        except LakeproxyError as exc:
            assert expected.error is not None, f"unexpected {type(exc).__name__}: {exc}"
            assert type(exc) is expected.error, (
                f"expected {expected.error.__name__}, got {type(exc).__name__}: {exc}"
            )
            if expected.conflicts is not None:
                assert isinstance(exc, MergeConflict)
                assert exc.conflicts == list(expected.conflicts)
            return None
        assert expected.error is None, (
            f"expected {expected.error.__name__}"
            + (f" on {list(expected.conflicts)}" if expected.conflicts else "")
            + ", but the operation succeeded"
        )
        return result

    def pick_branch(self, i: int) -> str:
        names = sorted(self.model.branches)
        return names[i % len(names)]

    def pick_commit(self, i: int) -> str:
        return self.model.order[i % len(self.model.order)]

    def short(self, cid: str) -> str:
        return f"c{self.model.order.index(cid)}"

    def record(self, commit: Commit, parents: tuple[str, ...], snapshot: Snapshot) -> None:
        """Add a commit the package made to the model; check its parents and contents."""
        assert commit.parents == parents
        mc = self.model.add_commit(commit.id, parents, snapshot)
        assert commit.generation == mc.generation
        entries = self.run(self._entries(commit.id))
        assert {k: e.etag for k, e in entries.items()} == {
            k: md5(v) for k, v in snapshot.items()
        }, "committed snapshot"
        self._same_tree_for_same_entries(commit, entries)

    def _same_tree_for_same_entries(self, commit: Commit, entries: dict[str, Entry]) -> None:
        """Snapshots are content-addressed trees with content-defined range boundaries, so
        the same entries always make the same metarange, whatever history built them (this is
        what lets a commit of identical re-uploads be refused with NoChanges, and a diff skip
        shared ranges)."""
        same = frozenset((k, e.address) for k, e in entries.items())
        metarange = self.metarange_of.setdefault(same, commit.metarange_id)
        assert commit.metarange_id == metarange, (
            f"{self.short(commit.id)} holds the same entries as an earlier commit, but its "
            f"metarange {commit.metarange_id} differs from {metarange}"
        )

    async def _entries(self, ref: str) -> dict[str, Entry]:
        return {k: e async for k, e in self.g.iter_entries(REPO, ref)}

    @initialize(
        files=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(CONTENTS)),
        branches=st.integers(0, 2),
    )
    def populate(self, files: dict[str, bytes], branches: int) -> None:
        """Start from a committed main and a few branches of it, so rules meet history."""
        for key, content in files.items():
            self._put(MAIN, key, content)
        if files:
            self._commit(MAIN)
        for name in OTHER_BRANCHES[:branches]:
            note(f"create branch {name} from {MAIN}")
            self._create_branch(name, MAIN, self.model.branches[MAIN].head)

    # Rules: writes

    @rule(b=st.integers(0, 9), key=st.sampled_from(KEYS), content=st.sampled_from(CONTENTS))
    def put(self, b: int, key: str, content: bytes) -> None:
        self._put(self.pick_branch(b), key, content)

    @rule(b=st.integers(0, 9), key=st.sampled_from(KEYS))
    def delete(self, b: int, key: str) -> None:
        self._delete(self.pick_branch(b), key)

    @rule(b=st.integers(0, 9), edits=EDITS, then_commit=st.booleans())
    def edit(self, b: int, edits: list[tuple[str, bytes | None]], then_commit: bool) -> None:
        """Several puts and deletes (None) on one branch, optionally followed by a commit."""
        self.edit_branch(self.pick_branch(b), edits, then_commit=then_commit)

    @rule(b=st.integers(0, 9), prefix=st.sampled_from(PREFIXES), then_commit=st.booleans())
    def delete_prefix(self, b: int, prefix: str, then_commit: bool) -> None:
        """Delete every key under a prefix (like `aws s3 rm --recursive`)."""
        branch = self.pick_branch(b)
        for key in sorted(self.model.view(branch)):
            if key.startswith(prefix):
                self._delete(branch, key)
        if then_commit:
            self._commit(branch)

    @rule(b=st.integers(0, 9), k=st.integers(0, 9), then_commit=st.booleans())
    def reupload(self, b: int, k: int, then_commit: bool) -> None:
        """Upload a committed key's bytes again: no change, so a commit has nothing to do."""
        branch = self.pick_branch(b)
        committed = self.model.committed(branch)
        if committed:
            key = sorted(committed)[k % len(committed)]
            self._put(branch, key, committed[key])
        if then_commit:
            self._commit(branch)

    def edit_branch(
        self, branch: str, edits: list[tuple[str, bytes | None]], *, then_commit: bool
    ) -> None:
        for key, content in edits:
            if content is None:
                self._delete(branch, key)
            else:
                self._put(branch, key, content)
        if then_commit:
            self._commit(branch)

    def _put(self, branch: str, key: str, content: bytes) -> None:
        note(f"put {branch}:{key} = {content!r}")
        entry = self.run(self.g.put_object(REPO, branch, key, body(content)))
        assert entry.size == len(content) and entry.etag == md5(content)
        self.model.branches[branch].staged[key] = content

    def _delete(self, branch: str, key: str) -> None:
        note(f"delete {branch}:{key}")
        mb = self.model.branches[branch]
        expected = Expected(ObjectNotFound if key not in self.model.view(branch) else None)
        self.attempt("delete", expected, lambda: self.g.delete_entry(REPO, branch, key))
        if expected.error is None:
            if key in self.model.committed(branch):
                mb.staged[key] = None
            else:
                mb.staged.pop(key)

    @rule(b=st.integers(0, 9))
    def commit(self, b: int) -> None:
        # Mostly commit a branch with staged rows; a clean one only when all are clean.
        dirty = sorted(name for name, mb in self.model.branches.items() if mb.staged)
        self._commit(dirty[b % len(dirty)] if dirty else self.pick_branch(b))

    def _commit(self, branch: str) -> None:
        mb = self.model.branches[branch]
        new = self.model.view(branch)
        unchanged = new == self.model.committed(branch)
        note(f"commit {branch}" + (" (expect NoChanges)" if unchanged else ""))
        result = self.attempt(
            "commit",
            Expected(NoChanges if unchanged else None),
            lambda: self.g.commit(REPO, branch, "step"),
        )
        # A commit that changes nothing forgets the staged rows (they were all no-ops).
        mb.staged = {}
        if result is not None:
            self.record(result, (mb.head,), new)
            mb.head = result.id
            note(f"  -> {self.short(result.id)}")

    # Rules: resets

    @rule(b=st.integers(0, 9))
    def reset_all(self, b: int) -> None:
        branch = self.pick_branch(b)
        note(f"reset {branch}")
        self.run(self.g.reset(REPO, branch))
        self.model.branches[branch].staged = {}

    @rule(b=st.integers(0, 9), key=st.sampled_from(KEYS))
    def reset_key(self, b: int, key: str) -> None:
        branch = self.pick_branch(b)
        note(f"reset {branch} key={key}")
        self.run(self.g.reset(REPO, branch, key=key))
        self.model.branches[branch].staged.pop(key, None)

    @rule(b=st.integers(0, 9), prefix=st.sampled_from(PREFIXES))
    def reset_prefix(self, b: int, prefix: str) -> None:
        branch = self.pick_branch(b)
        note(f"reset {branch} prefix={prefix!r}")
        self.run(self.g.reset(REPO, branch, prefix=prefix))
        staged = self.model.branches[branch].staged
        for key in [k for k in staged if k.startswith(prefix)]:
            del staged[key]

    # Rules: branches

    @rule(name=st.sampled_from(OTHER_BRANCHES), b=st.integers(0, 9))
    def create_branch_from_branch(self, name: str, b: int) -> None:
        source = self.pick_branch(b)
        note(f"create branch {name} from {source}")
        self._create_branch(name, source, self.model.branches[source].head)

    @rule(name=st.sampled_from(OTHER_BRANCHES), c=st.integers(0, 99))
    def create_branch_from_commit(self, name: str, c: int) -> None:
        cid = self.pick_commit(c)
        note(f"create branch {name} from commit {self.short(cid)}")
        self._create_branch(name, cid, cid)

    def _create_branch(self, name: str, source: str, head: str) -> None:
        exists = name in self.model.branches
        created = self.attempt(
            "create branch",
            Expected(BranchExists if exists else None),
            lambda: self.g.create_branch(REPO, name, source),
        )
        if created is not None:
            assert created.head == head
            self.model.branches[name] = MBranch(head)

    @rule(name=st.sampled_from(BRANCH_NAMES))
    def delete_branch(self, name: str) -> None:
        note(f"delete branch {name}")
        if name == MAIN:
            expected = Expected(InvalidArgument)
        elif name not in self.model.branches:
            expected = Expected(BranchNotFound)
        else:
            expected = Expected()
        self.attempt("delete branch", expected, lambda: self.g.delete_branch(REPO, name))
        if expected.error is None:
            del self.model.branches[name]

    # Rules: merge

    @rule(s=st.integers(0, 9), d=st.integers(0, 9), strategy=st.sampled_from(MergeStrategy))
    def merge_branch(self, s: int, d: int, strategy: MergeStrategy) -> None:
        dest = self.pick_branch(d)
        others = [name for name in sorted(self.model.branches) if name != dest]
        # s == 0 (or a lone branch) merges a branch into itself, which must be refused.
        source = others[s % len(others)] if s and others else dest
        self._merge(source, self.model.branches[source].head, dest, strategy,
                    same_branch=source == dest)

    @precondition(lambda self: len(self.model.branches) >= 2)
    @rule(
        s=st.integers(0, 9),
        d=st.integers(0, 9),
        source_edits=EDITS,
        dest_edits=EDITS,
        strategy=st.sampled_from(MergeStrategy),
    )
    def diverge_and_merge(
        self,
        s: int,
        d: int,
        source_edits: list[tuple[str, bytes | None]],
        dest_edits: list[tuple[str, bytes | None]],
        strategy: MergeStrategy,
    ) -> None:
        """Commit edits on two branches, then merge one into the other: conflicts happen."""
        dest = self.pick_branch(d)
        others = [name for name in sorted(self.model.branches) if name != dest]
        source = others[s % len(others)]
        self.edit_branch(source, source_edits, then_commit=True)
        self.edit_branch(dest, dest_edits, then_commit=True)
        self._merge(source, self.model.branches[source].head, dest, strategy, same_branch=False)

    @rule(c=st.integers(0, 99), d=st.integers(0, 9), strategy=st.sampled_from(MergeStrategy))
    def merge_commit(self, c: int, d: int, strategy: MergeStrategy) -> None:
        cid = self.pick_commit(c)
        self._merge(cid, cid, self.pick_branch(d), strategy, same_branch=False)

    def _dirty(self, branch: str) -> bool:
        """Whether merging into or replaying onto `branch` is refused for uncommitted changes.

        Staged rows that change nothing (identical re-uploads, deletes undone) do not count:
        the core drops them before it goes on.
        """
        mb = self.model.branches[branch]
        if mb.staged and self.model.view(branch) == self.model.committed(branch):
            mb.staged = {}
        return bool(mb.staged)

    def _merge(
        self, source: str, src_head: str, dest: str, strategy: MergeStrategy, *,
        same_branch: bool,
    ) -> None:
        m = self.model
        mb = m.branches[dest]
        label = source if source in m.branches else self.short(source)
        note(f"merge {label} into {dest} ({strategy.value})")
        result: Snapshot = {}
        if same_branch:
            expected = Expected(InvalidArgument)
        elif self._dirty(dest):
            expected = Expected(UncommittedChanges)
        elif src_head in m.ancestors(mb.head):
            expected = Expected(NoChanges)
        else:
            base = m.merge_base(src_head, mb.head)
            result, conflicts = three_way(
                m.commits[base].snapshot, m.commits[src_head].snapshot,
                m.commits[mb.head].snapshot, strategy,
            )
            note(f"  base {self.short(base)}, conflicts {conflicts}")
            event(f"merge {strategy.value}: {min(len(conflicts), 2)}+ conflicting keys")
            if conflicts and strategy is MergeStrategy.FAIL:
                expected = Expected(MergeConflict, tuple(conflicts))
            else:
                expected = Expected()
        merged = self.attempt(
            f"merge {strategy.value}",
            expected,
            lambda: self.g.merge(REPO, source, dest, strategy=strategy),
        )
        if merged is not None:
            self.record(merged, (mb.head, src_head), result)
            mb.head = merged.id
            note(f"  -> {self.short(merged.id)}")

    # Rules: revert and cherry-pick

    @rule(b=st.integers(0, 9), c=st.integers(0, 99), parent=st.sampled_from([1, 2]))
    def revert(self, b: int, c: int, parent: int) -> None:
        branch = self.pick_branch(b)
        reachable = self.model.full_log(self.model.branches[branch].head)
        self._replay(branch, reachable[c % len(reachable)], parent, undo=True)

    @rule(b=st.integers(0, 9), c=st.integers(0, 99), parent=st.sampled_from([1, 2]))
    def cherry_pick(self, b: int, c: int, parent: int) -> None:
        self._replay(self.pick_branch(b), self.pick_commit(c), parent, undo=False)

    def _replay(self, branch: str, target: str, parent: int, *, undo: bool) -> None:
        m = self.model
        mb = m.branches[branch]
        tc = m.commits[target]
        number = parent if len(tc.parents) > 1 else None
        what = "revert" if undo else "cherry-pick"
        note(f"{what} {self.short(target)} on {branch}"
             + (f" (parent {number})" if number else ""))
        parent_snap = m.commits[tc.parents[(number or 1) - 1]].snapshot if tc.parents else {}
        base, source = (tc.snapshot, parent_snap) if undo else (parent_snap, tc.snapshot)
        dest = m.committed(branch)
        result: Snapshot = {}
        if self._dirty(branch):
            expected = Expected(UncommittedChanges)
        else:
            result, conflicts = three_way(base, source, dest, MergeStrategy.FAIL)
            if conflicts:
                expected = Expected(MergeConflict, tuple(conflicts))
            elif result == dest:
                expected = Expected(NoChanges)
            else:
                expected = Expected()
        op = self.g.revert if undo else self.g.cherry_pick
        done = self.attempt(
            what, expected, lambda: op(REPO, branch, target, parent_number=number)
        )
        if done is not None:
            self.record(done, (mb.head,), result)
            mb.head = done.id
            note(f"  -> {self.short(done.id)}")

    # Invariants

    @invariant()
    def everything_matches_the_model(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        g, m = self.g, self.model
        branches = await g.list_branches(REPO)
        assert {b.name: b.head for b in branches} == {
            name: mb.head for name, mb in m.branches.items()
        }
        names = sorted(m.branches)
        # Paginated reads cost more: one branch per step gets them, in turn.
        self.checks += 1
        paged = names[self.checks % len(names)]
        main_head = m.branches[MAIN].head
        for name in names:
            mb = m.branches[name]
            state = (mb.head, main_head, tuple(sorted(mb.staged.items())))
            if name == paged or self.checked.get(name) != state:
                await self._check_branch(name, paged=name == paged)
                self.checked[name] = state
            else:
                # Nothing this branch's model depends on changed: a full listing suffices to
                # see that the step did not disturb it.
                view = m.view(name)
                got = {k: e.etag async for k, e in g.iter_entries(REPO, name)}
                assert got == {k: md5(v) for k, v in view.items()}, f"branch {name} changed"
        for name in set(self.checked) - set(names):
            del self.checked[name]

    async def _read(self, ref: str, key: str) -> bytes:
        """The bytes at `key`; an address once read is not read again (objects never change)."""
        entry = await self.g.get_entry(REPO, ref, key)
        if entry.address not in self.bytes_at:
            self.bytes_at[entry.address] = await read(self.g, REPO, ref, key)
        data = self.bytes_at[entry.address]
        assert (entry.size, entry.etag) == (len(data), md5(data))
        return data

    async def _check_branch(self, name: str, *, paged: bool) -> None:
        g, m = self.g, self.model
        mb = m.branches[name]
        view, committed = m.view(name), m.committed(name)
        where = f"branch {name}"

        # Reads: every key of the key space, bytes included.
        for key in KEYS:
            if key in view:
                assert await self._read(name, key) == view[key], f"{where}: {key}"
            else:
                with pytest.raises(ObjectNotFound):
                    await g.get_entry(REPO, name, key)

        # Whether the branch counts as having uncommitted changes (merge and revert refuse
        # such a branch): the model's staged rows, as deletes of staged-only keys drop rows.
        branch = await g.get_branch(REPO, name)
        assert await g.has_uncommitted(await g.get_repository(REPO), branch) == bool(
            mb.staged
        ), f"{where}: has_uncommitted"

        # Listings, with and without the uncommitted changes.
        for ref, snap in ((name, view), (f"{name}@", committed)):
            got = [(k, e) async for k, e in g.iter_entries(REPO, ref)]
            assert [(k, e.size, e.etag) for k, e in got] == [
                (k, len(snap[k]), md5(snap[k])) for k in sorted(snap)
            ], f"iter_entries {ref}"
            for prefix in ("a/", "b/"):
                got_keys = [k async for k, _ in g.iter_entries(REPO, ref, prefix=prefix)]
                assert got_keys == sorted(k for k in snap if k.startswith(prefix)), (
                    f"iter_entries {ref} prefix {prefix!r}"
                )
        for prefix in ("", "b/"):
            want = _rolled_up(view, prefix)
            page = await g.list_entries(REPO, name, prefix=prefix, delimiter="/")
            assert ([k for k, _ in page.entries], page.common_prefixes) == want, (
                f"{where}: list {prefix!r}"
            )
            assert not page.has_more
            if paged:
                assert await self._list_one_by_one(name, prefix) == want, (
                    f"{where}: list {prefix!r} one item per page"
                )

        # History: first-parent chain in order, and every ancestor by generation then id.
        commits, more = await g.log(REPO, name, first_parent=True, limit=1000)
        assert not more
        assert [c.id for c in commits] == m.first_parent_chain(mb.head), f"{where}: log"
        commits, more = await g.log(REPO, name, limit=1000)
        assert not more
        got_ids = [c.id for c in commits]
        want_ids = m.full_log(mb.head)
        assert set(got_ids) == set(want_ids), f"{where}: full log"
        assert got_ids == want_ids, f"{where}: full log order"
        for c in commits:
            mc = m.commits[c.id]
            assert (c.parents, c.generation) == (mc.parents, mc.generation)
        if paged:
            for first_parent, want_log in (
                (True, m.first_parent_chain(mb.head)), (False, want_ids)
            ):
                assert await self._log_in_pages(name, first_parent) == want_log, (
                    f"{where}: log in pages (first_parent={first_parent})"
                )

        # Diffs: committed against main, and uncommitted against the head.
        for uncommitted, want_changes in (
            (False, diff_snapshots(m.committed(MAIN), committed)),
            (True, diff_snapshots(committed, view)),
        ):
            what = f"diff_uncommitted {name}" if uncommitted else f"diff main..{name}"
            changes = await self._diff_pages(name, uncommitted, 1000)
            assert _changes(changes) == want_changes, what
            if paged:
                changes = await self._diff_pages(name, uncommitted, 1)
                assert _changes(changes) == want_changes, f"{what}, one change per page"

    async def _list_one_by_one(self, ref: str, prefix: str) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        prefixes: list[str] = []
        after = ""
        while True:
            page = await self.g.list_entries(
                REPO, ref, prefix=prefix, delimiter="/", after=after, limit=1
            )
            items = [k for k, _ in page.entries] + page.common_prefixes
            assert len(items) == 1 or (not items and not keys and not prefixes), page
            keys += [k for k, _ in page.entries]
            prefixes += page.common_prefixes
            if not page.has_more:
                return keys, prefixes
            assert page.next_after == items[0], page
            after = page.next_after

    async def _log_in_pages(self, ref: str, first_parent: bool) -> list[str]:
        ids: list[str] = []
        while True:
            page, more = await self.g.log(
                REPO, ref, first_parent=first_parent, after=ids[-1] if ids else None, limit=2
            )
            assert len(page) == 2 or not more
            ids += [c.id for c in page]
            if not more:
                return ids

    async def _diff_pages(self, name: str, uncommitted: bool, limit: int) -> list[Change]:
        changes: list[Change] = []
        while True:
            after = changes[-1].key if changes else ""
            if uncommitted:
                page, more = await self.g.diff_uncommitted(REPO, name, after=after, limit=limit)
            else:
                page, more = await self.g.diff(REPO, MAIN, name, after=after, limit=limit)
            assert len(page) == limit or not more
            assert page or not changes, "an empty page after a page that announced more"
            changes += page
            if not more:
                return changes


def _rolled_up(snapshot: Snapshot, prefix: str) -> tuple[list[str], list[str]]:
    """An S3 listing with delimiter "/": the keys and the common prefixes under `prefix`."""
    keys, prefixes = [], set()
    for key in sorted(snapshot):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if "/" in rest:
            prefixes.add(prefix + rest[: rest.index("/") + 1])
        else:
            keys.append(key)
    return keys, sorted(prefixes)


def _changes(changes: list[Change]) -> list[tuple[str, DiffType, Any, Any]]:
    return [
        (
            c.key,
            c.type,
            None if c.left is None else ETAG_TO_CONTENT[c.left.etag],
            None if c.right is None else ETAG_TO_CONTENT[c.right.etag],
        )
        for c in changes
    ]


class SqliteGravelerMachine(GravelerMachine):
    kind = "sqlite"


# Real range sizes put this key space in a single range. Tiny ones give every snapshot a
# several-level tree, so diffs skip shared subtrees, commits and merges rewrite some ranges
# and take others whole, and cursors seek across ranges.
TINY_SHAPE = Shape(leaf_mask=1, leaf_min=1, leaf_max=2, index_mask=1, index_min=2, index_max=2)


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=30,
        deadline=None,
        database=None,
        print_blob=True,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
    )


# Passing takes well under a minute. Hypothesis may shrink a failure for up to five minutes:
# let it finish, so that the report shows the minimal failing sequence of steps.
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("kind", "machine", "max_examples"),
    [
        ("memory", GravelerMachine, 150),
        ("memory-tiny-ranges", GravelerMachine, 200),
        ("sqlite", SqliteGravelerMachine, 30),
    ],
)
def test_graveler_matches_model(
    kind: str, machine: type[GravelerMachine], max_examples: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kind.endswith("tiny-ranges"):
        # Every tree the core writes goes through apply_changes and its default shape.
        assert apply_changes.__defaults__ == (DEFAULT_SHAPE,), "apply_changes changed shape"
        monkeypatch.setattr(apply_changes, "__defaults__", (TINY_SHAPE,))
    run_state_machine_as_test(machine, settings=_settings(max_examples))
