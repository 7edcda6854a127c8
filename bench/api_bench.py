"""Benchmark of the REST API's listings against a real `lake serve`, next to the same object
listing through the S3 gateway (ListObjectsV2), on the same data in the same run.

The data is built with the core directly (entries staged in bulk and committed: listings
never read object bytes), then the server is started on it:

    branches   listBranches, pages of 1000, over --branches branches
    objects    objects/ls, pages of 1000, over --objects committed objects
    diff       diffRefs, pages of 1000, over a commit of --changes changed objects
    s3         ListObjectsV2, pages of 1000, over the same --objects objects

Each listing is read with two clients: the lakeFS client (`lakefs-sdk`, whose pydantic parsing
is part of its time) or boto3 for S3, and a raw HTTP client (httpx, one kept-alive connection;
S3 requests presigned before the clock starts) whose time is the server's plus the wire.
Every listing is paged through --runs times after a warm-up pass; a page's time is its
median over the runs, and the table shows the median and p90 of those over the pages.

    python bench/api_bench.py [--objects 100000 --branches 1000 --changes 10000] [--runs 5]
        [--json] [--profile objects|diff|branches]

`--profile LISTING` serves in this process instead and prints where the server spends the
time of that listing (cProfile, raw client). Timings on a shared machine are noisy: compare
medians of several invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from lakefs_sdk import Configuration
from lakefs_sdk.client import LakeFSClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lakeproxy.config import Settings
from lakeproxy.core import open_graveler
from lakeproxy.graveler import Entry
from tests.server import ACCESS_KEY, SECRET_KEY, lake_serve

REPO = "bench"
PAGE = 1000
MAX_PAGES = 100_000
_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")

# A page fetcher: given the previous page's continuation (or ""), fetch one page and return
# (results, next continuation or None). `prepare` runs before the clock starts.
Fetch = Callable[[str], tuple[int, str | None]]


def _key(i: int) -> str:
    return f"data/part-{i // 1000:04d}/file-{i:07d}.parquet"


def _entry(i: int, salt: int = 0) -> Entry:
    digest = f"{salt:08x}{i:024x}"
    return Entry(f"data/0000000000/{digest}", 1000 + i % 100, digest, digest, 1.7e9)


async def build(data_dir: Path, objects: int, branches: int, changes: int) -> None:
    """`objects` committed on main, `branches` branches in all (main and `changes` among
    them), and a commit of `changes` changed objects on the branch `changes`."""
    g = await open_graveler(Settings(data_dir=data_dir, sqlite_synchronous="OFF"))
    try:
        await g.create_repository(REPO)
        batch = 20_000
        for start in range(0, objects, batch):
            items = [(_key(i), _entry(i)) for i in range(start, min(objects, start + batch))]
            await g.stage_many(REPO, "main", items)
        await g.commit(REPO, "main", "load")
        for b in range(max(0, branches - 2)):
            await g.create_branch(REPO, f"branch-{b:05d}", "main")
        await g.create_branch(REPO, "changes", "main")
        step = max(1, objects // max(1, changes))
        items = [(_key(i), _entry(i, 1)) for i in range(0, objects, step)][:changes]
        await g.stage_many(REPO, "changes", items)
        await g.commit(REPO, "changes", "change")
    finally:
        await g.close()


def timed_pages(fetch: Fetch, prepare: Callable[[str], Any] | None = None) -> list[float]:
    """Page through a listing; the milliseconds of each page's fetch."""
    times: list[float] = []
    token = ""
    for _ in range(MAX_PAGES):
        prepared = prepare(token) if prepare is not None else token
        t0 = time.perf_counter()
        _count, following = fetch(prepared)
        times.append((time.perf_counter() - t0) * 1000)
        if not following:
            return times
        token = following
    raise RuntimeError("the listing did not end")


def summary(listing: str, client: str, runs: list[list[float]]) -> dict[str, Any]:
    pages = min(len(r) for r in runs)
    per_page = sorted(statistics.median(r[i] for r in runs) for i in range(pages))
    return {"listing": listing, "client": client, "pages": pages, "runs": len(runs),
            "median_ms": round(statistics.median(per_page), 2),
            "p90_ms": round(per_page[int(0.9 * (pages - 1))], 2)}


def api_fetchers(endpoint: str) -> tuple[dict[str, Fetch], dict[str, Fetch], Callable[[], None]]:
    """(lakefs-sdk fetchers, raw fetchers, close) for the three API listings."""
    sdk = LakeFSClient(Configuration(host=endpoint, username=ACCESS_KEY, password=SECRET_KEY))
    raw = httpx.Client(base_url=endpoint + "/api/v1", auth=(ACCESS_KEY, SECRET_KEY),
                       timeout=60)
    paths = {"branches": f"/repositories/{REPO}/branches",
             "objects": f"/repositories/{REPO}/refs/main/objects/ls",
             "diff": f"/repositories/{REPO}/refs/main/diff/changes"}

    def via_sdk(call: Callable[..., Any]) -> Fetch:
        def fetch(token: str) -> tuple[int, str | None]:
            page = call(amount=PAGE, after=token)
            return len(page.results), page.pagination.next_offset or None
        return fetch

    def via_raw(path: str) -> Fetch:
        def fetch(token: str) -> tuple[int, str | None]:
            response = raw.get(path, params={"amount": PAGE, "after": token})
            response.raise_for_status()
            body = json.loads(response.content)
            return len(body["results"]), body["pagination"]["next_offset"] or None
        return fetch

    sdk_fetch = {
        "branches": via_sdk(lambda **kw: sdk.branches_api.list_branches(REPO, **kw)),
        "objects": via_sdk(lambda **kw: sdk.objects_api.list_objects(REPO, "main", **kw)),
        "diff": via_sdk(lambda **kw: sdk.refs_api.diff_refs(REPO, "main", "changes", **kw)),
    }
    raw_fetch = {name: via_raw(path) for name, path in paths.items()}
    return sdk_fetch, raw_fetch, raw.close


def s3_fetchers(endpoint: str) -> tuple[Fetch, Fetch, Callable[[str], str], Callable[[], None]]:
    """(boto3 fetch, raw fetch of a presigned URL, presign, close) for ListObjectsV2."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                      config=Config(s3={"addressing_style": "path"}))
    raw = httpx.Client(timeout=60)

    def params(token: str) -> dict[str, Any]:
        out: dict[str, Any] = {"Bucket": REPO, "Prefix": "main/", "MaxKeys": PAGE}
        if token:
            out["ContinuationToken"] = token
        return out

    def via_boto(token: str) -> tuple[int, str | None]:
        page = s3.list_objects_v2(**params(token))
        return page["KeyCount"], page.get("NextContinuationToken")

    def presign(token: str) -> str:
        return s3.generate_presigned_url("list_objects_v2", Params=params(token))

    def via_raw(url: str) -> tuple[int, str | None]:
        response = raw.get(url)
        response.raise_for_status()
        found = _TOKEN.search(response.content)
        return response.content.count(b"<Key>"), found.group(1).decode() if found else None

    def close() -> None:
        raw.close()
        s3.close()

    return via_boto, via_raw, presign, close


def run(args: argparse.Namespace, data: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with lake_serve(data) as server:
        sdk_fetch, raw_fetch, close_api = api_fetchers(server.endpoint)
        boto_fetch, s3_raw, presign, close_s3 = s3_fetchers(server.endpoint)
        try:
            plan: list[tuple[str, str, Fetch, Callable[[str], Any] | None]] = []
            for name in ("branches", "objects", "diff"):
                plan += [(name, "lakefs-sdk", sdk_fetch[name], None),
                         (name, "raw http", raw_fetch[name], None)]
            plan += [("s3 ListObjectsV2", "boto3", boto_fetch, None),
                     ("s3 ListObjectsV2", "raw http", s3_raw, presign)]
            for listing, client, fetch, prepare in plan:
                timed_pages(fetch, prepare)  # warm-up: caches, connections
                runs = [timed_pages(fetch, prepare) for _ in range(args.runs)]
                rows.append(summary(listing, client, runs))
                print(f"{listing} / {client}: done", file=sys.stderr)
        finally:
            close_api()
            close_s3()
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """objects/ls over ListObjectsV2, median page time, per kind of client."""
    by = {(r["listing"], r["client"]): r["median_ms"] for r in rows}
    return {
        "lakefs-sdk / boto3": round(by["objects", "lakefs-sdk"]
                                    / by["s3 ListObjectsV2", "boto3"], 2),
        "raw / raw": round(by["objects", "raw http"] / by["s3 ListObjectsV2", "raw http"], 2),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'listing':<18}{'client':<12}{'pages':>6}{'median ms':>11}{'p90 ms':>9}")
    for r in rows:
        print(f"{r['listing']:<18}{r['client']:<12}{r['pages']:>6}{r['median_ms']:>11}"
              f"{r['p90_ms']:>9}")
    for name, value in ratios(rows).items():
        print(f"objects/ls vs ListObjectsV2, median page, {name}: {value:.2f}x")


async def profile(data: Path, listing: str, runs: int) -> None:
    """Serve in this process and profile `runs` passes of `listing` with a raw client."""
    import aiohttp
    from aiohttp import web

    from lakeproxy.server import RootCredentials, ServeOptions, build_app

    paths = {"branches": f"/api/v1/repositories/{REPO}/branches",
             "objects": f"/api/v1/repositories/{REPO}/refs/main/objects/ls",
             "diff": f"/api/v1/repositories/{REPO}/refs/main/diff/changes"}
    app = await build_app(Settings(data_dir=data), ServeOptions(),
                          RootCredentials(ACCESS_KEY, SECRET_KEY, False))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    headers = {"Authorization": aiohttp.encode_basic_auth(ACCESS_KEY, SECRET_KEY)}
    profiler = cProfile.Profile()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
            for i in range(runs + 1):
                after, times = "", []
                for _ in range(MAX_PAGES):
                    if i:
                        profiler.enable()
                    t0 = time.perf_counter()
                    async with http.get(paths[listing],
                                        params={"amount": PAGE, "after": after}) as response:
                        body = json.loads(await response.read())
                    times.append((time.perf_counter() - t0) * 1000)
                    profiler.disable()
                    if not body["pagination"]["has_more"]:
                        break
                    after = body["pagination"]["next_offset"]
                label = f"run {i}" if i else "warm-up"
                print(f"{listing} {label}: {len(times)} pages, median "
                      f"{statistics.median(times):.2f} ms (profiled)", file=sys.stderr)
    finally:
        await runner.cleanup()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5, help="timed passes per listing")
    parser.add_argument("--data-dir", type=Path,
                        help="build here (kept) or reuse what an earlier run built here")
    parser.add_argument("--profile", choices=("objects", "diff", "branches"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir or Path(tmp) / "data"
        if not (data / "metadata.db").exists():
            t0 = time.perf_counter()
            asyncio.run(build(data, args.objects, args.branches, args.changes))
            print(f"built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        if args.profile:
            asyncio.run(profile(data, args.profile, args.runs))
            return
        rows = run(args, data)
    if args.json:
        print(json.dumps({"rows": rows, "ratios": ratios(rows)}, indent=2))
    else:
        print_table(rows)


if __name__ == "__main__":
    main()
