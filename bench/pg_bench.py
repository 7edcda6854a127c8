#!/usr/bin/env python3
"""4 KiB PUT/GET through `lake serve`: SQLite vs PostgreSQL vs two processes on PostgreSQL.

Three setups, each started fresh (own data directory; PostgreSQL in a new schema that is
dropped afterwards):

    sqlite      one `lake serve` process, metadata in SQLite in its data directory
    pg          one `lake serve` process, metadata in PostgreSQL
    pg-x2       two `lake serve` processes (two ports) on one PostgreSQL schema; the client
                spreads its requests over both, round robin

For each setup and concurrency (default 16 and 64) it PUTs then GETs a fixed set of 4 KiB
objects for --duration seconds (at most --max-ops requests) and prints ops/s, median and p99
latency. The load generator keeps its own cost low: one asyncio process, aiohttp, and SigV4
URLs presigned up front (per endpoint) and replayed. It shares the machine with the servers,
so compare setups run on the same machine in one go, not absolute numbers.

    .venv/bin/python bench/pg_bench.py [--postgres postgresql://postgres@127.0.0.1/test]
        [--concurrency 16,64] [--duration 8] [--objects 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import psycopg
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server import Server, lake_serve  # noqa: E402

BODY = b"x" * 4096


@contextlib.contextmanager
def schema(base_url: str) -> Iterator[str]:
    """A metadata URL naming a fresh schema, dropped when the block ends."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}schema={name}&application_name={name}&pool_max=16"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.contextmanager
def setup(kind: str, tmp: Path, postgres: str) -> Iterator[list[Server]]:
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            yield [stack.enter_context(lake_serve(tmp / "a"))]
            return
        url = stack.enter_context(schema(postgres))
        count = 2 if kind == "pg-x2" else 1
        yield [stack.enter_context(lake_serve(tmp / f"s{i}", metadata_url=url))
               for i in range(count)]


def presign(servers: list[Server], bucket: str, keys: list[str], method: str) -> list[str]:
    """One URL per key, the keys dealt round robin over the servers."""
    clients = [boto3.client(
        "s3", endpoint_url=s.endpoint, region_name="us-east-1",
        aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    ) for s in servers]
    op = "put_object" if method == "PUT" else "get_object"
    return [
        clients[i % len(clients)].generate_presigned_url(
            op, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
        for i, key in enumerate(keys)
    ]


async def run(urls: list[str], method: str, concurrency: int, duration: float,
              max_ops: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration
    cycle = itertools.cycle(urls)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline and len(latencies) + errors < max_ops:
                url = next(cycle)
                started = time.perf_counter()
                async with session.request(method, url,
                                           data=BODY if method == "PUT" else None) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "ops_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
        "errors": errors,
    }


def bench_setup(kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, setup(kind, Path(tmp), args.postgres) as servers:
        first = servers[0]
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=first.endpoint, region_name="us-east-1",
                     aws_access_key_id=first.access_key,
                     aws_secret_access_key=first.secret_key).create_bucket(Bucket=bucket)
        keys = [f"main/bench/{i:06d}" for i in range(args.objects)]
        puts, gets = presign(servers, bucket, keys, "PUT"), presign(servers, bucket, keys, "GET")
        for concurrency in args.concurrency:
            for method, urls in (("PUT", puts), ("GET", gets)):
                result = asyncio.run(run(urls, method, concurrency, args.duration, args.max_ops))
                rows.append({"setup": kind, "op": method, "concurrency": concurrency, **result})
                print(json.dumps(rows[-1]) if args.json else
                      f"{kind:7} {method:3} c={concurrency:<3} {result['ops_per_s']:>8} ops/s "
                      f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                      f"errors {result['errors']}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--setups", default="sqlite,pg,pg-x2")
    parser.add_argument("--concurrency", default="16,64",
                        type=lambda s: [int(c) for c in s.split(",")])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--max-ops", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for kind in args.setups.split(","):
        bench_setup(kind, args)


if __name__ == "__main__":
    main()
