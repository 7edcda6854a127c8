"""Diff of two trees, skipping every subtree whose id is equal on both sides."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Sequence

from lakeproxy.graveler.committed.cursor import TreeCursor
from lakeproxy.graveler.committed.tree import Index, Leaf, NodeRef, TreeStore
from lakeproxy.graveler.model import IDENTITY_BYTES
from lakeproxy.pause import Pacer

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
    differing ranges: subtrees with the same id on both sides are never read. Ranges in the
    cache are compared without a round trip to the store, so the walk pauses (see
    `lakeproxy.pause`) after each millisecond of work, between ranges.
    """
    pacer = Pacer()
    async for batch in _diff_batches(trees, left, right, start, stop):
        for change in batch:
            if stop is not None and change[0] >= stop:
                return
            yield change
        await pacer.pause_if_due()


_BATCH = 256  # changes of the general walk handed over at once (a pause may follow each)


async def _diff_batches(
    trees: TreeStore, left: NodeRef, right: NodeRef, start: bytes, stop: bytes | None
) -> AsyncIterator[list[RawChange]]:
    """The differences of two subtrees, in key order, in lists.

    Two nodes of one level whose children end at the same keys pairwise (the usual case after
    changes that add or remove no range boundary) split the key space the same way, so they
    are compared child by child: only the pairs with different ids are opened, with no cursor
    bookkeeping. Anything else goes through the general cursor walk.
    """
    pending = [(left, right)]  # pairs still to compare, the next one last
    while pending:
        x, y = pending.pop()
        if x.id == y.id:
            continue
        if x.level == y.level:
            a, b = await trees.load(x.id), await trees.load(y.id)
            if isinstance(a, Leaf) and isinstance(b, Leaf):
                yield _diff_ranges(a, b, start)
                continue
            if isinstance(a, Index) and isinstance(b, Index) and a.lasts == b.lasts:
                pairs = [
                    (a.ref(i), b.ref(i))
                    for i, (p, q) in enumerate(zip(a.ids, b.ids, strict=True))
                    if p != q and a.lasts[i] >= start and (stop is None or a.firsts[i] < stop)
                ]
                if len(pairs) > 1:
                    await trees.load_many([n.id for pair in pairs for n in pair])
                pairs.reverse()
                pending += pairs
                continue
        batch: list[RawChange] = []
        async for change in _diff(trees, x, y, start, stop):
            batch.append(change)
            if len(batch) >= _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def _diff_ranges(a: Leaf, b: Leaf, start: bytes) -> list[RawChange]:
    """Merge-join two whole ranges from `start` on."""
    if not start and a.suffixes is not None and a.suffixes == b.suffixes and a.prefix == b.prefix:
        # The same keys, both still in stored form: join only the keys whose values differ.
        return _changed_values(a.prefix, a.suffixes, a.values, b.values)
    akeys, avals, bkeys, bvals = a.keys, a.values, b.keys, b.values
    i = bisect_left(akeys, start) if start else 0
    if akeys == bkeys:  # the same keys (values changed in place): compare the values only
        return _changed_values(b"", akeys[i:], avals[i:], bvals[i:])
    j = bisect_left(bkeys, start) if start else 0
    out, i, j = _merge_join(akeys, avals, i, bkeys, bvals, j)
    out += [(akeys[k], avals[k], None) for k in range(i, len(akeys))]
    out += [(bkeys[k], None, bvals[k]) for k in range(j, len(bkeys))]
    return out


def _changed_values(
    prefix: bytes, names: Sequence[bytes], avals: Sequence[bytes], bvals: Sequence[bytes]
) -> list[RawChange]:
    """The differences of two runs of the same keys (`prefix` + each of `names`)."""
    return [
        (prefix + n, x, y) for n, x, y in zip(names, avals, bvals, strict=True)
        if x != y and x[:IDENTITY_BYTES] != y[:IDENTITY_BYTES]
    ]


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
    ids_a, ids_b = set(node_a.ids), set(node_b.ids)
    wanted = [i for i in ids_a if i not in ids_b] + [i for i in ids_b if i not in ids_a]
    if len(wanted) > 1:
        await trees.load_many(wanted)


def _diff_leaves(a: TreeCursor, b: TreeCursor) -> list[RawChange]:
    """Merge-join the current ranges of two cursors standing on entries, up to the end of
    either range, in one tight loop; returns the differences found."""
    fa, fb = a.leaf_frame(), b.leaf_frame()
    out, fa.idx, fb.idx = _merge_join(fa.keys, fa.values, fa.idx, fb.keys, fb.values, fb.idx)
    a.settle()
    b.settle()
    return out


def _merge_join(
    akeys: list[bytes], avals: list[bytes], i: int, bkeys: list[bytes], bvals: list[bytes], j: int
) -> tuple[list[RawChange], int, int]:
    """The differences of akeys[i:] and bkeys[j:] up to the end of either; and where each
    side stopped."""
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
    return out, i, j
