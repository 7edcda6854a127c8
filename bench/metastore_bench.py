"""Time the SQLite metadata store on a bulk load, a full scan and a whole-partition DeleteRange.

    .venv/bin/python bench/metastore_bench.py --rows 1000000

Keys are ~40 bytes and values ~150 bytes. By default keys arrive in random order (the worst
case for the b-tree); `--sorted` feeds them in key order, as a range writer would.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import Awaitable, Iterator

from lakeproxy.metastore.base import DeleteRange
from lakeproxy.metastore.sqlite import SqliteMetadataStore

PARTITION = "bench"


def rows(count: int, *, ordered: bool) -> Iterator[tuple[bytes, bytes]]:
    """Yield `count` (key, value) pairs lazily, so the load streams in bounded memory."""
    value = os.urandom(75).hex().encode()
    for i in range(count):
        if ordered:
            key = b"data/%010d/" % i + hashlib.md5(b"%d" % i).hexdigest()[:24].encode()
        else:
            key = b"data/" + hashlib.md5(b"%d" % i).hexdigest().encode() + b"/%05d" % (i % 99999)
        yield key, value


async def timed(label: str, aw: Awaitable[object]) -> float:
    start = time.perf_counter()
    await aw
    seconds = time.perf_counter() - start
    print(f"{label:<28} {seconds:8.2f} s")
    return seconds


async def scan_all(store: SqliteMetadataStore, expected: int) -> None:
    seen = 0
    async for _ in store.scan(PARTITION, batch_size=5000):
        seen += 1
    if seen != expected:
        raise SystemExit(f"scan saw {seen} rows, expected {expected}")


async def main(count: int, ordered: bool, synchronous: str, directory: str | None) -> None:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "bench.db")
        store = await SqliteMetadataStore.open(path, synchronous=synchronous)
        try:
            order = "sorted" if ordered else "random"
            print(f"{count} rows, {order} keys, synchronous={synchronous}, file {path}")
            start = time.perf_counter()
            for _ in rows(count, ordered=ordered):
                pass
            print(f"{'(generating the rows alone)':<28} {time.perf_counter() - start:8.2f} s")
            await timed("put_many", store.put_many(PARTITION, rows(count, ordered=ordered)))
            size = await asyncio.to_thread(os.path.getsize, path)
            print(f"{'file size':<28} {size / 2**20:8.1f} MiB")
            await timed("full scan", scan_all(store, count))
            await timed("DeleteRange (whole)", store.write([DeleteRange(PARTITION)]))
            if [row async for row in store.scan(PARTITION, limit=1)]:
                raise SystemExit("DeleteRange left rows behind")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sorted", action="store_true", help="load keys in ascending order")
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--dir", default=None, help="where to put the database (default: tmp)")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.sorted, args.synchronous, args.dir))
