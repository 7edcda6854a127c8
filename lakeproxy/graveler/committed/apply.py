"""Applying a sorted stream of changes to a tree, rewriting only the ranges they touch."""

from __future__ import annotations

import asyncio
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator

from lakeproxy.graveler.committed.tree import Index, Leaf, NodeRef, TreeStore
from lakeproxy.graveler.committed.writer import DEFAULT_SHAPE, Shape, TreeWriter
from lakeproxy.graveler.model import IDENTITY_BYTES

# A change is (key, encoded entry) or (key, None) for a removal.
ChangeBatch = tuple[list[bytes], list[bytes | None]]

_FLUSH_BYTES = 4 * 1024 * 1024
_WRITES_IN_FLIGHT = 2
_PREFETCH_NODES = 1024
_READS_IN_FLIGHT = 3
_YIELD_EVERY = 512


class ChangeStream:
    """Batches of sorted changes, consumed with a cursor; refilled asynchronously."""

    def __init__(self, batches: AsyncIterator[ChangeBatch]) -> None:
        self._batches = batches
        self.keys: list[bytes] = []
        self.values: list[bytes | None] = []
        self.pos = 0
        self.count = 0
        self._done = False

    @classmethod
    def from_lists(cls, keys: list[bytes], values: list[bytes | None]) -> ChangeStream:
        async def one() -> AsyncIterator[ChangeBatch]:
            yield keys, values

        return cls(one())

    async def fill(self) -> bool:
        """Make the cursor point at a change; False once every change was consumed."""
        while self.pos >= len(self.keys):
            if self._done:
                return False
            try:
                self.keys, self.values = await anext(self._batches)
            except StopAsyncIteration:
                self._done = True
                self.keys, self.values = [], []
                return False
            self.pos = 0
        return True


def _touched(node: Index, ckeys: list[bytes], pos: int, rightmost: bool) -> list[NodeRef]:
    """The children of `node` that the sorted change keys ckeys[pos:] fall in."""
    end = len(ckeys)
    out: list[NodeRef] = []
    pos = bisect_right(ckeys, node.refs[0].first, pos) - 1 if pos < end else pos
    pos = max(pos, 0)
    last = len(node.refs) - 1
    for i, child in enumerate(node.refs):
        if pos >= end:
            break
        nxt = end if rightmost and i == last else bisect_right(ckeys, child.last, pos)
        if nxt > pos and child.count:
            out.append(child)
        pos = nxt
    return out


async def preload(
    trees: TreeStore, node: Index, keys: list[bytes], start: int, rightmost: bool
) -> None:
    """Load the nodes below `node` that the sorted keys[start:] fall in, level by level down
    to the ranges: one round trip per level instead of one per node (at most
    `_PREFETCH_NODES` a level)."""
    frontier: list[tuple[Index, bool]] = [(node, rightmost)]
    while frontier:
        wanted: list[NodeRef] = []
        for parent, right in frontier:
            wanted += _touched(parent, keys, start, right)
            if len(wanted) >= _PREFETCH_NODES:
                break
        missing = [r.id for r in wanted if r.id not in trees.cache]
        if missing:
            await trees.load_many(missing)
        frontier = []
        for ref in wanted:
            child = trees.cache.get(ref.id)
            if isinstance(child, Index):
                frontier.append((child, rightmost and ref.last == node.refs[-1].last))


async def warm(trees: TreeStore, root: NodeRef, keys: list[bytes]) -> None:
    """Bring into the cache the nodes of the tree at `root` that changes at the sorted `keys`
    will rewrite: a caller with time to spare (waiting for a write) makes the walk that
    follows find them in memory."""
    if root.count == 0 or not keys:
        return
    node = await trees.load(root.id)
    if isinstance(node, Index):
        await preload(trees, node, keys, 0, True)


class _Applier:
    def __init__(self, trees: TreeStore, changes: ChangeStream, writer: TreeWriter) -> None:
        self.trees = trees
        self.changes = changes
        self.writer = writer
        self.since_yield = 0
        self.writes: list[asyncio.Task[None]] = []
        self.reads: list[asyncio.Task[None]] = []

    async def walk(self, ref: NodeRef, rightmost: bool) -> None:
        changes = self.changes
        has_changes = await changes.fill() and (
            rightmost or changes.keys[changes.pos] <= ref.last
        )
        if not has_changes and self.writer.clean_through(ref.level):
            if ref.count:
                self.writer.add_ref(ref)
            return
        if ref.count == 0:
            await self.merge_leaf(Leaf([], []), None)
            return
        node = await self.trees.load(ref.id)
        if isinstance(node, Index):
            await self.read_ahead(node, rightmost)
            await self.walk_children(node, rightmost)
        else:
            await self.merge_leaf(node, None if rightmost else ref.last)
        if self.writer.pending_bytes >= _FLUSH_BYTES:
            await self.flush()

    async def walk_children(self, node: Index, rightmost: bool) -> None:
        """Walk an index range's children; runs of children before the next change are taken
        whole, in bulk, whenever nothing is pending below them."""
        refs, lasts, changes, writer = node.refs, node.lasts, self.changes, self.writer
        last = len(refs) - 1
        i = 0
        while i <= last:
            if await changes.fill():
                j = bisect_left(lasts, changes.keys[changes.pos], i)
            else:
                j = last + 1
            if rightmost:
                j = min(j, last)  # the rightmost child takes every change past the end
            if j > i and writer.clean_through(refs[i].level):
                writer.add_ref_run(refs, i, j)
                i = j
                continue
            if i < last:
                # While this child is worked on, read what the next one will need.
                sibling = self.trees.cache.get(refs[i + 1].id)
                if isinstance(sibling, Index):
                    await self.read_ahead(sibling, rightmost and i + 1 == last)
            await self.walk(refs[i], rightmost and i == last)
            i += 1

    async def prefetch(self, node: Index, rightmost: bool) -> None:
        """Load the nodes the current batch of changes falls in (see `preload`)."""
        changes = self.changes
        if changes.pos >= len(changes.keys):
            return  # only the walk advances the stream: read ahead within the current batch
        await preload(self.trees, node, changes.keys, changes.pos, rightmost)

    async def read_ahead(self, node: Index, rightmost: bool) -> None:
        """Prefetch what `node`'s subtree needs in the background, a bounded number at once."""
        self.reads = [t for t in self.reads if not t.done()]
        if len(self.reads) < _READS_IN_FLIGHT:
            self.reads.append(asyncio.create_task(self.prefetch(node, rightmost)))

    async def flush(self) -> None:
        """Store the nodes built so far in the background, a bounded number at a time."""
        if len(self.writes) >= _WRITES_IN_FLIGHT:
            await self.writes.pop(0)
        nodes = self.writer.take_pending()
        self.writes.append(asyncio.create_task(self.trees.write(nodes)))

    async def drain(self) -> None:
        for task in self.reads:
            task.cancel()
        await asyncio.gather(*self.reads, return_exceptions=True)
        writes, self.writes = self.writes, []
        try:
            await asyncio.gather(*writes)
        finally:
            for task in writes:
                task.cancel()

    async def merge_leaf(self, leaf: Leaf, bound: bytes | None) -> None:
        """Merge the changes up to `bound` (all remaining when None) into one range."""
        keys, vals = leaf.keys, leaf.values
        n = len(keys)
        i = 0
        writer, changes = self.writer, self.changes
        while await changes.fill():
            ckeys, cvals = changes.keys, changes.values
            start = pos = changes.pos
            end = len(ckeys)
            stop = bound is not None and ckeys[end - 1] > bound
            if stop:
                end = bisect_right(ckeys, bound, pos, end)
            if end - pos > _YIELD_EVERY:  # keep each stretch without a yield short
                end, stop = pos + _YIELD_EVERY, False
            while pos < end:
                if i >= n:
                    writer.add_new(ckeys, cvals, pos, end)
                    pos = end
                    break
                ck = ckeys[pos]
                j = bisect_left(keys, ck, i)
                if j > i:
                    writer.add_range_run(keys, vals, i, j)
                    i = j
                cv = cvals[pos]
                if i < n and keys[i] == ck:
                    old = vals[i]
                    i += 1
                    if cv is not None:
                        # Same identity: keep the committed entry, it is no change.
                        writer.add(ck, old if old[:IDENTITY_BYTES] == cv[:IDENTITY_BYTES] else cv)
                elif cv is not None:
                    writer.add(ck, cv)
                pos += 1
            changes.count += pos - start
            changes.pos = pos
            self.since_yield += pos - start
            if self.since_yield >= _YIELD_EVERY:
                self.since_yield = 0
                await asyncio.sleep(0)
            if stop:
                break
        if i < n:
            writer.add_range_run(keys, vals, i, n)


async def apply_changes(
    trees: TreeStore,
    base: NodeRef,
    changes: ChangeStream,
    shape: Shape = DEFAULT_SHAPE,
) -> tuple[NodeRef, TreeWriter]:
    """Apply sorted `changes` to the tree at `base`.

    Nodes whose key span holds no change are taken whole, so the work and the bytes written
    are proportional to the number of changes, not to the size of the tree. `base` must have
    been built with the same `shape`.

    New nodes are stored as they accumulate; the last of them are left in
    `writer.pending_nodes` for the caller to store in the same transaction as the commit that
    references them (a crash before that leaves only unreferenced nodes behind).

    Returns:
        The root of the new tree and the writer (for its statistics).
    """
    writer = TreeWriter(shape, trees.cache)
    applier = _Applier(trees, changes, writer)
    try:
        await applier.walk(base, rightmost=True)
    finally:
        await applier.drain()
    root = writer.finish()
    # A root taken whole from the base may be an index range with a single child, where a
    # tree built from scratch has that child as its root: use the child, so equal contents
    # always get equal metarange ids (and an unchanged tree is recognised as unchanged).
    while root.level > 0:
        node = await trees.load(root.id)
        if not isinstance(node, Index) or len(node.refs) != 1:
            break
        root = node.refs[0]
    if root.count:
        trees.cache.remember_root(root)
    return root, writer
