"""Benchmark of the REST API's listings, with the lakeFS client (`lakefs-sdk`), against a real
`lake serve`, next to the same listing through the S3 gateway (boto3 ListObjectsV2).

The data is built with the core directly (entries staged in bulk and committed; listings never
read object bytes), then the server is started on it:

    branches   list_branches, pages of 1000, over --branches branches
    objects    objects/ls, pages of 1000, over --objects committed objects
    diff       diff_refs, pages of 1000, over a commit of --changes changes
    s3         ListObjectsV2, pages of 1000, over the same --objects objects

Reported per listing: pages, median and p90 milliseconds per page; and the ratio of the API
object listing to ListObjectsV2.

    python bench/api_bench.py [--objects 100000 --branches 1000 --changes 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from lakefs_sdk import Configuration
from lakefs_sdk.client import LakeFSClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lakeproxy.config import Settings
from lakeproxy.core import open_graveler
from lakeproxy.graveler import Entry
from tests.server import lake_serve

REPO = "bench"
PAGE = 1000


def _entry(i: int, salt: str = "") -> Entry:
    digest = f"{i:08x}{salt:>8}".replace(" ", "0")[:16] * 2
    return Entry(f"data/0000000000/{digest}", 1000 + i % 100, digest, digest, 1.7e9)


async def build(data_dir: Path, objects: int, branches: int, changes: int) -> None:
    g = await open_graveler(Settings(data_dir=data_dir, sqlite_synchronous="OFF"))
    try:
        await g.create_repository(REPO)
        batch = 20_000
        for start in range(0, objects, batch):
            items = [(f"data/part-{i // 1000:04d}/file-{i:07d}.parquet", _entry(i))
                     for i in range(start, min(objects, start + batch))]
            await g.stage_many(REPO, "main", items)
        await g.commit(REPO, "main", "load")
        for b in range(branches - 1):
            await g.create_branch(REPO, f"branch-{b:05d}", "main")
        await g.create_branch(REPO, "changes", "main")
        step = max(1, objects // changes)
        items = [(f"data/part-{i // 1000:04d}/file-{i:07d}.parquet", _entry(i, "chg"))
                 for i in range(0, objects, step)][:changes]
        await g.stage_many(REPO, "changes", items)
        await g.commit(REPO, "changes", "change")
    finally:
        await g.close()


def timed_pages(fetch: Callable[[str], tuple[int, str | None]], limit: int = 10_000
                ) -> list[float]:
    """Call `fetch(token)` until it returns no next token; the milliseconds of each call."""
    times, token, total = [], "", 0
    for _ in range(limit):
        t0 = time.perf_counter()
        count, token = fetch(token)
        times.append((time.perf_counter() - t0) * 1000)
        total += count
        if not token:
            return times
    raise RuntimeError("listing did not end")


def summary(name: str, times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    return {"listing": name, "pages": len(times),
            "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2)}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        asyncio.run(build(data, args.objects, args.branches, args.changes))
        print(f"built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        with lake_serve(data) as server:
            sdk = LakeFSClient(Configuration(host=server.endpoint, username=server.access_key,
                                             password=server.secret_key))
            s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                              aws_access_key_id=server.access_key,
                              aws_secret_access_key=server.secret_key,
                              config=Config(s3={"addressing_style": "path"}))

            def branches(token: str) -> tuple[int, str | None]:
                page = sdk.branches_api.list_branches(REPO, amount=PAGE, after=token)
                return len(page.results), page.pagination.next_offset or None

            def objects(token: str) -> tuple[int, str | None]:
                page = sdk.objects_api.list_objects(REPO, "main", amount=PAGE, after=token)
                return len(page.results), page.pagination.next_offset or None

            def diff(token: str) -> tuple[int, str | None]:
                page = sdk.refs_api.diff_refs(REPO, "main", "changes", amount=PAGE,
                                              after=token)
                return len(page.results), page.pagination.next_offset or None

            def list_v2(token: str) -> tuple[int, str | None]:
                kwargs = {"ContinuationToken": token} if token else {}
                page = s3.list_objects_v2(Bucket=REPO, Prefix="main/", MaxKeys=PAGE, **kwargs)
                return page["KeyCount"], page.get("NextContinuationToken")

            rows = []
            for _ in range(args.warmup):
                timed_pages(objects)
                timed_pages(list_v2)
            for name, fetch in (("branches", branches), ("objects", objects),
                                ("diff", diff), ("s3 ListObjectsV2", list_v2)):
                rows.append(summary(name, timed_pages(fetch)))
            s3.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = run(args)
    by_name = {r["listing"]: r for r in rows}
    ratio = by_name["objects"]["median_ms"] / max(by_name["s3 ListObjectsV2"]["median_ms"],
                                                  1e-9)
    if args.json:
        print(json.dumps({"rows": rows, "api_to_s3_ratio": round(ratio, 2)}, indent=2))
        return
    print(f"{'listing':<18}{'pages':>7}{'median ms':>11}{'p90 ms':>9}")
    for r in rows:
        print(f"{r['listing']:<18}{r['pages']:>7}{r['median_ms']:>11}{r['p90_ms']:>9}")
    print(f"objects/ls vs ListObjectsV2 (median per page): {ratio:.2f}x")


if __name__ == "__main__":
    main()
