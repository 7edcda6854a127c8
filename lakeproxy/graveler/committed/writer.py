"""Building trees with content-defined boundaries.

A range ends after a key whose 64-bit xxh3 hash matches a mask (within minimum and maximum
sizes), and an index range ends after a child whose last key's hash, seeded by the level,
matches another mask. Boundaries therefore depend on the keys near them only: inserting or
deleting a key rewrites one range and the index ranges above it, never the ranges after it,
so a commit costs O(changes), and unchanged stretches keep their ids across commits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xxhash import xxh3_64_intdigest

from lakeproxy.graveler.committed.tree import (
    EMPTY_ROOT,
    Index,
    Leaf,
    NodeCache,
    NodeRef,
    encode_index,
    encode_stored_leaf,
    node_id,
    stored_keys,
)


@dataclass(frozen=True, slots=True)
class Shape:
    """Range size parameters (entries per range and children per index range)."""

    leaf_mask: int = 63  # about 64 entries per range
    leaf_min: int = 8
    leaf_max: int = 1024
    # About 16 children per index range, rarely more than twice that: a change rewrites one
    # index range per level, so small, evenly sized index ranges keep a commit's writes
    # (and re-encoding) small on big trees at the cost of a level more.
    index_mask: int = 7
    index_min: int = 8
    index_max: int = 64


DEFAULT_SHAPE = Shape()

_CACHED_NEW_BYTES = 8 * 1024 * 1024
"""New ranges are put in the node cache until a writer has written this much."""


class TreeWriter:
    """Accepts entries and whole nodes in key order and builds a new tree bottom-up.

    New nodes are collected in `pending_nodes` for the caller to store; `bytes_written` counts
    every byte of them.
    """

    def __init__(self, shape: Shape = DEFAULT_SHAPE, cache: NodeCache | None = None) -> None:
        self.shape = shape
        self.cache = cache
        self._keys: list[bytes] = []
        self._values: list[bytes] = []
        # _levels[L] holds references to level L-1 nodes waiting to form a level-L node.
        self._levels: list[list[NodeRef]] = [[]]
        self.pending_nodes: list[tuple[bytes, bytes]] = []
        self.pending_bytes = 0
        self.bytes_written = 0
        self.nodes_written = 0

    def clean_through(self, level: int) -> bool:
        """True when a whole node of `level` can be taken as is (nothing pending below it)."""
        if self._keys:
            return False
        levels = self._levels
        return all(not levels[i] for i in range(1, min(level, len(levels) - 1) + 1))

    def at_range_start(self) -> bool:
        """True when no entry is pending: the next one starts a new range."""
        return not self._keys

    def add_stored_range(self, leaf: Leaf, values: Sequence[bytes]) -> None:
        """Append the keys of a whole stored range with `values` for entries, at a range
        start: the range (not the tree's last) was built with this writer's shape, so its
        keys end a range exactly where they end. Keys still in their stored form are encoded
        back as they are."""
        suffixes = leaf.suffixes
        if suffixes is None:
            self._keys, self._values = list(leaf.keys), list(values)
            self._emit_leaf()
            return
        prefix = leaf.prefix
        self._add_range(
            encode_stored_leaf(prefix, suffixes, values),
            prefix + suffixes[0],
            prefix + suffixes[-1],
            len(suffixes),
            lambda: Leaf.stored(prefix, suffixes, tuple(values)),
        )

    def add(self, key: bytes, value: bytes) -> None:
        """Append one entry (keys must arrive in ascending order)."""
        keys = self._keys
        keys.append(key)
        self._values.append(value)
        n = len(keys)
        shape = self.shape
        if n >= shape.leaf_max or (
            n >= shape.leaf_min and xxh3_64_intdigest(key) & shape.leaf_mask == 0
        ):
            self._emit_leaf()

    def add_many(self, keys: list[bytes], values: list[bytes], lo: int, hi: int) -> None:
        """Append keys[lo:hi] with their values."""
        shape = self.shape
        mask, lmin, lmax = shape.leaf_mask, shape.leaf_min, shape.leaf_max
        out_k, out_v = self._keys, self._values
        for i in range(lo, hi):
            key = keys[i]
            out_k.append(key)
            out_v.append(values[i])
            n = len(out_k)
            if n >= lmax or (n >= lmin and xxh3_64_intdigest(key) & mask == 0):
                self._emit_leaf()
                out_k, out_v = self._keys, self._values

    def add_new(self, keys: list[bytes], values: list[bytes | None], lo: int, hi: int) -> None:
        """Append the entries of keys[lo:hi] whose value is not None (removals are skipped)."""
        shape = self.shape
        mask, lmin, lmax = shape.leaf_mask, shape.leaf_min, shape.leaf_max
        out_k, out_v = self._keys, self._values
        for i in range(lo, hi):
            value = values[i]
            if value is None:
                continue
            key = keys[i]
            out_k.append(key)
            out_v.append(value)
            n = len(out_k)
            if n >= lmax or (n >= lmin and xxh3_64_intdigest(key) & mask == 0):
                self._emit_leaf()
                out_k, out_v = self._keys, self._values

    def add_range_run(self, keys: list[bytes], values: list[bytes], lo: int, hi: int) -> None:
        """Append keys[lo:hi] of a stored range that was built with this writer's shape.

        Inside such a range only the first `leaf_min` keys and the last one can match the
        boundary mask (any other matching key would have ended the range), so the keys in
        between are copied in bulk without hashing them.
        """
        lmin, lmax = self.shape.leaf_min, self.shape.leaf_max
        careful = min(hi, lmin)
        if lo < careful:
            self.add_many(keys, values, lo, careful)
            lo = careful
        bulk_end = hi - 1 if hi == len(keys) else hi
        while lo < bulk_end:
            take = min(lmax - len(self._keys), bulk_end - lo)
            self._keys.extend(keys[lo : lo + take])
            self._values.extend(values[lo : lo + take])
            lo += take
            if len(self._keys) >= lmax:
                self._emit_leaf()
        if lo < hi:
            self.add_many(keys, values, lo, hi)

    def add_ref_run(self, node: Index, lo: int, hi: int) -> None:
        """Append whole existing nodes, the children lo..hi-1 of a stored index range built
        with this writer's shape; the caller checked clean_through(their level).

        As in `add_range_run`, only the first `index_min` children and the last one can end
        an index range, so the others are copied in bulk without hashing.
        """
        if lo >= hi:
            return
        level = node.level
        refs = node.refs_between(lo, hi)
        imin, imax = self.shape.index_min, self.shape.index_max
        end = hi - lo  # positions below are in `refs`: node child lo + k is refs[k]
        k = min(end, max(0, imin - lo))  # the children among the first `index_min`
        for ref in refs[:k]:
            self._push(level, ref)
        bulk_end = end - 1 if hi == node.width else end
        while k < bulk_end:
            while len(self._levels) <= level:
                self._levels.append([])
            items = self._levels[level]
            take = min(imax - len(items), bulk_end - k)
            items.extend(refs[k : k + take])
            k += take
            if len(items) >= imax:
                self._emit_index(level)
        for ref in refs[k:]:
            self._push(level, ref)

    def add_ref(self, ref: NodeRef) -> None:
        """Append a whole existing node; the caller checked clean_through(ref.level)."""
        self._push(ref.level + 1, ref)

    def _emit_leaf(self) -> None:
        keys, values = self._keys, self._values
        self._keys, self._values = [], []
        prefix, suffixes = stored_keys(keys)
        self._add_range(
            encode_stored_leaf(prefix, suffixes, values), keys[0], keys[-1], len(keys),
            lambda: Leaf.stored(prefix, tuple(suffixes), tuple(values)),
        )

    def _add_range(
        self, raw: bytes, first: bytes, last: bytes, count: int, decoded: Callable[[], Leaf]
    ) -> None:
        ref = NodeRef(node_id(raw), first, last, count, len(raw), 0)
        self._store(ref.id, raw)
        # New ranges are read again soon (diff, merge, reads, the next commit). Decoded only
        # those of a small change: a big one would push out of the decoded tier the ranges
        # its own walk has read ahead.
        if self.cache is not None:
            if self.bytes_written <= _CACHED_NEW_BYTES:
                self.cache.put(ref.id, decoded(), raw)
            else:
                self.cache.put_encoded(ref.id, raw)
        self._push(1, ref)

    def _push(self, level: int, ref: NodeRef) -> None:
        while len(self._levels) <= level:
            self._levels.append([])
        items = self._levels[level]
        items.append(ref)
        n = len(items)
        shape = self.shape
        if n >= shape.index_max or (
            n >= shape.index_min
            and xxh3_64_intdigest(ref.last, level) & shape.index_mask == 0
        ):
            self._emit_index(level)

    def _emit_index(self, level: int) -> None:
        refs = self._levels[level]
        self._levels[level] = []
        raw = encode_index(level, refs)
        ref = NodeRef(
            node_id(raw),
            refs[0].first,
            refs[-1].last,
            sum(r.count for r in refs),
            len(raw) + sum(r.nbytes for r in refs),
            level,
        )
        self._store(ref.id, raw)
        if self.cache is not None:
            self.cache.put(ref.id, Index.of(level, refs), raw)
        self._push(level + 1, ref)

    def _store(self, nid: bytes, raw: bytes) -> None:
        self.pending_nodes.append((nid, raw))
        self.pending_bytes += len(raw)
        self.bytes_written += len(raw)
        self.nodes_written += 1

    def take_pending(self) -> list[tuple[bytes, bytes]]:
        """Hand over the nodes built so far, for the caller to store."""
        nodes, self.pending_nodes, self.pending_bytes = self.pending_nodes, [], 0
        return nodes

    def finish(self) -> NodeRef:
        """Flush every level and return the root of the new tree."""
        if self._keys:
            self._emit_leaf()
        level = 1
        while True:
            levels = self._levels
            if level >= len(levels):
                return EMPTY_ROOT
            higher = any(levels[i] for i in range(level + 1, len(levels)))
            items = levels[level]
            if not higher:
                if not items:
                    return EMPTY_ROOT
                if len(items) == 1:
                    return items[0]
            if items:
                self._emit_index(level)
            level += 1
