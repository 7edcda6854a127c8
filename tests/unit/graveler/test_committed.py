"""Trees of ranges: applying changes, diff and three-way merge, and what they reuse."""

from __future__ import annotations

import bisect
import gc
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import msgpack
import pytest

from lakeproxy.errors import MergeConflict
from lakeproxy.graveler.committed.apply import ChangeStream, apply_changes
from lakeproxy.graveler.committed.cursor import TreeCursor
from lakeproxy.graveler.committed.diff import diff_trees
from lakeproxy.graveler.committed.merge import merge_trees
from lakeproxy.graveler.committed.tree import (
    EMPTY_ROOT,
    Index,
    Leaf,
    NodeCache,
    NodeRef,
    TreeStore,
)
from lakeproxy.graveler.committed.writer import Shape, TreeWriter
from lakeproxy.graveler.model import MergeStrategy
from lakeproxy.metastore.memory import MemoryMetadataStore

SMALL = Shape(leaf_mask=15, leaf_min=2, leaf_max=64, index_mask=3, index_min=2, index_max=16)


def value(content: int) -> bytes:
    """An encoded-entry stand-in: 8 identity bytes then a body."""
    return content.to_bytes(8, "big") + b"body"


@pytest.fixture
def trees() -> TreeStore:
    return TreeStore(MemoryMetadataStore(), "nodes", NodeCache())


async def build(trees: TreeStore, base: NodeRef, changes: dict[bytes, bytes | None],
                shape: Shape = SMALL) -> NodeRef:
    keys = sorted(changes)
    root, writer = await apply_changes(
        trees, base, ChangeStream.from_lists(keys, [changes[k] for k in keys]), shape
    )
    await trees.write(writer.take_pending())
    return root


async def contents(trees: TreeStore, root: NodeRef) -> dict[bytes, bytes]:
    cursor = TreeCursor(trees, root)
    out: dict[bytes, bytes] = {}
    while True:
        keys, values = await cursor.next_batch()
        if not keys:
            return out
        out.update(zip(keys, values, strict=True))


@contextmanager
def counting_reads(store: MemoryMetadataStore) -> Iterator[list[bytes]]:
    """Record the key of every value read from `store` while inside."""
    read: list[bytes] = []
    get, get_many = store.get, store.get_many

    async def counting_get(partition: str, key: bytes) -> bytes | None:
        read.append(key)
        return await get(partition, key)

    async def counting_get_many(partition: str, wanted: list[bytes]) -> dict[bytes, bytes]:
        read.extend(wanted)
        return await get_many(partition, wanted)

    store.get, store.get_many = counting_get, counting_get_many  # type: ignore[method-assign]
    try:
        yield read
    finally:
        store.get, store.get_many = get, get_many  # type: ignore[method-assign]


async def test_random_apply_matches_a_dict(trees: TreeStore) -> None:
    rnd = random.Random(7)
    model: dict[bytes, bytes] = {}
    root = EMPTY_ROOT
    for _ in range(40):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rnd.choice([1, 5, 50, 400])):
            key = b"k%05d" % rnd.randrange(3000)
            changes[key] = None if rnd.random() < 0.3 else value(rnd.randrange(10**6))
        old = root
        root = await build(trees, root, changes)
        expected = dict(model)
        for k, v in changes.items():
            if v is None:
                expected.pop(k, None)
            else:
                expected[k] = v
        assert await contents(trees, root) == expected
        assert root.count == len(expected)
        diff = [c async for c in diff_trees(trees, old, root)]
        assert [c[0] for c in diff] == sorted(
            k for k in set(model) | set(expected) if model.get(k) != expected.get(k)
        )
        for k in rnd.sample(sorted(expected), min(20, len(expected))):
            assert await trees.lookup(root, k) == expected[k]
        assert await trees.lookup(root, b"missing") is None
        model = expected


async def test_shape_depends_on_content_not_history(trees: TreeStore) -> None:
    items = {b"key%05d" % i: value(i) for i in range(2000)}
    one_go = await build(trees, EMPTY_ROOT, dict(items))
    stepwise = EMPTY_ROOT
    keys = list(items)
    random.Random(3).shuffle(keys)
    for start in range(0, len(keys), 250):
        stepwise = await build(trees, stepwise, {k: items[k] for k in keys[start:start + 250]})
    assert stepwise.id == one_go.id


async def test_values_rewritten_in_place_give_the_tree_a_fresh_build_gives(
    trees: TreeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ranges whose changes only replace values are rewritten whole, without merging key by
    # key; mixed with removals, new keys and changes split across batches (where that
    # shortcut must not be taken), the result must still be the tree built from scratch.
    whole: list[int] = []
    add_stored_range = TreeWriter.add_stored_range

    def counting(self: TreeWriter, leaf: Leaf, values: list[bytes]) -> None:
        whole.append(len(values))
        add_stored_range(self, leaf, values)

    monkeypatch.setattr(TreeWriter, "add_stored_range", counting)
    rnd = random.Random(11)
    model = {b"key%05d" % i: value(i) for i in range(0, 6000, 2)}
    root = await build(trees, EMPTY_ROOT, dict(model))
    for step in range(40):
        changes: dict[bytes, bytes | None] = {}
        for key in rnd.sample(sorted(model), rnd.choice([1, 30, 600, len(model)])):
            # a new value, or the same identity with another body (kept as it was)
            changes[key] = model[key][:8] + b"other" if rnd.random() < 0.2 else value(
                rnd.randrange(10**6))
        if step % 4 == 3:
            for _ in range(5):
                key = b"key%05d" % rnd.randrange(6000)
                changes[key] = None if key in model else value(rnd.randrange(10**6))
        keys = sorted(changes)
        cuts = sorted(rnd.sample(range(1, len(keys)), min(3, len(keys) - 1)))
        batches = [
            (keys[a:b], [changes[k] for k in keys[a:b]])
            for a, b in zip([0, *cuts], [*cuts, len(keys)], strict=True)
        ]
        # Every other step on a cold cache: ranges read from storage keep their keys in the
        # stored form (prefix and suffixes), those just written or cached as keys do not.
        walker = trees if step % 2 else TreeStore(trees.store, trees.partition, NodeCache())
        root, writer = await apply_changes(walker, root, ChangeStream(_batches(batches)), SMALL)
        await trees.write(writer.take_pending())
        for key, new in changes.items():
            if new is None:
                model.pop(key, None)
            elif key not in model or model[key][:8] != new[:8]:
                model[key] = new
        assert await contents(trees, root) == model
        fresh = await build(TreeStore(MemoryMetadataStore(), "nodes", NodeCache()),
                            EMPTY_ROOT, dict(model))
        assert root.id == fresh.id, step
    assert len(whole) > 100  # the shortcut was taken


async def _batches(
    batches: list[tuple[list[bytes], list[bytes | None]]],
) -> AsyncIterator[tuple[list[bytes], list[bytes | None]]]:
    for batch in batches:
        yield batch


async def test_small_commit_rewrites_few_ranges(trees: TreeStore) -> None:
    n = 100_000
    base = await build(trees, EMPTY_ROOT, {b"key%06d" % i: value(i) for i in range(n)}, Shape())
    keys = [b"key%06d" % i for i in range(0, n, n // 10)]
    root, writer = await apply_changes(
        trees, base, ChangeStream.from_lists(keys, [value(n + 1)] * len(keys)), Shape()
    )
    assert root.count == n
    # Ten changed values: ten ranges plus the index ranges on their paths, nothing else.
    assert writer.nodes_written <= 10 + 2 * 10 + 1
    assert writer.bytes_written < base.nbytes // 8


async def test_small_change_on_a_cold_cache_reads_only_the_ranges_it_rewrites() -> None:
    """Ten changed keys on a tree of four index levels, nothing cached: the ranges read are
    exactly the ones holding those keys, not also the first child of every index range on
    their paths."""
    store = MemoryMetadataStore()
    n = 300_000
    base = await build(TreeStore(store, "nodes", NodeCache()), EMPTY_ROOT,
                       {b"key%06d" % i: value(i) for i in range(n)}, SMALL)
    assert base.level >= 4
    keys = sorted(b"key%06d" % i for i in random.Random(5).sample(range(n), 10))
    cold = TreeStore(store, "nodes", NodeCache(max_bytes=64 * 1024, encoded_bytes=0))
    with counting_reads(store) as read:
        root, _ = await apply_changes(
            cold, base, ChangeStream.from_lists(keys, [value(n + 1)] * len(keys)), SMALL
        )
    ranges_read = set()
    for nid in read:
        raw = await store.get("nodes", nid)
        assert raw is not None
        if msgpack.unpackb(raw)[0] == 0:
            ranges_read.add(nid)
    holding = set()
    for key in keys:
        node = await cold.load(base.id)
        while isinstance(node, Index):
            ref = node.refs[min(bisect.bisect_left(node.lasts, key), len(node.refs) - 1)]
            node = await cold.load(ref.id)
            last = ref
        holding.add(last.id)
    assert ranges_read == holding
    assert root.count == n


async def test_cached_index_ranges_leave_the_collector_nothing_to_walk() -> None:
    """An index range, read back or just built, gives the references it was built from, and
    once it survived a collection it holds no object the garbage collector still tracks:
    a cache full of index ranges costs a full collection nothing."""
    store = MemoryMetadataStore()
    built = TreeStore(store, "nodes", NodeCache())
    root = await build(built, EMPTY_ROOT, {b"dir/key%06d" % i: value(i) for i in range(50_000)},
                       Shape())
    assert root.level >= 2
    fresh = TreeStore(store, "nodes", NodeCache())
    pending = [root]
    indexes: list[Index] = []
    while pending:
        ref = pending.pop()
        from_store, from_writer = await fresh.load(ref.id), await built.load(ref.id)
        if not isinstance(from_store, Index):
            continue
        assert isinstance(from_writer, Index)
        refs = from_store.refs
        assert refs == from_writer.refs
        assert [from_store.ref(i) for i in range(from_store.width)] == refs
        assert from_store.refs_between(1, 3) == refs[1:3]
        assert all(r.level == ref.level - 1 for r in refs)
        assert Index.of(from_store.level, refs).refs == refs
        pending += refs
        indexes += [from_store, from_writer]
    assert len(indexes) > 2
    gc.collect()
    for node in indexes:
        fields = (node.ids, node.firsts, node.lasts, node.counts, node.sizes)
        assert not any(gc.is_tracked(f) for f in fields)
    # The cache's bookkeeping adds no object per node for a collection to visit: the
    # encoded tier maps ids to bytes, and every tier's sizes are ints.
    for cache in (fresh.cache, built.cache):
        assert all(type(raw) is bytes for raw in cache._encoded.items.values())
        for lru in (cache._leaves, cache._index, cache._encoded):
            assert not gc.is_tracked(lru._sizes)


@pytest.mark.parametrize("encoded_bytes", [0, 64 * 1024 * 1024])
async def test_ranges_pushed_out_of_the_decoded_tier_stay_encoded(encoded_bytes: int) -> None:
    """With a decoded tier far smaller than the tree, a walk of the whole tree is answered
    from the encoded tier (no store read); without one, ranges are read from the store again."""
    store = MemoryMetadataStore()
    cache = NodeCache(max_bytes=64 * 1024, encoded_bytes=encoded_bytes)
    trees = TreeStore(store, "nodes", cache)
    items = {b"key%06d" % i: value(i) for i in range(20_000)}
    root = await build(trees, EMPTY_ROOT, dict(items), Shape())
    with counting_reads(store) as read:
        assert await contents(trees, root) == items
    if encoded_bytes:
        assert not read
        assert cache._encoded.bytes <= encoded_bytes
    else:
        assert len(read) > root.nbytes // (64 * 1024)
    assert cache._leaves.bytes + cache._index.bytes <= 64 * 1024


@pytest.mark.parametrize("encoded_bytes", [0, 64 * 1024 * 1024])
async def test_ranges_read_ahead_are_decoded_when_first_used(encoded_bytes: int) -> None:
    """`load_many` keeps what it read encoded, and each range is decoded when the walk first
    asks for it (a read of hundreds is not decoded in one step of the loop); with no encoded
    tier they are kept decoded. Either way, using them reads nothing more."""
    store = MemoryMetadataStore()
    items = {b"key%06d" % i: value(i) for i in range(5_000)}
    root = await build(TreeStore(store, "nodes", NodeCache()), EMPTY_ROOT, dict(items), Shape())
    top = await TreeStore(store, "nodes", NodeCache()).load(root.id)
    assert isinstance(top, Index)
    ranges: list[NodeRef] = []
    for child in top.refs:
        node = await TreeStore(store, "nodes", NodeCache()).load(child.id)
        ranges += node.refs if isinstance(node, Index) else [child]
    assert len(ranges) > 20 and all(r.level == 0 for r in ranges)

    cache = NodeCache(encoded_bytes=encoded_bytes)
    trees = TreeStore(store, "nodes", cache)
    await trees.load_many([r.id for r in ranges])
    if encoded_bytes:
        assert not cache._leaves.items
        assert set(cache._encoded.items) == {r.id for r in ranges}
    else:
        assert set(cache._leaves.items) == {r.id for r in ranges}
    with counting_reads(store) as read:
        first = await trees.load(ranges[0].id)
        assert isinstance(first, Leaf)
        assert list(first.keys) == sorted(items)[: ranges[0].count]
        assert ranges[0].id in cache._leaves.items
        if encoded_bytes:
            assert len(cache._leaves.items) == 1  # the others wait, encoded, until asked for
        for r in ranges:
            await trees.load(r.id)
    assert read == []


async def test_big_change_reads_ranges_ahead_in_round_trips() -> None:
    """Changes arriving in many batches on a cold cache: the result is right, and the walk
    never has to read a range by itself (the read-ahead brought each one in a batch)."""
    store = MemoryMetadataStore()
    built = TreeStore(store, "nodes", NodeCache())
    n = 60_000
    items = {b"key%06d" % i: value(i) for i in range(n)}
    base = await build(built, EMPTY_ROOT, dict(items), Shape())
    rnd = random.Random(11)
    picked = sorted(rnd.sample(sorted(items), 6_000))
    changes = {k: None if i % 5 == 0 else value(n + i) for i, k in enumerate(picked)}

    cold = TreeStore(store, "nodes", NodeCache(max_bytes=2 * 1024 * 1024))
    single_reads = 0
    original_get = store.get

    async def counting_get(partition: str, key: bytes) -> bytes | None:
        nonlocal single_reads
        single_reads += 1
        return await original_get(partition, key)

    store.get = counting_get  # type: ignore[method-assign]

    async def batches():  # type: ignore[no-untyped-def]
        for lo in range(0, len(picked), 500):
            part = picked[lo : lo + 500]
            yield part, [changes[k] for k in part]

    root, writer = await apply_changes(cold, base, ChangeStream(batches()), Shape())
    await cold.write(writer.take_pending())
    store.get = original_get  # type: ignore[method-assign]
    for k, v in changes.items():
        if v is None:
            items.pop(k)
        else:
            items[k] = v
    assert await contents(cold, root) == items
    assert single_reads <= 1  # the root only


async def test_new_keys_onto_an_empty_tree_are_stored_as_they_accumulate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long run of new keys (a first commit of a big upload) stores its ranges in
    slices as it goes, rather than holding the whole tree for one final transaction."""
    import lakeproxy.graveler.committed.apply as apply_module
    import lakeproxy.pause as pause_module

    monkeypatch.setattr(apply_module, "_FLUSH_BYTES", 64 * 1024)
    monkeypatch.setattr(pause_module, "WORK_SLICE", 0.0)
    store = MemoryMetadataStore()
    trees = TreeStore(store, "nodes", NodeCache())
    stored_during_walk: list[int] = []
    original_put_many = store.put_many

    async def counting_put_many(partition: str, items: list[tuple[bytes, bytes]]) -> None:
        stored_during_walk.append(sum(len(raw) for _, raw in items))
        await original_put_many(partition, items)

    store.put_many = counting_put_many  # type: ignore[method-assign]
    items = {b"key%06d" % i: value(i) for i in range(20_000)}
    keys = sorted(items)
    root, writer = await apply_changes(
        trees, EMPTY_ROOT, ChangeStream.from_lists(keys, [items[k] for k in keys]), Shape()
    )
    assert len(stored_during_walk) >= 2
    assert sum(stored_during_walk) + writer.pending_bytes == writer.bytes_written
    assert writer.pending_bytes < writer.bytes_written // 2
    await trees.write(writer.take_pending())
    assert await contents(trees, root) == items


async def test_diff_skips_shared_ranges(trees: TreeStore) -> None:
    base = await build(trees, EMPTY_ROOT, {b"key%06d" % i: value(i) for i in range(20000)},
                       Shape())
    changed = await build(trees, base, {b"key010000": value(99)}, Shape())
    trees.cache = NodeCache()  # cold: every node the diff opens is read from the store
    assert isinstance(trees.store, MemoryMetadataStore)
    with counting_reads(trees.store) as reads:
        diff = [c async for c in diff_trees(trees, base, changed)]
    assert [c[0] for c in diff] == [b"key010000"]
    # The roots, then on each side only the nodes on the path to the changed range.
    assert len(reads) == 2 * (base.level + 1)


async def test_diff_with_bounds(trees: TreeStore) -> None:
    left = await build(trees, EMPTY_ROOT, {b"a%03d" % i: value(i) for i in range(300)})
    right = await build(trees, left, {b"a%03d" % i: value(i + 1) for i in range(0, 300, 3)})
    got = [c[0] async for c in diff_trees(trees, left, right, start=b"a100", stop=b"a200")]
    assert got == [b"a%03d" % i for i in range(102, 200, 3)]


@pytest.mark.parametrize(
    ("name", "source", "dest", "strategy", "expected", "conflicts"),
    [
        ("disjoint", {b"s": value(1)}, {b"d": value(2)}, MergeStrategy.FAIL,
         {b"k": value(0), b"s": value(1), b"d": value(2)}, None),
        ("same change", {b"k": value(5)}, {b"k": value(5)}, MergeStrategy.FAIL,
         {b"k": value(5)}, None),
        ("both changed", {b"k": value(5)}, {b"k": value(6)}, MergeStrategy.FAIL, None, [b"k"]),
        ("change vs delete", {b"k": value(5)}, {b"k": None}, MergeStrategy.FAIL, None, [b"k"]),
        ("both deleted", {b"k": None}, {b"k": None}, MergeStrategy.FAIL, {}, None),
        ("source wins", {b"k": value(5)}, {b"k": value(6)}, MergeStrategy.SOURCE_WINS,
         {b"k": value(5)}, None),
        ("dest wins", {b"k": value(5)}, {b"k": None}, MergeStrategy.DEST_WINS, {}, None),
        ("source delete wins", {b"k": None}, {b"k": value(6)}, MergeStrategy.SOURCE_WINS,
         {}, None),
    ],
)
async def test_merge_scenarios(
    trees: TreeStore, name: str, source: dict[bytes, bytes | None],
    dest: dict[bytes, bytes | None], strategy: MergeStrategy,
    expected: dict[bytes, bytes] | None, conflicts: list[bytes] | None,
) -> None:
    base = await build(trees, EMPTY_ROOT, {b"k": value(0)})
    src = await build(trees, base, source)
    dst = await build(trees, base, dest)
    if conflicts is not None:
        with pytest.raises(MergeConflict) as err:
            await merge_trees(trees, base, src, dst, strategy)
        assert err.value.conflicts == [c.decode() for c in conflicts]
        return
    merged, writer = await merge_trees(trees, base, src, dst, strategy)
    if writer is not None:
        await trees.write(writer.take_pending())
    assert await contents(trees, merged) == expected, name


async def test_merge_lists_every_conflict(trees: TreeStore) -> None:
    base = await build(trees, EMPTY_ROOT, {b"k%04d" % i: value(0) for i in range(500)})
    src = await build(trees, base, {b"k%04d" % i: value(1) for i in range(500)})
    dst = await build(trees, base, {b"k%04d" % i: value(2) for i in range(0, 500, 5)})
    with pytest.raises(MergeConflict) as err:
        await merge_trees(trees, base, src, dst, MergeStrategy.FAIL)
    assert err.value.conflicts == [f"k{i:04d}" for i in range(0, 500, 5)]
