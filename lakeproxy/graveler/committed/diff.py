"""Diff of two trees, skipping every subtree whose id is equal on both sides."""

from __future__ import annotations

from collections.abc import AsyncIterator

from lakeproxy.graveler.committed.cursor import TreeCursor
from lakeproxy.graveler.committed.tree import Index, NodeRef, TreeStore
from lakeproxy.graveler.model import IDENTITY_BYTES

# (key, left entry or None, right entry or None), entries encoded.
RawChange = tuple[bytes, bytes | None, bytes | None]


async def diff_trees(
    trees: TreeStore,
    left: NodeRef,
    right: NodeRef,
    *,
    start: bytes = b"",
    stop: bytes | None = None,
) -> AsyncIterator[RawChange]:
    """Yield every key whose entry differs between `left` and `right`, in key order.

    Entries with the same identity are equal even when stored at different addresses.
    Only keys in [`start`, `stop`) are considered. Work is proportional to the number of
    differing ranges: subtrees with the same id on both sides are never read.
    """
    async for change in _diff(trees, left, right, start, stop):
        if stop is not None and change[0] >= stop:
            return
        yield change


async def _diff(
    trees: TreeStore, left: NodeRef, right: NodeRef, start: bytes, stop: bytes | None
) -> AsyncIterator[RawChange]:
    if left.id == right.id:
        return
    a, b = TreeCursor(trees, left), TreeCursor(trees, right)
    if start:
        await a.seek(start)
        await b.seek(start)
    while not (a.done and b.done):
        if a.done or b.done:
            cur = b if a.done else a
            if stop is not None and cur.key >= stop:
                return
            if cur.node is not None:
                await cur.descend()
                continue
            key, value = cur.key, cur.value
            added = cur is b
            cur.next()
            yield (key, None, value) if added else (key, value, None)
            continue
        ka, kb = a.key, b.key
        if stop is not None and ka >= stop and kb >= stop:
            return
        na, nb = a.node, b.node
        if na is not None and nb is not None:
            if na.id == nb.id:
                a.skip_shared(b)
            elif na.last < nb.first:
                await a.descend()
            elif nb.last < na.first:
                await b.descend()
            elif na.level == nb.level:
                await _prefetch_differing(trees, na, nb)
                await a.descend()
            elif na.level > nb.level:
                await a.descend()
            else:
                await b.descend()
        elif na is not None:
            if kb < na.first:
                yield kb, None, b.value
                b.next()
            else:
                await a.descend()
        elif nb is not None:
            if ka < nb.first:
                yield ka, a.value, None
                a.next()
            else:
                await b.descend()
        else:
            for change in _diff_leaves(a, b):
                yield change


async def _prefetch_differing(trees: TreeStore, a: NodeRef, b: NodeRef) -> None:
    """Load, in one round trip, the children of two differing nodes that the other lacks
    (the ones the diff will open); children they share are skipped unread."""
    node_a, node_b = await trees.load(a.id), await trees.load(b.id)
    if not (isinstance(node_a, Index) and isinstance(node_b, Index)):
        return
    ids_a = {r.id for r in node_a.refs}
    ids_b = {r.id for r in node_b.refs}
    wanted = [i for i in ids_a if i not in ids_b] + [i for i in ids_b if i not in ids_a]
    if len(wanted) > 1:
        await trees.load_many(wanted)


def _diff_leaves(a: TreeCursor, b: TreeCursor) -> list[RawChange]:
    """Merge-join the current ranges of two cursors standing on entries, up to the end of
    either range, in one tight loop; returns the differences found."""
    fa, fb = a.leaf_frame(), b.leaf_frame()
    akeys, avals, i = fa.keys, fa.values, fa.idx
    bkeys, bvals, j = fb.keys, fb.values, fb.idx
    alen, blen = len(akeys), len(bkeys)
    out: list[RawChange] = []
    while i < alen and j < blen:
        x, y = akeys[i], bkeys[j]
        if x == y:
            vx, vy = avals[i], bvals[j]
            if vx != vy and vx[:IDENTITY_BYTES] != vy[:IDENTITY_BYTES]:
                out.append((x, vx, vy))
            i += 1
            j += 1
        elif x < y:
            out.append((x, avals[i], None))
            i += 1
        else:
            out.append((y, None, bvals[j]))
            j += 1
    fa.idx, fb.idx = i, j
    a.settle()
    b.settle()
    return out
