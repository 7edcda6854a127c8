"""Applying a sorted stream of changes to a tree, rewriting only the ranges they touch."""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator

from lakeproxy.graveler.committed.tree import Index, Leaf, NodeRef, TreeStore
from lakeproxy.graveler.committed.writer import DEFAULT_SHAPE, Shape, TreeWriter
from lakeproxy.graveler.model import IDENTITY_BYTES
from lakeproxy.pause import Pacer

# A change is (key, encoded entry) or (key, None) for a removal.
ChangeBatch = tuple[list[bytes], list[bytes | None]]

_FLUSH_BYTES = 4 * 1024 * 1024
_WRITES_IN_FLIGHT = 2
_READ_CHUNK = 256  # ranges read in one round trip by the read-ahead
_READS_IN_FLIGHT = 2  # round trips of the read-ahead at a time
_READ_AHEAD = 768  # ranges the read-ahead may be past the one being rewritten
_READ_AHEAD_FROM = 256  # changes in a batch for the read-ahead to start
_STRETCH = 64  # changes merged between two looks at the clock


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

    def read_ahead(self, ahead: _ReadAhead) -> None:
        """Let `ahead` read the batches (one ahead) and the ranges they touch."""
        self._batches = ahead.batches(self._batches)

    async def close(self) -> None:
        """Stop reading the batches (the ones not consumed are never read)."""
        close = getattr(self._batches, "aclose", None)
        if close is not None:
            await close()
        self._done = True
        self.keys, self.values, self.pos = [], [], 0

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


def _touched(
    node: Index, ckeys: list[bytes], lo: int, hi: int, rightmost: bool
) -> list[tuple[int, int, int]]:
    """The children of `node` (by position) that the sorted change keys ckeys[lo:hi] fall
    in, each with the slice of those keys it takes.

    Every key of ckeys[lo:hi] must belong to `node`: a child takes the keys after its left
    sibling's last key up to its own last key (the first child also those before it, the
    rightmost child of the tree every key past the end). One binary search per touched
    child: the cost follows the changes, not the fan-out.
    """
    out: list[tuple[int, int, int]] = []
    counts, lasts = node.counts, node.lasts
    last = len(lasts) - 1
    i = 0
    while lo < hi:
        i = bisect_left(lasts, ckeys[lo], i)
        if i > last:
            if not rightmost:
                break  # past the node's end: not its keys (the caller sliced them wrongly)
            i = last
        nxt = hi if i == last else bisect_right(ckeys, lasts[i], lo, hi)
        if counts[i]:
            out.append((i, lo, nxt))
        lo = nxt
        i += 1
    return out


async def touched_ranges(trees: TreeStore, root: Index, keys: list[bytes]) -> list[NodeRef]:
    """The ranges (level 0) of the tree under `root` that the sorted `keys` fall in, in order;
    index ranges missing from the cache are read a level at a time (one round trip each)."""
    found: list[NodeRef] = []
    # (index range, the slice of `keys` that falls in it, whether it ends the tree)
    frontier: list[tuple[Index, int, int, bool]] = [(root, 0, len(keys), True)]
    while frontier:
        wanted: list[tuple[NodeRef, int, int, bool]] = []
        for parent, lo, hi, right in frontier:
            end = parent.width - 1
            wanted += [
                (parent.ref(i), a, b, right and i == end)
                for i, a, b in _touched(parent, keys, lo, hi, right)
            ]
        missing = [r.id for r, *_ in wanted if r.level > 0 and r.id not in trees.cache]
        if missing:
            await trees.load_many(missing)
        elif len(keys) >= _READ_AHEAD_FROM:
            await asyncio.sleep(0)  # many keys: a level's work is a slice of its own
        frontier = []
        for ref, lo, hi, right in wanted:
            if ref.level == 0:
                found.append(ref)
                continue
            child = trees.cache.get(ref.id)
            if isinstance(child, Index):
                frontier.append((child, lo, hi, right))
    return found


async def warm(trees: TreeStore, root: NodeRef, keys: list[bytes]) -> None:
    """Bring into the cache the nodes of the tree at `root` that changes at the sorted `keys`
    will rewrite: a caller with time to spare (waiting for a write) makes the walk that
    follows find them in memory."""
    if root.count == 0 or not keys:
        return
    node = await trees.load(root.id)
    if isinstance(node, Index):
        await trees.load_many([r.id for r in await touched_ranges(trees, node, keys)])


class _ReadAhead:
    """Reads the batches of changes one ahead of the walk, and the ranges each batch will
    rewrite a few round trips ahead of the range being rewritten.

    The walk then finds the ranges it needs in the cache instead of reading them one at a
    time; the read-ahead stays at most `_READ_AHEAD` ranges past the walk, so what it reads
    is still cached when the walk gets there.
    """

    def __init__(self, trees: TreeStore, base: NodeRef) -> None:
        self.trees = trees
        self.base = base
        self.walked = b""  # the last key of the last range the walk finished
        self.done = False  # the walk finished every range
        self._progress = asyncio.Event()
        self._queue: asyncio.Queue[list[bytes] | None] = asyncio.Queue()
        self._loader: asyncio.Task[None] | None = None
        self._source: AsyncIterator[ChangeBatch] | None = None
        self._indexed = base.count > 0 and base.level > 0  # else there is nothing to read

    def batches(self, source: AsyncIterator[ChangeBatch]) -> AsyncIterator[ChangeBatch]:
        """`source`, with the next batch read while the current one is applied; the ranges
        a batch touches are read from the moment it arrives."""

        def fetch() -> asyncio.Future[ChangeBatch | None]:
            task = asyncio.ensure_future(anext(source, None))
            task.add_done_callback(self._arrived)
            return task

        async def ahead() -> AsyncIterator[ChangeBatch]:
            pending = fetch()
            try:
                while (batch := await pending) is not None:
                    pending = fetch()
                    yield batch
            finally:
                if not pending.done():
                    pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

        self._source = ahead()
        return self._source

    def _arrived(self, task: asyncio.Future[ChangeBatch | None]) -> None:
        if task.cancelled() or task.exception() is not None or self.done or not self._indexed:
            return
        batch = task.result()
        # A small change needs no read-ahead: `apply_changes` reads its ranges in one
        # round trip before the walk starts.
        if batch is not None and len(batch[0]) >= _READ_AHEAD_FROM:
            self._queue.put_nowait(batch[0])
            if self._loader is None:
                self._loader = asyncio.create_task(self._load())

    def passed(self, last: bytes) -> None:
        """The walk finished the range ending at `last`."""
        self.walked = last
        self._progress.set()

    async def stop(self) -> None:
        """Stop reading ahead (the walk is over, or failed)."""
        self.done = True
        self._progress.set()
        if self._source is not None:
            await self._source.aclose()  # type: ignore[attr-defined]
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(BaseException):
                await self._loader

    async def _load(self) -> None:
        reads: list[asyncio.Task[None]] = []
        try:
            root = await self.trees.load(self.base.id)
            while (keys := await self._queue.get()) is not None and isinstance(root, Index):
                ranges = await touched_ranges(self.trees, root, keys)
                for lo in range(0, len(ranges), _READ_CHUNK):
                    behind = lo - _READ_AHEAD
                    while behind >= 0 and not self.done and self.walked < ranges[behind].last:
                        self._progress.clear()
                        await self._progress.wait()
                    if self.done:
                        return
                    if len(reads) >= _READS_IN_FLIGHT:
                        await reads.pop(0)
                    ids = [r.id for r in ranges[lo : lo + _READ_CHUNK]]
                    reads.append(asyncio.create_task(self.trees.load_many(ids)))
                    await asyncio.sleep(0)  # even when every one was cached already
        finally:
            for read in reads:
                read.cancel()


class _Applier:
    def __init__(
        self, trees: TreeStore, changes: ChangeStream, writer: TreeWriter, ahead: _ReadAhead
    ) -> None:
        self.trees = trees
        self.changes = changes
        self.writer = writer
        self.ahead = ahead
        self.pacer = Pacer()
        self.writes: list[asyncio.Task[None]] = []

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
            await self.walk_children(node, rightmost)
        else:
            await self.merge_leaf(node, None if rightmost else ref.last)
            self.ahead.passed(ref.last)
        if self.writer.pending_bytes >= _FLUSH_BYTES:
            await self.flush()

    async def walk_children(self, node: Index, rightmost: bool) -> None:
        """Walk an index range's children; runs of children before the next change are taken
        whole, in bulk, whenever nothing is pending below them."""
        lasts, changes, writer = node.lasts, self.changes, self.writer
        last = node.width - 1
        i = 0
        while i <= last:
            if await changes.fill():
                j = bisect_left(lasts, changes.keys[changes.pos], i)
            else:
                j = last + 1
            if rightmost:
                j = min(j, last)  # the rightmost child takes every change past the end
            if j > i and writer.clean_through(node.level - 1):
                writer.add_ref_run(node, i, j)
                i = j
                continue
            child = node.ref(i)
            if child.id not in self.trees.cache and child.count:
                # Not read ahead (yet): read it with the siblings the same changes touch,
                # in one round trip rather than one per child.
                ckeys, lo = changes.keys, changes.pos
                hi = len(ckeys) if rightmost else bisect_right(ckeys, lasts[last], lo)
                touched = _touched(node, ckeys, lo, hi, rightmost)
                await self.trees.load_many(
                    [child.id] + [node.ids[t] for t, _, _ in touched if t != i]
                )
            await self.walk(child, rightmost and i == last)
            i += 1

    async def flush(self) -> None:
        """Store the nodes built so far in the background, a bounded number at a time."""
        if len(self.writes) >= _WRITES_IN_FLIGHT:
            await self.writes.pop(0)
        nodes = self.writer.take_pending()
        self.writes.append(asyncio.create_task(self.trees.write(nodes)))

    async def drain(self) -> None:
        await self.ahead.stop()
        writes, self.writes = self.writes, []
        try:
            await asyncio.gather(*writes)
        finally:
            for task in writes:
                task.cancel()

    async def pause_if_due(self) -> None:
        """Let the event loop and the store's threads (reading and writing for this walk)
        run, once the walk has worked `WORK_SLICE` since it last did."""
        if self.pacer.due():
            if self.writer.pending_bytes >= _FLUSH_BYTES:  # a long run of new keys
                await self.flush()
            await self.pacer.pause()

    async def merge_leaf(self, leaf: Leaf, bound: bytes | None) -> None:
        """Merge the changes up to `bound` (all remaining when None) into one range."""
        if bound is not None and await self.changes.fill() and self._replace_values(leaf, bound):
            await self.pause_if_due()
            return
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
            if end - pos > _STRETCH:  # keep each stretch between looks at the clock short
                end, stop = pos + _STRETCH, False
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
            # Time, not a count of changes: sparse changes carry many unchanged entries each.
            await self.pause_if_due()
            if stop:
                break
        if i < n:
            writer.add_range_run(keys, vals, i, n)

    def _replace_values(self, leaf: Leaf, bound: bytes) -> bool:
        """Rewrite a range whose changes up to `bound` all replace entries of keys it holds,
        without merging key by key; False (and nothing done) for any other range.

        Boundaries depend only on the keys, and the range starts a new one (nothing is
        pending before it) as it did when it was built: its keys are the same, so its bounds
        are too, and only the changed values need writing in. Keys still in their stored
        form (a shared prefix and suffixes) are searched and written back in it.
        """
        changes, writer = self.changes, self.writer
        ckeys, cvals, pos = changes.keys, changes.values, changes.pos
        # The range's changes must all be in this batch, and the range must start a new one.
        if not ckeys[-1] > bound or not writer.at_range_start():
            return False
        end = bisect_right(ckeys, bound, pos)
        prefix, names = leaf.parts
        cut = len(prefix)
        old_values = leaf.values
        values: list[bytes] | None = None
        i = 0
        for c in range(pos, end):
            key, new = ckeys[c], cvals[c]
            if new is None or not key.startswith(prefix):
                return False  # a removal, or a key that is not in the range
            name = key[cut:]
            i = bisect_left(names, name, i)
            if i == len(names) or names[i] != name:
                return False  # a new key: boundaries may move
            if old_values[i][:IDENTITY_BYTES] != new[:IDENTITY_BYTES]:  # else keep the entry
                if values is None:
                    values = list(old_values)
                values[i] = new
        writer.add_stored_range(leaf, old_values if values is None else values)
        changes.count += end - pos
        changes.pos = end
        return True


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
    ahead = _ReadAhead(trees, base)
    changes.read_ahead(ahead)
    applier = _Applier(trees, changes, writer, ahead)
    try:
        # A small change (one short batch) on a tree bigger than the cache: read the ranges
        # it rewrites in one round trip, rather than a parent's worth at a time in the walk.
        if (
            await changes.fill()
            and len(changes.keys) < _READ_AHEAD_FROM
            and base.level > 0
            and not trees.cache.holds_whole(base)
        ):
            await warm(trees, base, changes.keys)
        await applier.walk(base, rightmost=True)
    finally:
        await applier.drain()
    root = writer.finish()
    # A root taken whole from the base may be an index range with a single child, where a
    # tree built from scratch has that child as its root: use the child, so equal contents
    # always get equal metarange ids (and an unchanged tree is recognised as unchanged).
    while root.level > 0:
        node = await trees.load(root.id)
        if not isinstance(node, Index) or node.width != 1:
            break
        root = node.ref(0)
    if root.count:
        trees.cache.remember_root(root)
    return root, writer
