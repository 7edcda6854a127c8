"""A cursor over a tree that can stand on a whole node or on a single entry.

Diff and merge compare trees node by node: when two cursors stand on nodes with the same id,
both subtrees are skipped without being read; otherwise the cursor descends into them.
"""

from __future__ import annotations

from bisect import bisect_left

from lakeproxy.graveler.committed.tree import Leaf, NodeRef, TreeStore


class _IndexFrame:
    __slots__ = ("idx", "refs")

    def __init__(self, refs: list[NodeRef]) -> None:
        self.refs = refs
        self.idx = 0


class _LeafFrame:
    __slots__ = ("idx", "keys", "values")

    def __init__(self, leaf: Leaf) -> None:
        self.keys = leaf.keys
        self.values = leaf.values
        self.idx = 0


class TreeCursor:
    """Walks a tree in key order, either node by node or entry by entry."""

    def __init__(self, trees: TreeStore, root: NodeRef) -> None:
        self.trees = trees
        self.root = root
        self._stack: list[_IndexFrame | _LeafFrame] = []
        self.reset()

    def reset(self) -> None:
        self._stack = [_IndexFrame([self.root])] if self.root.count else []

    @property
    def done(self) -> bool:
        return not self._stack

    @property
    def node(self) -> NodeRef | None:
        """The node the cursor stands on, or None when it stands on an entry."""
        top = self._stack[-1]
        return top.refs[top.idx] if isinstance(top, _IndexFrame) else None

    @property
    def key(self) -> bytes:
        """The first key at the cursor (of the node, or of the entry)."""
        top = self._stack[-1]
        if isinstance(top, _IndexFrame):
            return top.refs[top.idx].first
        return top.keys[top.idx]

    @property
    def value(self) -> bytes:
        top = self._stack[-1]
        assert isinstance(top, _LeafFrame)
        return top.values[top.idx]

    def leaf_frame(self) -> _LeafFrame:
        """The range the cursor stands in (it must stand on an entry); move it with `idx`."""
        top = self._stack[-1]
        assert isinstance(top, _LeafFrame)
        return top

    def settle(self) -> None:
        """Step out of exhausted ranges after `idx` moved past their end."""
        self._pop_exhausted()

    def skip_shared(self, other: TreeCursor) -> None:
        """Step both cursors past the run of nodes they share (same ids, side by side)."""
        fa, fb = self._stack[-1], other._stack[-1]
        assert isinstance(fa, _IndexFrame) and isinstance(fb, _IndexFrame)
        ra, rb, i, j = fa.refs, fb.refs, fa.idx, fb.idx
        while i < len(ra) and j < len(rb) and ra[i].id == rb[j].id:
            i += 1
            j += 1
        fa.idx, fb.idx = i, j
        self._pop_exhausted()
        other._pop_exhausted()

    def next(self) -> None:
        """Step past the current node or entry."""
        self._stack[-1].idx += 1
        self._pop_exhausted()

    async def descend(self) -> None:
        """Replace the current node by its children (or entries)."""
        top = self._stack[-1]
        assert isinstance(top, _IndexFrame)
        ref = top.refs[top.idx]
        top.idx += 1
        node = await self.trees.load(ref.id)
        self._stack.append(_LeafFrame(node) if isinstance(node, Leaf) else _IndexFrame(node.refs))

    def _pop_exhausted(self) -> None:
        stack = self._stack
        while stack:
            top = stack[-1]
            size = len(top.refs) if isinstance(top, _IndexFrame) else len(top.keys)
            if top.idx < size:
                return
            stack.pop()

    async def seek(self, start: bytes) -> None:
        """Position the cursor at the first key >= `start` (possibly on a node starting there)."""
        self.reset()
        while self._stack:
            top = self._stack[-1]
            if isinstance(top, _LeafFrame):
                top.idx = bisect_left(top.keys, start)
                self._pop_exhausted()
                return
            refs = top.refs
            while top.idx < len(refs) and refs[top.idx].last < start:
                top.idx += 1
            if top.idx == len(refs):
                self._pop_exhausted()
                return
            if refs[top.idx].first >= start:
                return
            await self.descend()

    async def next_batch(self) -> tuple[list[bytes], list[bytes]]:
        """Take the rest of the current range's entries (descending as needed); empty when done."""
        while self._stack and self.node is not None:
            await self.descend()
        if not self._stack:
            return [], []
        top = self._stack[-1]
        assert isinstance(top, _LeafFrame)
        lo = top.idx
        top.idx = len(top.keys)
        self._pop_exhausted()
        if lo == 0:
            return top.keys, top.values
        return top.keys[lo:], top.values[lo:]
