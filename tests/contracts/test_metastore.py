"""The metadata store contract, run against the memory, SQLite and PostgreSQL stores.

The second half holds what only a store on disk can show: reopening, schema versions, several
stores (and a real second process, killed mid-write) sharing one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, closing
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeproxy.errors import InvalidArgument, PreconditionFailed, StorageError
from lakeproxy.metastore.base import (
    ABSENT,
    LARGE_VALUES_SUFFIX,
    Check,
    Delete,
    DeleteRange,
    MetadataStore,
    Put,
    holds_large_values,
)
from lakeproxy.metastore.keyset import prefix_end
from lakeproxy.metastore.memory import MemoryMetadataStore
from lakeproxy.metastore.migrations import SCHEMA_VERSION
from lakeproxy.metastore.sqlite import SqliteMetadataStore
from tests.conftest import METASTORES, open_metastore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=METASTORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    if request.param == "memory":
        opened: MetadataStore = MemoryMetadataStore()
    elif request.param == "sqlite":
        opened = await SqliteMetadataStore.open(tmp_path / "meta.db")
    else:
        opened = await open_metastore("postgres", tmp_path,
                                      request.getfixturevalue("postgres_metadata_url"))
    yield opened
    await opened.close()


async def scanned(store: MetadataStore, partition: str, **kw: object) -> list[tuple[bytes, bytes]]:
    return [row async for row in store.scan(partition, **kw)]  # type: ignore[arg-type]


async def keys_of(store: MetadataStore, partition: str, **kw: object) -> list[bytes]:
    return [key for key, _ in await scanned(store, partition, **kw)]


async def cas_increment(store: MetadataStore, partition: str, key: bytes) -> int:
    """Add one to a decimal counter with compare-and-swap; return how many attempts it took."""
    for attempt in itertools.count(1):
        current = await store.get(partition, key)
        new = b"1" if current is None else b"%d" % (int(current) + 1)
        try:
            await store.set_if(partition, key, new, expect=ABSENT if current is None else current)
        except PreconditionFailed:
            continue
        return attempt
    raise AssertionError("unreachable")


# --- point reads and writes -------------------------------------------------------------------


async def test_get_set_delete(store: MetadataStore) -> None:
    assert await store.get("p", b"k") is None
    await store.set("p", b"k", b"v1")
    assert await store.get("p", b"k") == b"v1"
    await store.set("p", b"k", b"v2")
    assert await store.get("p", b"k") == b"v2"
    await store.delete("p", b"k")
    assert await store.get("p", b"k") is None
    await store.delete("p", b"k")  # deleting a missing key is not an error
    await store.delete("never-written", b"k")


async def test_empty_key_and_empty_value_round_trip(store: MetadataStore) -> None:
    await store.set("p", b"", b"")
    assert await store.get("p", b"") == b""
    assert await store.get_many("p", [b""]) == {b"": b""}
    assert await scanned(store, "p") == [(b"", b"")]


async def test_binary_keys_and_values_are_kept_exactly(store: MetadataStore) -> None:
    pairs = {b"\x00": b"\x00\x00", b"\xff\xff": bytes(range(256)), b"a\x00b": b"\xff"}
    for key, value in pairs.items():
        await store.set("p", key, value)
    for key, value in pairs.items():
        assert await store.get("p", key) == value


async def test_get_many(store: MetadataStore) -> None:
    assert await store.get_many("p", []) == {}
    assert await store.get_many("p", [b"a"]) == {}
    await store.put_many("p", [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    assert await store.get_many("p", [b"c", b"a", b"zz", b"a"]) == {b"a": b"1", b"c": b"3"}


async def test_get_many_with_more_keys_than_one_query_takes(store: MetadataStore) -> None:
    items = [(b"k%05d" % i, b"v%d" % i) for i in range(0, 2400, 2)]
    await store.put_many("p", items)
    wanted = [b"k%05d" % i for i in range(2400)]
    assert await store.get_many("p", wanted) == dict(items)


@pytest.mark.parametrize("partition", ["p", "repo/n"])  # small rows; large values
async def test_any_bytes_come_back_exactly_from_reads_of_many_rows(
    store: MetadataStore, partition: str
) -> None:
    # NULs, invalid UTF-8, empty values and values of many KiB, read a few at a time (on the
    # caller's thread) and many at a time (on a store thread, packed into one row per query).
    rnd = random.Random(5)
    items = {
        bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 40))): rnd.randbytes(
            rnd.choice([0, 1, 3, 100, 9000])
        )
        for _ in range(1500)
    }
    items[b"\x00"] = b""
    items[b"\xff\xfe\x00\xc3"] = b"\x00\xc3\x28\xff" * 300
    await store.put_many(partition, list(items.items()))
    keys = sorted(items)
    for wanted in (keys[:5], keys, [*keys[::3], b"\xffmissing"]):
        expected = {k: items[k] for k in wanted if k in items}
        assert await store.get_many(partition, wanted) == expected
    for batch_size in (100, 1000):
        scanned = [kv async for kv in store.scan(partition, batch_size=batch_size)]
        assert scanned == sorted(items.items())


async def test_get_multi_reads_records_of_many_partitions_in_order(store: MetadataStore) -> None:
    assert await store.get_multi([]) == []
    await store.set("a", b"k", b"in a")
    await store.set("ab", b"k", b"")
    await store.set("b", b"\x00\xff", bytes(range(256)))
    items = [("b", b"\x00\xff"), ("a", b"missing"), ("nowhere", b"k"), ("ab", b"k"),
             ("a", b"k"), ("b", b"\x00\xff")]
    assert await store.get_multi(items) == [
        bytes(range(256)), None, None, b"", b"in a", bytes(range(256))
    ]


async def test_get_multi_of_more_records_than_one_union_takes(store: MetadataStore) -> None:
    await store.put_many("p", [(b"k%03d" % i, b"v%d" % i) for i in range(0, 60, 3)])
    await store.set("q", b"k001", b"in q")
    items = [("p" if i % 7 else "q", b"k%03d" % i) for i in range(60)]
    expected = [
        (b"v%d" % i if i % 3 == 0 else None) if i % 7 else (b"in q" if i == 1 else None)
        for i in range(60)
    ]
    assert await store.get_multi(items) == expected
    assert await store.get_multi(items[:17]) == expected[:17]


async def test_get_multi_is_one_snapshot_while_batches_land(store: MetadataStore) -> None:
    """Records written together by one `write` are always read together: both or neither."""
    await store.write([Put("x", b"k", b"0"), Put("y", b"k", b"0")])
    done = asyncio.Event()

    async def writer() -> None:
        try:
            for n in range(1, 201):
                await store.write([Put("x", b"k", b"%d" % n), Put("y", b"k", b"%d" % n)])
                await asyncio.sleep(0)
        finally:
            done.set()

    async def reader() -> int:
        reads = 0
        while not done.is_set() or reads == 0:
            first, second = await store.get_multi([("x", b"k"), ("y", b"k")])
            assert first == second, (first, second)
            reads += 1
            assert reads < 100_000
            await asyncio.sleep(0)
        return reads

    results = await asyncio.gather(writer(), *(reader() for _ in range(4)))
    assert all(r > 0 for r in results[1:])
    assert await store.get_multi([("x", b"k"), ("y", b"k")]) == [b"200", b"200"]


async def test_partitions_are_isolated(store: MetadataStore) -> None:
    await store.set("a", b"k", b"in a")
    await store.set("ab", b"k", b"in ab")
    await store.set("b", b"k2", b"in b")
    assert await store.get("a", b"k") == b"in a"
    assert await store.get("b", b"k") is None
    assert await store.get_many("b", [b"k", b"k2"]) == {b"k2": b"in b"}
    assert await scanned(store, "a") == [(b"k", b"in a")]
    await store.write([DeleteRange("a")])
    assert await store.get("ab", b"k") == b"in ab"
    assert await store.get("b", b"k2") == b"in b"
    await store.delete("ab", b"k")
    assert await scanned(store, "b") == [(b"k2", b"in b")]


# --- conditional writes -----------------------------------------------------------------------


async def test_set_if_absent(store: MetadataStore) -> None:
    await store.set_if("p", b"k", b"v1", expect=ABSENT)
    assert await store.get("p", b"k") == b"v1"
    with pytest.raises(PreconditionFailed):
        await store.set_if("p", b"k", b"v2", expect=ABSENT)
    assert await store.get("p", b"k") == b"v1"


async def test_set_if_prior_value(store: MetadataStore) -> None:
    await store.set("p", b"k", b"v1")
    await store.set_if("p", b"k", b"v2", expect=b"v1")
    assert await store.get("p", b"k") == b"v2"
    with pytest.raises(PreconditionFailed):
        await store.set_if("p", b"k", b"v3", expect=b"v1")
    with pytest.raises(PreconditionFailed):
        await store.set_if("p", b"missing", b"v3", expect=b"v1")
    assert await store.get("p", b"k") == b"v2"
    assert await store.get("p", b"missing") is None
    await store.set_if("p", b"k", b"v2", expect=b"v2")  # writing the same value is fine
    with pytest.raises(PreconditionFailed):
        await store.set_if("p", b"k", b"v9", expect=b"")  # b"" is a value, not "absent"


async def test_set_if_on_empty_value(store: MetadataStore) -> None:
    await store.set("p", b"k", b"")
    with pytest.raises(PreconditionFailed):
        await store.set_if("p", b"k", b"x", expect=ABSENT)
    await store.set_if("p", b"k", b"x", expect=b"")
    assert await store.get("p", b"k") == b"x"


async def test_write_applies_all_ops_in_order(store: MetadataStore) -> None:
    await store.put_many("p", [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    await store.write(
        [
            Check("p", b"a", b"1"),
            Check("p", b"new", ABSENT),
            Put("p", b"new", b"n"),
            Put("q", b"x", b"other partition"),
            Delete("p", b"b"),
            Put("p", b"c", b"first"),
            Put("p", b"c", b"last"),
        ]
    )
    assert await scanned(store, "p") == [(b"a", b"1"), (b"c", b"last"), (b"new", b"n")]
    assert await store.get("q", b"x") == b"other partition"


async def test_write_with_a_failing_check_applies_nothing(store: MetadataStore) -> None:
    await store.put_many("p", [(b"a", b"1"), (b"b", b"2")])
    with pytest.raises(PreconditionFailed):
        await store.write(
            [
                Put("p", b"a", b"changed"),
                DeleteRange("p"),
                Check("p", b"b", b"not 2"),
                Put("p", b"c", b"3"),
                Put("other", b"x", b"y"),
            ]
        )
    assert await scanned(store, "p") == [(b"a", b"1"), (b"b", b"2")]
    assert await store.get("other", b"x") is None


async def test_write_checks_see_the_state_before_the_batch(store: MetadataStore) -> None:
    await store.set("p", b"old", b"1")
    await store.write([Put("p", b"k", b"v"), Check("p", b"k", ABSENT)])
    await store.write([Delete("p", b"old"), Check("p", b"old", b"1")])
    assert await scanned(store, "p") == [(b"k", b"v")]


async def test_write_of_nothing_is_fine(store: MetadataStore) -> None:
    await store.write([])


async def test_write_rejects_what_is_not_an_op(store: MetadataStore) -> None:
    with pytest.raises(TypeError):
        await store.write([Put("p", b"a", b"1"), ("p", b"b", b"2")])  # type: ignore[list-item]
    assert await store.get("p", b"a") is None


# --- bulk load and range deletes --------------------------------------------------------------


async def test_put_many_from_a_generator_last_duplicate_wins(store: MetadataStore) -> None:
    def rows() -> Iterator[tuple[bytes, bytes]]:
        for i in range(3000):
            yield b"k%04d" % (i * 7919 % 3000), b"v"
        yield b"k0001", b"last"

    await store.put_many("p", rows())
    keys = await keys_of(store, "p", batch_size=128)
    assert keys == [b"k%04d" % i for i in range(3000)]
    assert await store.get("p", b"k0001") == b"last"


async def test_put_many_is_all_or_nothing(store: MetadataStore) -> None:
    def rows() -> Iterator[tuple[bytes, bytes]]:
        yield b"a", b"1"
        yield b"b", b"2"
        raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError, match="the source failed"):
        await store.put_many("p", rows())
    assert await scanned(store, "p") == []


async def test_delete_range(store: MetadataStore) -> None:
    keys = [b"", b"\x00", b"a", b"b", b"b\x00", b"c", b"d", b"\xff", b"\xff\xff"]
    await store.put_many("p", [(k, b"v") for k in keys])
    await store.put_many("q", [(k, b"v") for k in keys])

    await store.write([DeleteRange("p", b"b", b"d")])
    assert await keys_of(store, "p") == [b"", b"\x00", b"a", b"d", b"\xff", b"\xff\xff"]
    await store.write([DeleteRange("p", b"d", b"a")])  # an empty range removes nothing
    assert len(await keys_of(store, "p")) == 6
    await store.write([DeleteRange("p", b"\xff")])
    assert await keys_of(store, "p") == [b"", b"\x00", b"a", b"d"]
    await store.write([DeleteRange("p", end=b"a")])
    assert await keys_of(store, "p") == [b"a", b"d"]
    await store.write([DeleteRange("p")])
    assert await keys_of(store, "p") == []
    assert await keys_of(store, "q") == keys


async def test_delete_range_of_a_large_partition(store: MetadataStore) -> None:
    await store.put_many("big", ((b"%08d" % i, b"x" * 20) for i in range(20_000)))
    await store.set("small", b"k", b"v")
    await store.write([DeleteRange("big")])
    assert await scanned(store, "big") == []
    assert await store.get("small", b"k") == b"v"


# --- scans ------------------------------------------------------------------------------------

SCAN_KEYS = [
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x00\xff",
    b"a",
    b"a\x00",
    b"ab",
    b"a\xff",
    b"a\xff\xff",
    b"b",
    b"\xfe",
    b"\xfe\xff",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
]


@pytest.fixture
async def loaded(store: MetadataStore) -> MetadataStore:
    await store.put_many("p", [(k, b"v:" + k) for k in reversed(SCAN_KEYS)])
    await store.put_many("p2", [(k, b"other") for k in SCAN_KEYS])
    return store


async def test_scan_orders_keys_bytewise(loaded: MetadataStore) -> None:
    assert sorted(SCAN_KEYS) == SCAN_KEYS  # the bounds cases below index into it
    assert await keys_of(loaded, "p") == sorted(SCAN_KEYS)
    assert await scanned(loaded, "p", batch_size=1) == [(k, b"v:" + k) for k in sorted(SCAN_KEYS)]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"start": b"a"}, SCAN_KEYS[4:]),
        ({"after": b"a"}, SCAN_KEYS[5:]),
        ({"after": b""}, SCAN_KEYS[1:]),
        ({"after": b"\xff\xff"}, []),
        ({"start": b"a", "after": b"\x00"}, SCAN_KEYS[4:]),
        ({"start": b"a", "after": b"ab"}, SCAN_KEYS[7:]),
        ({"prefix": b"a"}, SCAN_KEYS[4:9]),
        ({"prefix": b"a\xff"}, SCAN_KEYS[7:9]),
        ({"prefix": b"\xff"}, SCAN_KEYS[12:]),
        ({"prefix": b"\xff\xff"}, SCAN_KEYS[14:]),
        ({"prefix": b"\x00"}, SCAN_KEYS[1:4]),
        ({"prefix": b"\xfe"}, SCAN_KEYS[10:12]),
        ({"prefix": b"zz"}, []),
        ({"prefix": b"a", "start": b"a\x01"}, SCAN_KEYS[6:9]),
        ({"prefix": b"a", "start": b"b"}, []),
        ({"prefix": b"a", "after": b"a\xff"}, SCAN_KEYS[8:9]),
        ({"prefix": b"a", "after": b"ab"}, SCAN_KEYS[7:9]),
        ({"prefix": b"a", "limit": 2}, SCAN_KEYS[4:6]),
        ({"prefix": b"a", "limit": 2, "batch_size": 1}, SCAN_KEYS[4:6]),
        ({"limit": 0}, []),
        ({"limit": 3, "batch_size": 3}, SCAN_KEYS[:3]),
        ({"limit": 100, "batch_size": 4}, SCAN_KEYS),
        ({"start": b"\xff\xff\x00"}, []),
    ],
)
async def test_scan_bounds(loaded: MetadataStore, kw: dict[str, object], expected: list[bytes]):
    assert await keys_of(loaded, "p", **kw) == expected


async def test_scan_of_a_missing_partition_is_empty(store: MetadataStore) -> None:
    assert await scanned(store, "nothing-here") == []


async def test_scan_rejects_a_batch_size_below_one(loaded: MetadataStore) -> None:
    with pytest.raises(InvalidArgument):
        await scanned(loaded, "p", batch_size=0)


async def test_scan_closed_early_leaves_the_store_usable(loaded: MetadataStore) -> None:
    for _ in range(20):
        # base.scan is typed AsyncIterator, which does not promise aclose().
        async with aclosing(loaded.scan("p", batch_size=2)) as rows:  # type: ignore[type-var]
            async for key, _ in rows:
                if key == b"a":
                    break
    await loaded.set("p", b"later", b"v")
    assert await loaded.get("p", b"later") == b"v"


async def test_scan_stays_ordered_while_the_partition_changes(store: MetadataStore) -> None:
    await store.put_many("p", [(b"%04d" % i, b"v") for i in range(0, 400, 2)])
    seen: list[bytes] = []

    async def mutate() -> None:
        for i in range(1, 400, 10):
            await store.set("p", b"%04d" % i, b"new")
            await store.delete("p", b"%04d" % (i + 1))

    async def consume() -> None:
        async for key, _ in store.scan("p", batch_size=7):
            seen.append(key)
            await asyncio.sleep(0)

    await asyncio.gather(mutate(), consume())
    assert seen == sorted(set(seen))
    untouched = [b"%04d" % i for i in range(0, 400, 2) if i % 10 != 2]
    assert set(untouched) <= set(seen)


def prefixes(draw_from: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.just(b""), draw_from)


# A small alphabet with the edge bytes makes shared prefixes, 0x00 and 0xff runs likely.
edgy_bytes = st.lists(st.sampled_from([0x00, 0x01, 0x61, 0x62, 0xFE, 0xFF]), max_size=4).map(bytes)
any_key = st.one_of(edgy_bytes, st.binary(max_size=5))
_examples = itertools.count()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    keys=st.lists(any_key, max_size=30, unique=True),
    start=any_key,
    after=st.none() | any_key,
    prefix=prefixes(edgy_bytes),
    limit=st.none() | st.integers(min_value=0, max_value=12),
    batch_size=st.integers(min_value=1, max_value=6),
)
async def test_scan_matches_a_sorted_model(
    store: MetadataStore,
    keys: list[bytes],
    start: bytes,
    after: bytes | None,
    prefix: bytes,
    limit: int | None,
    batch_size: int,
) -> None:
    partition = f"model-{next(_examples)}"
    model = {key: b"v" + key for key in keys}
    await store.put_many(partition, model.items())
    await store.put_many(partition + "-noise", [(k + b"!", b"noise") for k in keys])
    expected = [
        (k, model[k])
        for k in sorted(model)
        if k >= start and (after is None or k > after) and k.startswith(prefix)
    ][:limit]
    got = await scanned(
        store,
        partition,
        start=start,
        after=after,
        prefix=prefix,
        limit=limit,
        batch_size=batch_size,
    )
    assert got == expected


@given(prefix=st.binary(max_size=6), key=st.binary(max_size=8))
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: bytes, key: bytes) -> None:
    end = prefix_end(prefix)
    inside = key >= prefix and (end is None or key < end)
    assert inside == key.startswith(prefix)


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_cas_increments_are_never_lost(store: MetadataStore) -> None:
    await asyncio.gather(*(cas_increment(store, "c", b"counter") for _ in range(200)))
    assert await store.get("c", b"counter") == b"200"


async def test_concurrent_sets_all_land(store: MetadataStore) -> None:
    await asyncio.gather(*(store.set("p", b"k%03d" % i, b"v%d" % i) for i in range(500)))
    assert await store.get_many("p", [b"k%03d" % i for i in range(500)]) == {
        b"k%03d" % i: b"v%d" % i for i in range(500)
    }


async def test_a_failed_precondition_spoils_only_its_own_write(store: MetadataStore) -> None:
    await store.set("p", b"taken", b"x")
    calls = []
    for i in range(300):
        if i % 3 == 0:
            calls.append(store.set_if("p", b"taken", b"y", expect=ABSENT))
        elif i % 3 == 1:
            calls.append(store.write([Check("p", b"taken", b"wrong"), Put("p", b"w%d" % i, b"")]))
        else:
            calls.append(store.set("p", b"s%d" % i, b"ok"))
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if r is not None]
    assert len(failures) == 200
    assert all(isinstance(r, PreconditionFailed) for r in failures)
    assert await store.get("p", b"taken") == b"x"
    assert await keys_of(store, "p", prefix=b"w") == []
    assert len(await keys_of(store, "p", prefix=b"s")) == 100


async def test_bulk_load_alongside_small_writes(store: MetadataStore) -> None:
    rows = ((b"bulk%05d" % i, b"v") for i in range(5000))
    await asyncio.gather(
        store.put_many("p", rows),
        *(store.set("p", b"small%03d" % i, b"v") for i in range(100)),
    )
    assert len(await keys_of(store, "p", prefix=b"bulk")) == 5000
    assert len(await keys_of(store, "p", prefix=b"small")) == 100


# --- SQLite only: the file ----------------------------------------------------------------------


async def test_large_value_partitions_behave_like_any_other(store: MetadataStore) -> None:
    """Partitions of large values may live apart (`holds_large_values`): every operation
    gives the same answers there as in a plain partition."""
    results = []
    for part in ("plain", "blobs" + LARGE_VALUES_SUFFIX):
        assert holds_large_values(part) == part.endswith(LARGE_VALUES_SUFFIX)
        big = bytes(range(256)) * 40  # 10 KiB
        seen: list[object] = []
        await store.set(part, b"a", big)
        await store.set_if(part, b"b", b"vb", expect=ABSENT)
        await store.set_if(part, b"b", big + b"b", expect=b"vb")
        with pytest.raises(PreconditionFailed):
            await store.set_if(part, b"b", b"x", expect=b"vb")
        await store.put_many(part, ((b"k%03d" % i, big[: i * 40]) for i in range(100)))
        await store.write([Check(part, b"a", big), Put(part, b"c", b"vc"), Delete(part, b"k001"),
                           DeleteRange(part, b"k050", b"k060")])
        with pytest.raises(PreconditionFailed):
            await store.write([Check(part, b"a", b"wrong"), Put(part, b"d", b"vd")])
        seen.append(await store.get(part, b"a") == big)
        seen.append(await store.get(part, b"d"))
        seen.append(sorted((await store.get_many(part, [b"b", b"c", b"k001", b"k002"])).items()))
        seen.append(await store.get_multi([(part, b"c"), ("plain-other", b"c"), (part, b"k099")]))
        seen.append([k for k, _ in await scanned(store, part)])
        seen.append(await scanned(store, part, start=b"k04", prefix=b"k0"))
        await store.delete(part, b"a")
        await store.write([DeleteRange(part, b"k")])
        seen.append([k for k, _ in await scanned(store, part)])
        results.append(seen)
    assert results[0] == results[1]
    assert results[0][4][:3] == [b"a", b"b", b"c"] and len(results[0][4]) == 3 + 100 - 1 - 10


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_sqlite_reopen_keeps_data_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    first = await SqliteMetadataStore.open(path)
    await first.set("p", b"k", b"v")
    await first.close()
    await first.close()  # closing twice is harmless
    again = await SqliteMetadataStore.open(path, synchronous="normal")
    assert await again.get("p", b"k") == b"v"
    await again.close()
    with closing(raw(path)) as conn:
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_keeps_large_values_in_their_own_table(tmp_path: Path) -> None:
    """A database of schema version 1 (one table) has its large-value partitions moved on
    open; new large values land in the rowid table, small rows stay in the clustered one."""
    path = tmp_path / "meta.db"
    with closing(raw(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE kv (p TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL,"
                     " PRIMARY KEY (p, k)) STRICT, WITHOUT ROWID")
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT,"
                     " applied_at TEXT)")
        conn.execute("INSERT INTO schema_version VALUES (1, 'create_kv', '')")
        conn.executemany("INSERT INTO kv VALUES (?, ?, ?)",
                         [("r/x/n", b"node", b"N" * 5000), ("r/x/s", b"row", b"small")])
    store = await SqliteMetadataStore.open(path)
    assert await store.get("r/x/n", b"node") == b"N" * 5000
    assert await store.get("r/x/s", b"row") == b"small"
    await store.set("r/y/n", b"new", b"M" * 5000)
    await store.close()
    with closing(raw(path)) as conn:
        assert conn.execute("SELECT p, k FROM kvl ORDER BY p").fetchall() == [
            ("r/x/n", b"node"), ("r/y/n", b"new")]
        assert conn.execute("SELECT p, k FROM kv").fetchall() == [("r/x/s", b"row")]
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (
            SCHEMA_VERSION,)


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    await (await SqliteMetadataStore.open(path)).close()
    with closing(raw(path)) as conn:
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'future', '')",
            (SCHEMA_VERSION + 1,),
        )
    with pytest.raises(StorageError, match="newer"):
        await SqliteMetadataStore.open(path)


async def test_sqlite_concurrent_opens_of_a_fresh_file_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    stores = await asyncio.gather(*(SqliteMetadataStore.open(path) for _ in range(4)))
    for opened in stores:
        await opened.close()
    with closing(raw(path)) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (SCHEMA_VERSION,)


async def test_sqlite_rejects_bad_options_and_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        await SqliteMetadataStore.open(tmp_path / "m.db", synchronous="SOMETIMES")
    with pytest.raises(InvalidArgument):
        await SqliteMetadataStore.open(tmp_path / "m.db", readers=0)
    with pytest.raises(StorageError):
        await SqliteMetadataStore.open(tmp_path / "no-such-dir" / "m.db")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        await SqliteMetadataStore.open(tmp_path / "junk.db")


async def test_sqlite_rejects_keys_that_are_not_bytes(tmp_path: Path) -> None:
    store = await SqliteMetadataStore.open(tmp_path / "meta.db")
    try:
        with pytest.raises(InvalidArgument):
            await store.set("p", "text", b"v")  # type: ignore[arg-type]
        assert await scanned(store, "p") == []
    finally:
        await store.close()


async def test_sqlite_a_write_failing_midway_is_undone_alone(tmp_path: Path) -> None:
    store = await SqliteMetadataStore.open(tmp_path / "meta.db")
    try:
        for _ in range(5):
            bad = [Put("p", b"bad-first", b"1"), Put("p", b"bad-second", "text")]  # type: ignore[arg-type]
            results = await asyncio.gather(
                *(store.set("p", b"ok%d" % i, b"v") for i in range(50)),
                store.write(bad),
                *(store.set("p", b"ok%d" % i, b"v") for i in range(50, 100)),
                return_exceptions=True,
            )
            assert isinstance(results.pop(50), InvalidArgument)
            assert results == [None] * 100
            assert await store.get("p", b"bad-first") is None
            assert len(await keys_of(store, "p", prefix=b"ok")) == 100
    finally:
        await store.close()


async def test_sqlite_put_many_failing_after_many_chunks_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lakeproxy.metastore.sqlite._BULK_CHUNK", 10)
    store = await SqliteMetadataStore.open(tmp_path / "meta.db")
    good = [(b"k%03d" % i, b"v") for i in range(95)]

    def failing() -> Iterator[tuple[bytes, bytes]]:
        yield from good
        raise RuntimeError("the source failed")

    try:
        with pytest.raises(InvalidArgument):
            await store.put_many("p", [*good, (b"z", "text")])  # type: ignore[list-item]
        with pytest.raises(RuntimeError):
            await store.put_many("p", failing())
        assert await scanned(store, "p") == []
        await store.put_many("p", good)
        assert len(await scanned(store, "p")) == 95
    finally:
        await store.close()


async def test_sqlite_is_unusable_after_close(tmp_path: Path) -> None:
    store = await SqliteMetadataStore.open(tmp_path / "meta.db")
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.get("p", b"k")
    with pytest.raises(StorageError, match="closed"):
        await store.set("p", b"k", b"v")


async def test_sqlite_lock_timeout_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    store = await SqliteMetadataStore.open(path, busy_timeout=0.2)
    try:
        with closing(raw(path)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            results = await asyncio.gather(
                *(store.set("p", b"k%d" % i, b"v") for i in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, StorageError) for r in results), results
            assert isinstance(results[0], StorageError)
            assert "locked" in str(results[0])
            assert isinstance(results[0].__cause__, sqlite3.OperationalError)
            other.execute("ROLLBACK")
        await store.set("p", b"k", b"v")  # the lock is gone: writes work again
        assert await store.get("p", b"k") == b"v"
    finally:
        await store.close()


async def test_sqlite_two_stores_on_one_file_keep_cas_exact(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    first = await SqliteMetadataStore.open(path)
    second = await SqliteMetadataStore.open(path)
    try:
        await asyncio.gather(
            *(cas_increment(s, "c", b"n") for s in (first, second) for _ in range(60))
        )
        assert await first.get("c", b"n") == b"120"
        assert await second.get("c", b"n") == b"120"
    finally:
        await first.close()
        await second.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from lakeproxy.metastore.sqlite import SqliteMetadataStore

    async def worker(store, n):
        for i in range(10**9):
            key = f"w{n:02d}-{i:09d}"
            await store.set("acks", key.encode(), b"v" * 150)
            print(key, flush=True)

    async def main():
        store = await SqliteMetadataStore.open(sys.argv[1])
        await asyncio.gather(*(worker(store, n) for n in range(16)))

    asyncio.run(main())
    """
)


async def test_sqlite_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert child.stdout is not None
    acknowledged: list[bytes] = []
    try:
        while len(acknowledged) < 1500:
            line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
            if not line:
                break
            acknowledged.append(line.strip())
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
    rest, err = await child.communicate()
    acknowledged += rest.split()
    assert child.returncode == -signal.SIGKILL, err.decode()
    assert len(acknowledged) >= 1500, err.decode()

    store = await SqliteMetadataStore.open(path)
    try:
        found = await store.get_many("acks", acknowledged)
        assert len(found) == len(acknowledged)
        assert set(found.values()) == {b"v" * 150}
    finally:
        await store.close()
    with closing(raw(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# --- PostgreSQL only: URLs, schemas, migrations -------------------------------------------------


def test_postgres_url_parameters_are_read_and_removed() -> None:
    from lakeproxy.metastore.pg_url import parse_postgres_url

    target = parse_postgres_url("postgresql://u@db.example:6432/meta?schema=lake&pool_max=7"
                                "&sslmode=disable")
    assert (target.schema, target.pool_min, target.pool_max) == ("lake", 2, 7)
    assert "schema" not in target.conninfo and "pool_max" not in target.conninfo
    assert "sslmode=disable" in target.conninfo and "application_name=lakeproxy" in target.conninfo
    by_path = parse_postgres_url(
        "postgres://h/db?options=-csearch_path%3D%22My%5C%20Lake%22,public%20-cwork_mem%3D4MB")
    assert by_path.schema == "My Lake"
    assert parse_postgres_url("postgresql://h/db?options=-c%20search_path%3D$user,x").schema == "x"
    assert parse_postgres_url("postgresql://h/db").schema == "public"
    assert parse_postgres_url("postgresql://h/db?pool_max=1").pool_min == 1


@pytest.mark.parametrize(
    "url",
    [
        "mysql://h/db",
        "postgresql://h/db?pool_max=0",
        "postgresql://h/db?pool_min=5&pool_max=2",
        "postgresql://h/db?pool_max=many",
        "postgresql://h/db?no_such_libpq_option=1",
        "postgresql://h/db?schema=" + "x" * 64,
    ],
)
def test_postgres_bad_urls_are_invalid_arguments(url: str) -> None:
    from lakeproxy.metastore.pg_url import parse_postgres_url

    with pytest.raises(InvalidArgument):
        parse_postgres_url(url)


async def test_open_metastore_picks_the_store_by_url(tmp_path: Path) -> None:
    from lakeproxy.metastore import open_metastore as open_by_url

    embedded = await open_by_url(None, tmp_path / "data")
    try:
        assert isinstance(embedded, SqliteMetadataStore)
        assert (tmp_path / "data" / "metadata.db").exists()
    finally:
        await embedded.close()
    with pytest.raises(InvalidArgument):
        await open_by_url("mysql://h/db", tmp_path)


def test_unreachable_postgres_skips_tests_but_fails_them_in_ci() -> None:
    from tests.conftest import postgres_unreachable, require_postgres

    reason = postgres_unreachable("postgresql://postgres@127.0.0.1:1/test")
    assert reason is not None
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        require_postgres(reason, {})
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_postgres(reason, {"CI": "true"})
    require_postgres(None, {"CI": "true"})  # reachable: the test runs


@pytest.mark.postgres
async def test_postgres_creates_its_schema_and_reopens_it(postgres_metadata_url: str) -> None:
    from lakeproxy.metastore.pg_migrations import SCHEMA_VERSION as PG_VERSION
    from lakeproxy.metastore.postgres import PostgresMetadataStore

    first, second = await asyncio.gather(
        PostgresMetadataStore.open(postgres_metadata_url),
        PostgresMetadataStore.open(postgres_metadata_url),
    )
    await first.set("p", b"k", b"v")
    await first.close()
    await first.close()  # closing twice is harmless
    assert await second.get("p", b"k") == b"v"
    await second.close()
    with pytest.raises(StorageError, match="closed"):
        await second.get("p", b"k")
    async with await psycopg.AsyncConnection.connect(postgres_metadata_url.split("?")[0]) as c:
        cur = await c.execute(f'SELECT version FROM "{first.schema}".schema_version')
        assert await cur.fetchall() == [(v,) for v in range(1, PG_VERSION + 1)]


@pytest.mark.postgres
async def test_postgres_refuses_a_newer_schema(postgres_metadata_url: str) -> None:
    from lakeproxy.metastore.postgres import PostgresMetadataStore

    store = await PostgresMetadataStore.open(postgres_metadata_url)
    await store.close()
    async with await psycopg.AsyncConnection.connect(
        postgres_metadata_url.split("?")[0], autocommit=True
    ) as c:
        await c.execute(f'INSERT INTO "{store.schema}".schema_version (version, name)'
                        " VALUES (999, 'future')")
    with pytest.raises(StorageError, match="newer"):
        await PostgresMetadataStore.open(postgres_metadata_url)


async def test_postgres_unreachable_is_service_unavailable() -> None:
    from lakeproxy.errors import ServiceUnavailable
    from lakeproxy.metastore.postgres import PostgresMetadataStore

    with pytest.raises(ServiceUnavailable):
        await PostgresMetadataStore.open("postgresql://postgres@127.0.0.1:1/test",
                                         connection_timeout=1)


@pytest.mark.postgres
async def test_postgres_rejects_keys_that_are_not_bytes(postgres_metadata_url: str) -> None:
    from lakeproxy.metastore.postgres import PostgresMetadataStore

    store = await PostgresMetadataStore.open(postgres_metadata_url)
    try:
        with pytest.raises(InvalidArgument):
            await store.set("p", "text", b"v")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            await store.write([Put("p", b"a", b"1"), Put("p", b"b", "text")])  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            await store.put_many("p", [(b"a", b"1"), (b"z", "text")])  # type: ignore[list-item]
        assert await scanned(store, "p") == []
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_put_many_of_many_chunks_is_one_transaction(
    postgres_metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakeproxy.metastore.postgres import PostgresMetadataStore

    monkeypatch.setattr("lakeproxy.metastore.postgres._BULK_ROWS", 10)
    store = await PostgresMetadataStore.open(postgres_metadata_url)
    good = [(b"k%03d" % i, b"v%d" % i) for i in range(95)]

    def failing() -> Iterator[tuple[bytes, bytes]]:
        yield from good
        raise RuntimeError("the source failed")

    try:
        with pytest.raises(RuntimeError):
            await store.put_many("p", failing())
        assert await scanned(store, "p") == []
        await store.put_many("p", [*good, (b"k000", b"last")])
        assert len(await scanned(store, "p")) == 95
        assert await store.get("p", b"k000") == b"last"
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_checks_of_one_key_that_disagree_fail(postgres_metadata_url: str) -> None:
    store = await open_metastore("postgres", Path(), postgres_metadata_url)
    try:
        await store.set("p", b"k", b"v")
        for expects in ((b"v", ABSENT), (b"v", b"w"), (ABSENT, b"v")):
            with pytest.raises(PreconditionFailed):
                await store.write([Check("p", b"k", e) for e in expects] + [Put("p", b"x", b"")])
        await store.write([Check("p", b"k", b"v"), Check("p", b"k", b"v"),
                           Check("p", b"n", ABSENT), Check("p", b"n", ABSENT),
                           Put("p", b"x", b"")])
        assert await keys_of(store, "p") == [b"k", b"x"]  # the placeholder of b"n" is gone
    finally:
        await store.close()
