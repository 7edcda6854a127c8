#!/usr/bin/env python3
"""4 KiB PUT/GET through `lake serve`: SQLite vs PostgreSQL vs two processes on PostgreSQL.

Three setups, each started fresh (own data directory; PostgreSQL in a new schema that is
dropped afterwards):

    sqlite      one `lake serve` process, metadata in SQLite in its data directory
    pg          one `lake serve` process, metadata in PostgreSQL
    pg-x2       two `lake serve` processes (two ports) on one PostgreSQL schema; the client
                spreads its requests over both, round robin

Every setup is started at once. For each concurrency (default 16 and 64) the setups PUT,
then GET, 4 KiB objects in turns: --rounds rounds of --duration seconds each (at most
--max-ops requests), the order of the setups rotating from round to round, so that a change
in the machine's other load hits every setup alike. It prints the median ops/s, median and p99
latency over the rounds, then the ratios the goals are about. The load generator keeps its
own cost low: SigV4 URLs presigned up front (per endpoint) and replayed by wrk (one process
per endpoint; `apt-get install wrk`), or by one asyncio process with aiohttp when wrk is
missing (`--client aiohttp`), which costs the machine several times more CPU per request. It
shares the machine with the servers, so compare setups run on the same machine in one go, not
absolute numbers.

    .venv/bin/python bench/pg_bench.py [--postgres postgresql://postgres@127.0.0.1/test]
        [--setups sqlite,pg,pg-x2] [--concurrency 16,64] [--duration 3] [--rounds 3]
        [--objects 6000] [--client wrk|aiohttp] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    tmp.mkdir(parents=True, exist_ok=True)
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
        "ops": len(latencies),
        "ops_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
        "errors": errors,
    }


# wrk replays one endpoint's presigned URLs (path and query, one a line) round robin and
# prints its totals as one JSON line.
WRK_SCRIPT = """
local paths, method, body, i = {}, nil, nil, 0
function init(args)
  method = args[1]
  for line in io.lines(args[2]) do paths[#paths + 1] = line end
  if method == "PUT" then body = string.rep("x", 4096) end
end
function request()
  i = i % #paths + 1
  return wrk.format(method, paths[i], nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, '
    .. '"socket_errors": [%d, %d, %d, %d]}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def run_wrk(hosts: list[list[str]], method: str, concurrency: int, duration: float,
            tmp: Path) -> dict[str, Any]:
    """One wrk process per endpoint, all at once, `concurrency` connections shared out."""
    script = tmp / "replay.lua"
    script.write_text(WRK_SCRIPT)
    procs = []
    for n, urls in enumerate(hosts):
        paths = tmp / f"paths-{n}.txt"
        paths.write_text("".join(f"{u.path}?{u.query}\n" for u in map(urlsplit, urls)))
        origin = urlsplit(urls[0])
        procs.append(subprocess.Popen(
            ["wrk", "-t1", f"-c{max(1, concurrency // len(hosts))}", f"-d{duration:g}s",
             "--timeout", "30s", "-s", str(script), f"{origin.scheme}://{origin.netloc}", "--",
             method, str(paths)],
            stdout=subprocess.PIPE, text=True,
        ))
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=duration + 120)
        results.append(json.loads([line for line in out.splitlines() if line.startswith("{")][-1]))
    count = sum(r["requests"] for r in results)
    return {
        "ops": [r["requests"] for r in results],
        "ops_per_s": round(sum(r["requests"] / r["duration_us"] * 1e6 for r in results), 1),
        # the median of the endpoints' medians, weighted by their requests
        "p50_ms": round(sum(r["p50_us"] * r["requests"] for r in results) / count / 1000, 2)
        if count else None,
        "p99_ms": round(max(r["p99_us"] for r in results) / 1000, 2) if count else None,
        "errors": sum(r["errors"] for r in results),
        "socket_errors": [sum(x) for x in zip(*(r["socket_errors"] for r in results), strict=True)],
    }


@dataclass
class Target:
    """A running setup, its bucket and its presigned URLs, per endpoint."""

    kind: str
    puts: list[list[str]]
    gets: list[list[str]]
    tmp: Path
    # Keys PUT so far, per endpoint: each endpoint's URLs are PUT in order, and GETs read
    # only keys written.
    written: list[int] = field(default_factory=list)
    samples: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)


def prepare(kind: str, servers: list[Server], objects: int, tmp: Path) -> Target:
    first = servers[0]
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=first.endpoint, region_name="us-east-1",
                 aws_access_key_id=first.access_key,
                 aws_secret_access_key=first.secret_key).create_bucket(Bucket=bucket)
    keys = [f"main/bench/{i:06d}" for i in range(objects)]
    puts, gets = presign(servers, bucket, keys, "PUT"), presign(servers, bucket, keys, "GET")
    count = len(servers)
    return Target(kind, [puts[n::count] for n in range(count)],
                  [gets[n::count] for n in range(count)], tmp, [0] * count)


def measure(target: Target, method: str, concurrency: int, args: argparse.Namespace) -> None:
    # (wrk may skip an endpoint's first URL as it starts: GETs leave that key out)
    hosts = target.puts if method == "PUT" else [
        urls[1:max(done, 2)] for urls, done in zip(target.gets, target.written, strict=True)
    ]
    if args.client == "wrk":
        result = run_wrk(hosts, method, concurrency, args.duration, target.tmp)
        done = result["ops"]
    else:
        urls = [u for row in zip(*hosts, strict=False) for u in row]
        result = asyncio.run(run(urls, method, concurrency, args.duration, args.max_ops))
        done = [result["ops"] // len(hosts)] * len(hosts)
    if method == "PUT" and not result["errors"]:
        # URLs go out in order, but a slow request may still be open (and is lost) when the
        # run ends: count only the first half as surely written.
        target.written = [max(w, min(n // 2, len(urls)))
                          for w, n, urls in zip(target.written, done, hosts, strict=True)]
    target.samples.setdefault((method, concurrency), []).append(result)


def summary(target: Target, method: str, concurrency: int) -> dict[str, Any]:
    """Medians over the rounds of one measurement."""
    runs = target.samples[(method, concurrency)]
    return {
        "setup": target.kind, "op": method, "concurrency": concurrency, "rounds": len(runs),
        **{name: statistics.median(r[name] for r in runs if r[name] is not None)
           for name in ("ops_per_s", "p50_ms", "p99_ms")},
        "errors": sum(r["errors"] for r in runs),
        "socket_errors": sum(sum(r.get("socket_errors", ())) for r in runs),
    }


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """The goals: PostgreSQL's median latency within 1.5x of SQLite's at concurrency 16, two
    processes >= 1.3x one process's ops/s at concurrency 64."""
    by = {(r["setup"], r["op"], r["concurrency"]): r for r in rows}
    lines = []
    for op in ("PUT", "GET"):
        pg, lite = by.get(("pg", op, 16)), by.get(("sqlite", op, 16))
        if pg and lite:
            lines.append(f"{op} c=16 p50 pg / sqlite = {pg['p50_ms'] / lite['p50_ms']:.2f}"
                         " (goal <= 1.5)")
        two, one = by.get(("pg-x2", op, 64)), by.get(("pg", op, 64))
        if two and one:
            lines.append(f"{op} c=64 ops/s pg-x2 / pg = {two['ops_per_s'] / one['ops_per_s']:.2f}"
                         " (goal >= 1.3)")
    return lines


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start every setup at once, then measure them in turns, round after round, so that a
    change in the machine's other load hits every setup alike; report medians."""
    kinds = args.setups.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        targets = [
            prepare(kind, stack.enter_context(setup(kind, Path(tmp) / kind, args.postgres)),
                    args.objects, Path(tmp) / kind)
            for kind in kinds
        ]
        for concurrency in args.concurrency:
            for method in ("PUT", "GET"):
                for turn in range(args.rounds):
                    for target in targets[turn % len(targets):] + targets[:turn % len(targets)]:
                        measure(target, method, concurrency, args)
                for target in targets:
                    rows.append(summary(target, method, concurrency))
                    row = rows[-1]
                    print(json.dumps(row) if args.json else
                          f"{row['setup']:7} {method:3} c={concurrency:<3} "
                          f"{row['ops_per_s']:>8} ops/s p50 {row['p50_ms']} ms  "
                          f"p99 {row['p99_ms']} ms  errors {row['errors']}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--setups", default="sqlite,pg,pg-x2")
    parser.add_argument("--concurrency", default="16,64",
                        type=lambda s: [int(c) for c in s.split(",")])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-ops", type=int, default=100_000)
    parser.add_argument("--objects", type=int, default=6000)
    parser.add_argument("--client", choices=("wrk", "aiohttp"),
                        default="wrk" if shutil.which("wrk") else "aiohttp",
                        help="the load generator (default: wrk when it is installed)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = bench(args)
    if not args.json:
        for line in ratios(rows):
            print(line)


if __name__ == "__main__":
    main()
