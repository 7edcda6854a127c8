"""Nodes of a metarange tree, their encoding, and the cache-backed store that holds them.

A snapshot is a tree. Level-0 nodes are *ranges*: sorted runs of (key, entry) pairs. Nodes of
level L >= 1 are *index ranges*: sorted lists of references to level L-1 nodes, each carrying
the child's id, first and last key, entry count and byte size. The root of the tree is the
snapshot's metarange. Every node is msgpack-encoded and identified by the xxh3-128 of its bytes,
so identical nodes are stored once and shared by every commit that contains them.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgpack
import xxhash

from lakeproxy.errors import StorageError
from lakeproxy.metastore.base import MetadataStore


class NodeRef(NamedTuple):
    """A reference to a stored node: enough to skip it without reading it.

    A named tuple: references are made by the thousand on every walk of an index range, and
    a tuple is made several times faster than a frozen dataclass.
    """

    id: bytes
    first: bytes
    last: bytes
    count: int
    nbytes: int
    level: int

    @property
    def hex(self) -> str:
        return self.id.hex()


class Leaf:
    """A decoded range: parallel sorted sequences of keys and encoded entries.

    A range read from storage keeps its keys as stored, the prefix they all share and their
    suffixes; `keys` joins them when first asked for. A commit that only replaces values
    never asks (`TreeWriter.add_stored_range` encodes the stored form back as it is).

    Cached ranges hold tuples: a tuple of bytes drops out of the garbage collector's
    tracking after its first collection, so a full cache costs a full collection nothing
    (lists of the same keys made every full collection walk every cached key).
    """

    __slots__ = ("_keys", "prefix", "suffixes", "values")

    def __init__(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        self._keys: Sequence[bytes] | None = keys
        self.prefix = b""
        self.suffixes: Sequence[bytes] | None = None
        self.values = values

    @classmethod
    def stored(cls, prefix: bytes, suffixes: Sequence[bytes], values: Sequence[bytes]) -> Leaf:
        """The range whose keys are `prefix` followed by each of `suffixes`."""
        leaf = cls(suffixes, values)
        if prefix:
            leaf._keys, leaf.prefix, leaf.suffixes = None, prefix, suffixes
        return leaf

    @property
    def keys(self) -> Sequence[bytes]:
        if self._keys is None:
            assert self.suffixes is not None
            prefix = self.prefix
            self._keys = tuple([prefix + k for k in self.suffixes])
            self.prefix, self.suffixes = b"", None  # the keys hold them now
        return self._keys

    @property
    def parts(self) -> tuple[bytes, Sequence[bytes]]:
        """The keys as a prefix and what follows it in each: the stored form while the keys
        are not joined, else no prefix and the keys themselves."""
        if self.suffixes is None:
            return b"", self.keys
        return self.prefix, self.suffixes


class Index:
    """A decoded index range: references to the nodes one level down.

    The children's fields are kept in parallel tuples of bytes and ints, and a child's
    NodeRef is made when asked for (`ref`, `refs`, `refs_between`). A tuple of bytes or ints
    drops out of the garbage collector's tracking after its first collection; a NodeRef
    never does. Kept as NodeRefs, the 4,000 index ranges cached after commits on a tree of
    a million entries held 57,000 objects that every full collection walked: 35 to 120 ms
    with the event loop stopped; kept as tuples, a full collection took under 20 ms.
    """

    __slots__ = ("counts", "firsts", "ids", "lasts", "level", "sizes")

    def __init__(
        self,
        level: int,
        ids: tuple[bytes, ...],
        firsts: tuple[bytes, ...],
        lasts: tuple[bytes, ...],
        counts: tuple[int, ...],
        sizes: tuple[int, ...],
    ) -> None:
        self.level = level
        self.ids = ids
        self.firsts = firsts
        self.lasts = lasts
        self.counts = counts
        self.sizes = sizes

    @classmethod
    def of(cls, level: int, refs: Sequence[NodeRef]) -> Index:
        """The index range of `level` over `refs` (nodes of level - 1)."""
        return cls(
            level,
            tuple([r.id for r in refs]),
            tuple([r.first for r in refs]),
            tuple([r.last for r in refs]),
            tuple([r.count for r in refs]),
            tuple([r.nbytes for r in refs]),
        )

    @property
    def width(self) -> int:
        """How many children it has."""
        return len(self.ids)

    def ref(self, i: int) -> NodeRef:
        """The reference of child `i` (negative counts from the end)."""
        return NodeRef(
            self.ids[i], self.firsts[i], self.lasts[i], self.counts[i], self.sizes[i],
            self.level - 1,
        )

    def refs_between(self, lo: int, hi: int) -> list[NodeRef]:
        """The references of children lo..hi-1."""
        child = self.level - 1
        return [
            NodeRef(i, f, la, c, b, child)
            for i, f, la, c, b in zip(
                self.ids[lo:hi], self.firsts[lo:hi], self.lasts[lo:hi], self.counts[lo:hi],
                self.sizes[lo:hi], strict=True,
            )
        ]

    @property
    def refs(self) -> list[NodeRef]:
        """The references of every child (made anew at each call)."""
        return self.refs_between(0, len(self.ids))


Node = Leaf | Index


def _common_prefix(first: bytes, last: bytes) -> int:
    """Length of the prefix shared by every key of a sorted run (that of its first and last)."""
    lo, hi = 0, min(len(first), len(last))
    while lo < hi:  # a binary search: a few comparisons of slices instead of one per byte
        mid = (lo + hi + 1) // 2
        if first[:mid] == last[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def stored_keys(keys: Sequence[bytes]) -> tuple[bytes, Sequence[bytes]]:
    """The stored form of a range's sorted keys: the longest prefix they share, and what
    follows it in each."""
    if not keys:
        return b"", keys
    p = _common_prefix(keys[0], keys[-1])
    return keys[0][:p], [k[p:] for k in keys] if p else keys


def encode_leaf(keys: Sequence[bytes], values: Sequence[bytes]) -> bytes:
    """[0, shared key prefix, key suffixes, encoded entries]: keys of a range share long
    prefixes (folders), so storing the prefix once keeps ranges small."""
    return encode_stored_leaf(*stored_keys(keys), values)


def encode_stored_leaf(prefix: bytes, suffixes: Sequence[bytes], values: Sequence[bytes]) -> bytes:
    """A range from its keys' stored form (`prefix` must be the longest one they share)."""
    return msgpack.packb([0, prefix, suffixes, values])


def encode_index(level: int, refs: list[NodeRef]) -> bytes:
    p = _common_prefix(refs[0].first, refs[-1].last)
    return msgpack.packb(
        [level, refs[0].first[:p],
         [[r.id, r.first[p:], r.last[p:], r.count, r.nbytes] for r in refs]]
    )


def node_id(raw: bytes) -> bytes:
    return xxhash.xxh3_128_digest(raw)


def encoded_level(raw: bytes) -> int:
    """The level of an encoded node (0 for a range), without decoding the rest of it."""
    # [level, ...] as msgpack: a short array's header byte, then the level as a small int.
    if raw[:1] in (b"\x93", b"\x94") and raw[1] < 0x80:
        return raw[1]
    level: int = msgpack.unpackb(raw)[0]
    return level


def decode_node(raw: bytes) -> Node:
    level, prefix, *rest = msgpack.unpackb(raw)
    if level == 0:
        suffixes, values = rest
        return Leaf.stored(prefix, tuple(suffixes), tuple(values))
    children = rest[0]
    return Index(
        level,
        tuple([c[0] for c in children]),
        tuple([prefix + c[1] for c in children]),
        tuple([prefix + c[2] for c in children]),
        tuple([c[3] for c in children]),
        tuple([c[4] for c in children]),
    )


EMPTY_LEAF_RAW = encode_leaf([], [])
EMPTY_ROOT = NodeRef(node_id(EMPTY_LEAF_RAW), b"", b"", 0, len(EMPTY_LEAF_RAW), 0)


def ref_of_root(root_id: bytes, raw: bytes) -> NodeRef:
    """Rebuild the reference of a root node from its bytes (commits store only the id)."""
    node = decode_node(raw)
    if isinstance(node, Leaf):
        if not node.keys:
            return EMPTY_ROOT
        return NodeRef(root_id, node.keys[0], node.keys[-1], len(node.keys), len(raw), 0)
    return NodeRef(
        root_id, node.firsts[0], node.lasts[-1], sum(node.counts), len(raw) + sum(node.sizes),
        node.level,
    )


class _Lru:
    """An LRU of cached values bounded by the encoded size of the nodes they stand for.

    Values and sizes are kept apart, not in a tuple per entry: a full garbage collection
    walks the ordered dict of values, and a tuple per entry was one more object to visit
    for each of tens of thousands of cached nodes. The sizes' dict holds bytes and ints
    only, which CPython never tracks.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: OrderedDict[bytes, Any] = OrderedDict()
        self._sizes: dict[bytes, int] = {}
        self.bytes = 0

    def put(self, key: bytes, value: Any, size: int) -> None:
        if size > self.max_bytes or key in self.items:
            return
        self.items[key] = value
        self._sizes[key] = size
        self.bytes += size
        while self.bytes > self.max_bytes:
            evicted, _ = self.items.popitem(last=False)
            self.bytes -= self._sizes.pop(evicted)


class NodeCache:
    """Nodes kept in memory because they never change (ids are content hashes).

    Two tiers. Decoded nodes answer lookups and walks directly; index ranges get their own
    share of that tier, so a stream of ranges (a big commit or diff) never pushes out the
    upper levels every lookup and commit walks through. Behind it, the encoded bytes of every
    node read or written: about half the memory of the decoded form, they cost a decode (tens
    of microseconds) instead of a read of the metadata store, so a much bigger part of a big
    repository's tree stays in memory for the same budget.

    Args:
        max_bytes: the decoded tier's size limit, counted in encoded bytes.
        encoded_bytes: the encoded tier's size limit (0 turns it off).
    """

    def __init__(
        self, max_bytes: int = 48 * 1024 * 1024, encoded_bytes: int = 256 * 1024 * 1024
    ) -> None:
        self.max_bytes = max_bytes
        self._index = _Lru(max_bytes // 6)
        self._leaves = _Lru(max_bytes - max_bytes // 6)
        self._encoded = _Lru(encoded_bytes)
        self.roots: OrderedDict[bytes, NodeRef] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def decoded_held_bytes(self) -> int:
        """Encoded size of the nodes held decoded (at most `max_bytes`)."""
        return self._leaves.bytes + self._index.bytes

    @property
    def encoded_held_bytes(self) -> int:
        """Size of the encodings held in the encoded tier."""
        return self._encoded.bytes

    @property
    def encoded_max_bytes(self) -> int:
        return self._encoded.max_bytes

    def remember_root(self, ref: NodeRef) -> None:
        """Keep the reference of a snapshot root (immutable, tiny) for `TreeStore.root`."""
        self.roots[ref.id] = ref
        if len(self.roots) > 10_000:
            self.roots.popitem(last=False)

    def holds_whole(self, root: NodeRef) -> bool:
        """Whether the whole tree at `root` fits in the decoded tier (so it stays there once
        read)."""
        return root.nbytes <= self._leaves.max_bytes

    def __contains__(self, key: bytes) -> bool:
        return key in self._leaves.items or key in self._index.items or key in self._encoded.items

    def get(self, key: bytes) -> Node | None:
        for lru in (self._leaves, self._index):
            node = lru.items.get(key)
            if node is not None:
                lru.items.move_to_end(key)
                self.hits += 1
                return node
        raw = self._encoded.items.get(key)
        if raw is not None:
            self._encoded.items.move_to_end(key)
            node = decode_node(raw)
            self._decoded(node).put(key, node, len(raw))
            self.hits += 1
            return node
        self.misses += 1
        return None

    def put(self, key: bytes, node: Node, raw: bytes) -> None:
        """Cache a node in both tiers."""
        self._decoded(node).put(key, node, len(raw))
        self._encoded.put(key, raw, len(raw))

    def put_encoded(self, key: bytes, raw: bytes) -> None:
        """Cache a node's encoding only: it is decoded when first asked for."""
        self._encoded.put(key, raw, len(raw))

    def put_read(self, key: bytes, raw: bytes) -> None:
        """Cache a node read ahead of its use: encoded, to be decoded when first asked for
        (decoded now if the encoded tier is off).

        A read of hundreds of ranges decoded at once took milliseconds of the event loop in
        one step, and made as many young tuples at once for the collector to walk; decoded
        one by one as the walk reaches them, both are spread between its pauses.
        """
        if len(raw) <= self._encoded.max_bytes:
            self.put_encoded(key, raw)
        else:
            self.put(key, decode_node(raw), raw)

    def _decoded(self, node: Node) -> _Lru:
        return self._leaves if isinstance(node, Leaf) else self._index


class TreeStore:
    """Reads and writes the nodes of one repository's trees.

    Args:
        store: the metadata store holding the nodes.
        partition: the repository's node partition.
        cache: a node cache, shared between repositories (ids are content hashes).
    """

    def __init__(self, store: MetadataStore, partition: str, cache: NodeCache) -> None:
        self.store = store
        self.partition = partition
        self.cache = cache
        # Nodes being read by a `load_many` right now: a `load` of one waits for that read.
        self._inflight: dict[bytes, asyncio.Future[None]] = {}

    async def load(self, ref_id: bytes) -> Node:
        """Return the decoded node; raises StorageError if a referenced node is missing."""
        node = self.cache.get(ref_id)
        if node is not None:
            return node
        pending = self._inflight.get(ref_id)
        if pending is not None:
            await asyncio.shield(pending)
            node = self.cache.get(ref_id)
            if node is not None:
                return node
        raw = await self.store.get(self.partition, ref_id)
        if raw is None:
            if ref_id == EMPTY_ROOT.id:
                raw = EMPTY_LEAF_RAW
            else:
                raise StorageError(f"metadata is missing range {ref_id.hex()}")
        node = decode_node(raw)
        self.cache.put(ref_id, node, raw)
        return node

    async def load_many(self, ids: list[bytes]) -> None:
        """Bring the given nodes into the cache with one read of the store (see
        `NodeCache.put_read`)."""
        missing = [i for i in ids if i not in self.cache and i not in self._inflight]
        if not missing:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for nid in missing:
            self._inflight[nid] = done
        try:
            found = await self.store.get_many(self.partition, missing)
            for nid, raw in found.items():
                self.cache.put_read(nid, raw)
        finally:
            for nid in missing:
                self._inflight.pop(nid, None)
            done.set_result(None)

    async def root(self, metarange_id: str) -> NodeRef:
        """The reference of a snapshot's root, from the metarange id stored in a commit."""
        root_id = bytes.fromhex(metarange_id)
        if root_id == EMPTY_ROOT.id:
            return EMPTY_ROOT
        known = self.cache.roots.get(root_id)
        if known is not None:
            return known
        raw = await self.store.get(self.partition, root_id)
        if raw is None:
            raise StorageError(f"metadata is missing metarange {metarange_id}")
        self.cache.put(root_id, decode_node(raw), raw)
        ref = ref_of_root(root_id, raw)
        self.cache.remember_root(ref)
        return ref

    async def write(self, nodes: list[tuple[bytes, bytes]]) -> None:
        """Store encoded nodes (idempotent: a node with the same id has the same bytes)."""
        if nodes:
            await self.store.put_many(self.partition, nodes)

    async def lookup(self, root: NodeRef, key: bytes) -> bytes | None:
        """The encoded entry at `key` in the snapshot, or None."""
        if root.count == 0:
            return None
        node = await self.load(root.id)
        while isinstance(node, Index):
            pos = bisect_left(node.lasts, key)
            if pos == len(node.ids) or node.firsts[pos] > key:
                return None
            node = await self.load(node.ids[pos])
        pos = bisect_left(node.keys, key)
        if pos < len(node.keys) and node.keys[pos] == key:
            return node.values[pos]
        return None

