#!/usr/bin/env python3
"""S3 wire benchmark: lakeproxy's `lake serve` against moto's S3 server (and nginx for the big GET).

Scenarios (each run prints one JSON line):

    put_4k / get_4k / head_4k   4 KiB objects at each --concurrency (default 1,16,64), bounded by
                                --duration seconds and --max-ops requests; ops/s, p50/p99 ms
    put_1g / get_1g             one 1 GiB object, single stream, streamed from / to disk; MiB/s
    multipart_256m              256 MiB in 8 MiB parts, 4 parts in flight (presigned UploadPart)
    list_100k                   ListObjectsV2 paging (max-keys 1000) through 100k keys; keys/s,
                                per-page p50/p99 and first / last page latency

The client keeps its own cost low: one asyncio process, aiohttp sessions, and SigV4 URLs
presigned up front with botocore for a fixed set of keys (no signing in the timed loops except
one presign per listing page). Every run samples the RSS (summed over the server's process tree,
found through /proc by parent pid) every 100 ms and reports the max; `client_cpu_s` and
`server_cpu_s` tell whether the load generator or the server was the bottleneck (they share
the machine). MB in `mb_per_s` is MiB (2**20 bytes).

Against one endpoint:

    bench/s3_bench.py --endpoint http://127.0.0.1:8000 --access-key K --secret-key S \
        --bucket REPO --prefix main/bench [--scenarios put_4k,get_4k] [--duration 10] [--json]
        [--server-pid PID]   # sample that process tree's RSS

Driver mode, starting and stopping the targets itself (lake serve --workers 2 on a fresh temp
data dir, moto_server, nginx with sendfile for get_1g) and alternating between them run by run:

    bench/s3_bench.py --compare [--repeat 3] [--duration 10] [--scenarios ...]

then prints a table of medians with the ratios lakeproxy/moto (and lakeproxy/nginx) against the
goals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import itertools
import json
import multiprocessing
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import botocore.session
from botocore.config import Config
from yarl import URL

KiB = 1024
MiB = 1024 * KiB
SMALL = ("put_4k", "get_4k", "head_4k")
ALL_SCENARIOS = (*SMALL, "put_1g", "get_1g", "multipart_256m", "list_100k")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PRESIGN_EXPIRES = 6 * 3600


# --------------------------------------------------------------------------------------------
# Server process trees: RSS and CPU from /proc
# --------------------------------------------------------------------------------------------


def process_tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants (by parent pid, from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages split between the processes that map them)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def client_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _sample_loop(roots: list[int], interval: float, stop: Any, out: Any) -> None:
    """The sampler's own process: RSS (statm, cheap counters) every `interval`, the process
    tree once a second, PSS once at the end (reading it makes the kernel walk the server's
    page tables under its memory map lock, which stalls the server's page faults)."""
    max_total = max_proc = procs = 0
    pids: list[int] = []
    for n in itertools.count():
        last = n > 0 and stop.wait(interval)
        if n % 10 == 0 or last:
            pids = process_tree(roots)
        sizes = [rss_bytes(p) for p in pids]
        max_total = max(max_total, sum(sizes))
        max_proc = max(max_proc, max(sizes, default=0))
        procs = max(procs, sum(1 for size in sizes if size))
        if last:
            break
    out.send((max_total, max_proc, sum(pss_bytes(p) for p in pids), procs))


class Sampler:
    """Samples the summed RSS of the servers' process trees every `interval` seconds.

    The sampling runs in a process of its own: a thread here would take the GIL from the
    client's event loop now and then, and its pauses would show up as server latency."""

    def __init__(self, roots: list[int], interval: float = 0.1) -> None:
        self.roots = roots
        self.interval = interval
        self.max_total = 0
        self.max_proc = 0
        self.max_pss = 0
        self.procs = 0
        self.cpu0 = self.cpu1 = 0.0

    def __enter__(self) -> Sampler:
        if self.roots:
            self.cpu0 = cpu_seconds(process_tree(self.roots))
            ctx = multiprocessing.get_context("fork")
            self._stop = ctx.Event()
            self._results, sender = ctx.Pipe(duplex=False)
            self._process = ctx.Process(
                target=_sample_loop, args=(self.roots, self.interval, self._stop, sender),
                daemon=True,
            )
            self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.roots:
            self._stop.set()
            if self._results.poll(30):
                self.max_total, self.max_proc, self.max_pss, self.procs = self._results.recv()
            self._process.join(10)
            self.cpu1 = cpu_seconds(process_tree(self.roots))

    def fields(self) -> dict[str, Any]:
        if not self.roots:
            return {"server_rss_mb_max": None}
        return {
            "server_rss_mb_max": round(self.max_total / MiB, 1),
            "server_rss_mb_max_proc": round(self.max_proc / MiB, 1),
            "server_pss_mb_max": round(self.max_pss / MiB, 1),
            "server_procs": self.procs,
            "server_cpu_s": round(self.cpu1 - self.cpu0, 2),
        }


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    endpoint: str | None  # S3 endpoint (None: a plain HTTP file server)
    access_key: str = ""
    secret_key: str = ""
    bucket: str = ""
    prefix: str = "main/bench"
    pids: list[int] = field(default_factory=list)  # roots of the server process trees
    file_url: str | None = None  # plain HTTP URL of the big file (nginx)
    state: set[str] = field(default_factory=set)  # what has been loaded already
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"total_max_attempts": 1},
                    connect_timeout=10,
                    read_timeout=900,
                    max_pool_connections=16,
                ),
            )
        return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix.rstrip('/')}/{name}"

    def presign(self, method: str, key: str, **params: Any) -> URL:
        url = self.client.generate_presigned_url(
            method, Params={"Bucket": self.bucket, "Key": key, **params}, ExpiresIn=PRESIGN_EXPIRES
        )
        return URL(url, encoded=True)


def small_keys(target: Target, n: int) -> list[str]:
    return [target.key(f"small/obj-{i:05d}") for i in range(n)]


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        limit_per_host=concurrency,
        ttl_dns_cache=None,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        read_bufsize=4 * MiB,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600),
    )


class Errors:
    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.samples) < 3:
            self.samples.append(what[:300])


async def check(resp: aiohttp.ClientResponse, errors: Errors, ok: tuple[int, ...] = (200,)) -> bool:
    if resp.status in ok:
        return True
    body = b"" if resp.method == "HEAD" else await resp.read()
    errors.add(f"{resp.method} {resp.status} {body[:200]!r}")
    return False


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


async def put_many(
    target: Target, urls: list[URL], body: bytes, concurrency: int, errors: Errors
) -> int:
    """PUT `body` to every presigned URL, `concurrency` in flight; the number that succeeded."""
    it = iter(urls)
    done = 0

    async def worker(s: aiohttp.ClientSession) -> None:
        nonlocal done
        for url in it:
            try:
                async with s.put(url, data=body) as r:
                    if await check(r, errors):
                        done += 1
                    else:
                        await r.read()
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                errors.add(f"PUT {type(e).__name__}: {e}")

    async with session(concurrency) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return done


async def seed_small(target: Target, args: argparse.Namespace) -> None:
    if "small" in target.state:
        return
    errors = Errors()
    keys = small_keys(target, args.keys)
    urls = [target.presign("put_object", k) for k in keys]
    done = await put_many(target, urls, os.urandom(4 * KiB), 16, errors)
    if done != len(keys):
        raise RuntimeError(
            f"{target.name}: seeding {len(keys)} 4 KiB objects: {done} ok, "
            f"{errors.count} errors {errors.samples}"
        )
    target.state.add("small")


async def run_small(
    target: Target, op: str, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    if op != "put_4k":
        await seed_small(target, args)
    method = {"put_4k": "put_object", "get_4k": "get_object", "head_4k": "head_object"}[op]
    http = {"put_4k": "PUT", "get_4k": "GET", "head_4k": "HEAD"}[op]
    urls = [target.presign(method, k) for k in small_keys(target, args.keys)]
    body = os.urandom(4 * KiB) if op == "put_4k" else None
    errors = Errors()
    lat: list[float] = []
    nkeys = len(urls)
    count = 0
    ok = 0
    perf = time.perf_counter

    async with session(concurrency) as s:

        async def one(url: URL) -> bool:
            async with s.request(http, url, data=body) as r:
                if r.status != 200:
                    await check(r, errors)
                    return False
                if http == "GET":
                    await r.read()
                return True

        # Warm-up: open the connections outside the timed window.
        await asyncio.gather(
            *(one(urls[i % nkeys]) for i in range(concurrency)), return_exceptions=True
        )
        errors = Errors()
        max_ops = args.max_ops

        async def worker() -> None:
            nonlocal count, ok
            while count < max_ops and perf() < deadline:
                url = urls[count % nkeys]
                count += 1
                t = perf()
                try:
                    if await one(url):
                        ok += 1
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    errors.add(f"{http} {type(e).__name__}: {e}")
                lat.append(perf() - t)

        with Sampler(target.pids) as sampler:
            cpu0 = client_cpu()
            t0 = perf()
            deadline = t0 + args.duration
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = perf() - t0
            cpu = client_cpu() - cpu0
    return {
        "target": target.name,
        "scenario": op,
        "concurrency": concurrency,
        "ops_per_s": round(ok / elapsed, 1),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        **sampler.fields(),
        "ops": ok,
        "errors": errors.count,
        "error_samples": errors.samples,
        "seconds": round(elapsed, 2),
        "client_cpu_s": round(cpu, 2),
    }


async def file_chunks(path: Path, offset: int, size: int, chunk: int = 1 * MiB):
    # Blocking reads on purpose: 1 MiB from the page cache is cheaper than an executor hop.
    with open(path, "rb") as f:  # noqa: ASYNC230
        f.seek(offset)
        remaining = size
        while remaining:
            data = f.read(min(chunk, remaining))
            if not data:
                raise RuntimeError(f"{path} is shorter than {offset + size} bytes")
            remaining -= len(data)
            yield data


def big_key(target: Target) -> str:
    return target.key("big/object-1g")


async def put_big(target: Target, path: Path, size: int, errors: Errors) -> float:
    url = target.presign("put_object", big_key(target))
    async with session(1) as s:
        t0 = time.perf_counter()
        try:
            async with s.put(
                url,
                data=file_chunks(path, 0, size),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            ) as r:
                await check(r, errors)
                await r.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            errors.add(f"PUT {type(e).__name__}: {e}")
        return time.perf_counter() - t0


def head_size(target: Target, key: str, errors: Errors) -> int | None:
    try:
        return target.client.head_object(Bucket=target.bucket, Key=key)["ContentLength"]
    except Exception as e:
        errors.add(f"HEAD after upload: {type(e).__name__}: {e}")
        return None


async def run_put_big(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    errors = Errors()
    size = args.big_mib * MiB
    with Sampler(target.pids) as sampler:
        cpu0 = client_cpu()
        elapsed = await put_big(target, args.big_file, size, errors)
        cpu = client_cpu() - cpu0
    stored = head_size(target, big_key(target), errors)
    if stored is not None and stored != size:
        errors.add(f"stored size {stored} != {size}")
    if not errors.count:
        target.state.add("big")
    return {
        "target": target.name,
        "scenario": "put_1g",
        "concurrency": 1,
        "mb_per_s": round(size / MiB / elapsed, 1) if not errors.count else None,
        "p50_ms": round(elapsed * 1000, 1),
        "p99_ms": round(elapsed * 1000, 1),
        **sampler.fields(),
        "bytes": size,
        "errors": errors.count,
        "error_samples": errors.samples,
        "seconds": round(elapsed, 2),
        "client_cpu_s": round(cpu, 2),
    }


async def run_get_big(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    size = args.big_mib * MiB
    errors = Errors()
    if target.file_url is not None:
        url = URL(target.file_url)
    else:
        if "big" not in target.state:
            await put_big(target, args.big_file, size, errors)
            if errors.count:
                raise RuntimeError(f"{target.name}: seeding the big object: {errors.samples}")
            target.state.add("big")
        url = target.presign("get_object", big_key(target))
    got = 0
    async with session(1) as s:
        with Sampler(target.pids) as sampler:
            cpu0 = client_cpu()
            t0 = time.perf_counter()
            try:
                async with s.get(url) as r:
                    if await check(r, errors):
                        while chunk := await r.content.readany():
                            got += len(chunk)  # discarded
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                errors.add(f"GET {type(e).__name__}: {e}")
            elapsed = time.perf_counter() - t0
            cpu = client_cpu() - cpu0
    if got != size and not errors.count:
        errors.add(f"GET returned {got} bytes, expected {size}")
    return {
        "target": target.name,
        "scenario": "get_1g",
        "concurrency": 1,
        "mb_per_s": round(got / MiB / elapsed, 1) if not errors.count else None,
        "p50_ms": round(elapsed * 1000, 1),
        "p99_ms": round(elapsed * 1000, 1),
        **sampler.fields(),
        "bytes": got,
        "errors": errors.count,
        "error_samples": errors.samples,
        "seconds": round(elapsed, 2),
        "client_cpu_s": round(cpu, 2),
    }


async def run_multipart(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    size, part = args.multipart_mib * MiB, args.part_mib * MiB
    key = target.key("big/multipart")
    errors = Errors()
    lat: list[float] = []
    nparts = (size + part - 1) // part
    etags: dict[int, str] = {}
    fd = os.open(args.big_file, os.O_RDONLY)
    try:
        async with session(args.part_concurrency) as s:
            with Sampler(target.pids) as sampler:
                cpu0 = client_cpu()
                t0 = time.perf_counter()
                upload_id = target.client.create_multipart_upload(Bucket=target.bucket, Key=key)[
                    "UploadId"
                ]
                urls = [
                    target.presign("upload_part", key, UploadId=upload_id, PartNumber=n)
                    for n in range(1, nparts + 1)
                ]
                queue = iter(range(1, nparts + 1))

                async def worker() -> None:
                    for n in queue:
                        offset = (n - 1) * part
                        data = os.pread(fd, min(part, size - offset), offset)
                        t = time.perf_counter()
                        try:
                            async with s.put(urls[n - 1], data=data) as r:
                                if await check(r, errors):
                                    etags[n] = r.headers.get("ETag", "")
                                await r.read()
                        except (TimeoutError, aiohttp.ClientError, OSError) as e:
                            errors.add(f"UploadPart {type(e).__name__}: {e}")
                        lat.append(time.perf_counter() - t)

                await asyncio.gather(*(worker() for _ in range(args.part_concurrency)))
                t_complete = time.perf_counter()
                if len(etags) == nparts:
                    try:
                        target.client.complete_multipart_upload(
                            Bucket=target.bucket,
                            Key=key,
                            UploadId=upload_id,
                            MultipartUpload={
                                "Parts": [
                                    {"ETag": etags[n], "PartNumber": n}
                                    for n in range(1, nparts + 1)
                                ]
                            },
                        )
                    except Exception as e:
                        errors.add(f"CompleteMultipartUpload {type(e).__name__}: {e}")
                else:
                    with contextlib.suppress(Exception):
                        target.client.abort_multipart_upload(
                            Bucket=target.bucket, Key=key, UploadId=upload_id
                        )
                elapsed = time.perf_counter() - t0
                cpu = client_cpu() - cpu0
    finally:
        os.close(fd)
    if not errors.count:
        stored = head_size(target, key, errors)
        if stored is not None and stored != size:
            errors.add(f"stored size {stored} != {size}")
    return {
        "target": target.name,
        "scenario": "multipart_256m",
        "concurrency": args.part_concurrency,
        "mb_per_s": round(size / MiB / elapsed, 1) if not errors.count else None,
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        **sampler.fields(),
        "bytes": size,
        "parts": nparts,
        "complete_ms": round((t0 + elapsed - t_complete) * 1000, 1),
        "errors": errors.count,
        "error_samples": errors.samples,
        "seconds": round(elapsed, 2),
        "client_cpu_s": round(cpu, 2),
    }


def list_prefix(target: Target, n: int) -> str:
    return target.key(f"list{n}/")


async def load_list(target: Target, args: argparse.Namespace) -> dict[str, Any] | None:
    if "list" in target.state:
        return None
    n = args.list_keys
    prefix = list_prefix(target, n)
    t = time.perf_counter()
    urls = [target.presign("put_object", f"{prefix}k{i:07d}") for i in range(n)]
    presign_s = time.perf_counter() - t
    errors = Errors()
    with Sampler(target.pids) as sampler:
        cpu0 = client_cpu()
        t0 = time.perf_counter()
        done = await put_many(target, urls, b"x", 64, errors)
        elapsed = time.perf_counter() - t0
        cpu = client_cpu() - cpu0
    if done != n:
        raise RuntimeError(
            f"{target.name}: loading {n} keys: {done} ok, {errors.count} errors {errors.samples}"
        )
    target.state.add("list")
    return {
        "target": target.name,
        "scenario": "list_load",
        "concurrency": 64,
        "ops_per_s": round(done / elapsed, 1),
        "p50_ms": None,
        "p99_ms": None,
        **sampler.fields(),
        "ops": done,
        "errors": errors.count,
        "error_samples": errors.samples,
        "seconds": round(elapsed, 2),
        "presign_s": round(presign_s, 2),
        "client_cpu_s": round(cpu, 2),
    }


TOKEN_RE = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")
TRUNCATED_RE = re.compile(rb"<IsTruncated>true</IsTruncated>")


async def run_list(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    n = args.list_keys
    prefix = list_prefix(target, n)
    errors = Errors()
    lat: list[float] = []
    keys = 0
    token: str | None = None
    client = target.client
    async with session(1) as s:
        # Warm-up: one small listing, so the first timed page does not pay for the connection.
        url = client.generate_presigned_url(
            "list_objects_v2",
            Params={"Bucket": target.bucket, "Prefix": prefix, "MaxKeys": 1},
            ExpiresIn=PRESIGN_EXPIRES,
        )
        async with s.get(URL(url, encoded=True)) as r:
            await r.read()
        with Sampler(target.pids) as sampler:
            cpu0 = client_cpu()
            t0 = time.perf_counter()
            while True:
                params: dict[str, Any] = {
                    "Bucket": target.bucket,
                    "Prefix": prefix,
                    "MaxKeys": 1000,
                }
                if token is not None:
                    params["ContinuationToken"] = token
                url = URL(
                    client.generate_presigned_url(
                        "list_objects_v2", Params=params, ExpiresIn=PRESIGN_EXPIRES
                    ),
                    encoded=True,
                )
                t = time.perf_counter()
                try:
                    async with s.get(url) as r:
                        body = await r.read()
                        status = r.status
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    errors.add(f"LIST {type(e).__name__}: {e}")
                    break
                lat.append(time.perf_counter() - t)
                if status != 200:
                    errors.add(f"LIST {status} {body[:200]!r}")
                    break
                keys += body.count(b"<Key>")
                m = TOKEN_RE.search(body)
                if not TRUNCATED_RE.search(body) or m is None:
                    break
                token = html.unescape(m.group(1).decode())
                if len(lat) > n // 1000 + 10:
                    errors.add("listing does not end")
                    break
            elapsed = time.perf_counter() - t0
            cpu = client_cpu() - cpu0
    if keys != n and not errors.count:
        errors.add(f"listed {keys} keys, expected {n}")
    return {
        "target": target.name,
        "scenario": "list_100k",
        "concurrency": 1,
        "keys_per_s": round(keys / elapsed, 1) if not errors.count else None,
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        **sampler.fields(),
        "pages": len(lat),
        "keys": keys,
        "first_page_ms": round(lat[0] * 1000, 2) if lat else None,
        "last_page_ms": round(lat[-1] * 1000, 2) if lat else None,
        "errors": errors.count,
        "error_samples": errors.samples,
        "seconds": round(elapsed, 2),
        "client_cpu_s": round(cpu, 2),
    }


async def run_scenario(
    target: Target, scenario: str, concurrency: int, args: argparse.Namespace, emit
) -> dict[str, Any]:
    if scenario in SMALL:
        return await run_small(target, scenario, concurrency, args)
    if scenario == "put_1g":
        return await run_put_big(target, args)
    if scenario == "get_1g":
        return await run_get_big(target, args)
    if scenario == "multipart_256m":
        return await run_multipart(target, args)
    if scenario == "list_100k":
        loaded = await load_list(target, args)
        if loaded is not None:
            emit(loaded)
        return await run_list(target, args)
    raise ValueError(scenario)


def runs_of(scenarios: list[str], concurrencies: list[int]) -> list[tuple[str, int]]:
    out = []
    for sc in scenarios:
        out += [(sc, c) for c in concurrencies] if sc in SMALL else [(sc, 1)]
    return out


async def bench(
    targets: list[Target], args: argparse.Namespace, file_server: Target | None = None
) -> list[dict[str, Any]]:
    """Every (scenario, concurrency) on every target, targets alternating, --repeat times."""
    results: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        if not row.get("error_samples"):
            row.pop("error_samples", None)
        print(json.dumps(row), flush=True)

    for target in targets + ([file_server] if file_server else []):
        if target.pids:  # the servers' memory before any load
            with Sampler(target.pids) as sampler:
                await asyncio.sleep(0.3)
            emit({"target": target.name, "scenario": "idle", "concurrency": 0, **sampler.fields()})

    for r in range(args.repeat):
        order = targets if r % 2 == 0 else targets[::-1]
        for scenario, conc in runs_of(args.scenarios, args.concurrency):
            for target in order + ([file_server] if file_server and scenario == "get_1g" else []):
                try:
                    row = await run_scenario(target, scenario, conc, args, emit)
                except Exception as e:
                    row = {
                        "target": target.name,
                        "scenario": scenario,
                        "concurrency": conc,
                        "errors": 1,
                        "error_samples": [f"{type(e).__name__}: {e}"],
                    }
                row["repeat"] = r
                emit(row)
                results.append(row)
    return results


# --------------------------------------------------------------------------------------------
# Driver mode: start, check and stop the servers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise SystemExit(f"{name} not found")
    return found


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 45) -> None:
        """SIGTERM to the server's process group (its own session), SIGKILL if it lingers."""
        pgid = self.proc.pid  # started with start_new_session: group leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(
                f"# {self.name} did not stop within {timeout}s of SIGTERM; SIGKILL", file=sys.stderr
            )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)  # also any worker left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def start(
    name: str,
    cmd: list[str],
    log: Path,
    stack: contextlib.ExitStack,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Server:
    out = open(log, "wb")  # noqa: SIM115 - closed by the stack
    stack.callback(out.close)
    proc = subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    server = Server(name, proc, log)
    stack.callback(server.stop)
    return server


def wait_http(server: Server, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.tail()}"
            )
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{server.name} not answering at {url} after {timeout}s:\n{server.tail()}")


def start_lake(
    work: Path, stack: contextlib.ExitStack, args: argparse.Namespace
) -> tuple[Target, Server]:
    port = free_port()
    ak = "AKLPBENCH" + secrets.token_hex(6).upper()
    sk = secrets.token_urlsafe(30)
    env = {**os.environ, "LAKE_ROOT_ACCESS_KEY": ak, "LAKE_ROOT_SECRET_KEY": sk}
    data = work / "lake-data"
    server = start(
        "lakeproxy",
        [
            args.lake_bin,
            "serve",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.lake_workers),
        ],
        work / "lake.log",
        stack,
        env=env,
        cwd=work,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(server, endpoint + "/")
    # Wait for every worker process to be up (spawned workers import the app first).
    deadline = time.monotonic() + 30
    while len(process_tree([server.proc.pid])) < args.lake_workers and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    target = Target("lakeproxy", endpoint, ak, sk, args.bucket, args.prefix, pids=[server.proc.pid])
    target.client.create_bucket(Bucket=args.bucket)
    return target, server


def start_moto(
    work: Path, stack: contextlib.ExitStack, args: argparse.Namespace
) -> tuple[Target, Server]:
    port = free_port()
    server = start(
        "moto",
        [args.moto_bin, "-H", "127.0.0.1", "-p", str(port)],
        work / "moto.log",
        stack,
        cwd=work,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_http(server, endpoint + "/")
    target = Target(
        "moto", endpoint, "testing", "testing", args.bucket, args.prefix, pids=[server.proc.pid]
    )
    target.client.create_bucket(Bucket=args.bucket)
    return target, server


def start_nginx(
    work: Path, stack: contextlib.ExitStack, args: argparse.Namespace
) -> tuple[Target, Server]:
    port = free_port()
    root = work / "nginx"
    root.mkdir()
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / d).mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the temp dir
    conf = root / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {args.big_file.parent};
        location / {{ }}
    }}
}}
""")
    server = start(
        "nginx",
        [args.nginx_bin, "-p", f"{root}/", "-c", str(conf), "-e", str(root / "error.log")],
        work / "nginx.log",
        stack,
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}/"
    wait_http(server, base)
    return Target("nginx", None, pids=[server.proc.pid], file_url=base + args.big_file.name), server


def make_big_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
        f.write(os.urandom(size % (16 * MiB)))
    tmp.rename(path)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

METRIC = {
    "put_4k": "ops_per_s",
    "get_4k": "ops_per_s",
    "head_4k": "ops_per_s",
    "put_1g": "mb_per_s",
    "get_1g": "mb_per_s",
    "multipart_256m": "mb_per_s",
    "list_100k": "keys_per_s",
}
# (scenario, concurrency) -> (reference, minimum ratio)
GOALS = {
    ("get_4k", 16): ("moto", 5),
    ("get_4k", 64): ("moto", 5),
    ("head_4k", 16): ("moto", 5),
    ("head_4k", 64): ("moto", 5),
    ("put_4k", 16): ("moto", 3),
    ("get_1g", 1): ("nginx", 0.6),
    ("put_1g", 1): ("moto", 3),
    ("multipart_256m", None): ("lakeproxy put_1g", 0.7),
    ("list_100k", 1): ("moto", 10),
}
RSS_GOAL_MB = 256


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}" if abs(v) < 100 or digits == 0 else f"{v:,.0f}"


def summarise(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    by: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["scenario"], r["concurrency"], r["target"]), []).append(r)
    lake_put_1g = median([r.get("mb_per_s") for r in by.get(("put_1g", 1, "lakeproxy"), [])])
    lake_rss_max = 0.0
    for scenario, conc in runs_of(args.scenarios, args.concurrency):
        if scenario == "multipart_256m":
            conc = args.part_concurrency
        metric = METRIC[scenario]
        row: dict[str, Any] = {"scenario": scenario, "concurrency": conc, "metric": metric}
        for t in ("lakeproxy", "moto", "nginx"):
            runs = by.get((scenario, conc, t), [])
            if not runs:
                continue
            row[t] = median([r.get(metric) for r in runs])
            row[f"{t}_p50_ms"] = median([r.get("p50_ms") for r in runs])
            row[f"{t}_p99_ms"] = median([r.get("p99_ms") for r in runs])
            rss = [r.get("server_rss_mb_max") for r in runs if r.get("server_rss_mb_max")]
            row[f"{t}_rss_mb_max"] = max(rss) if rss else None
            row[f"{t}_errors"] = sum(r.get("errors", 0) for r in runs)
            if scenario == "list_100k":
                row[f"{t}_first_page_ms"] = median([r.get("first_page_ms") for r in runs])
                row[f"{t}_last_page_ms"] = median([r.get("last_page_ms") for r in runs])
            if t == "lakeproxy" and rss:
                lake_rss_max = max(lake_rss_max, max(rss))
        lake, moto = row.get("lakeproxy"), row.get("moto")
        row["lakeproxy/moto"] = round(lake / moto, 2) if lake and moto else None
        if scenario == "get_1g":
            nginx = row.get("nginx")
            row["lakeproxy/nginx"] = round(lake / nginx, 2) if lake and nginx else None
        goal = GOALS.get((scenario, None if scenario == "multipart_256m" else conc))
        if goal:
            ref, minimum = goal
            if ref == "moto":
                ratio = row["lakeproxy/moto"]
            elif ref == "nginx":
                ratio = row.get("lakeproxy/nginx")
            else:
                ratio = round(lake / lake_put_1g, 2) if lake and lake_put_1g else None
                row["lakeproxy/own_put_1g"] = ratio
            row["goal"] = f">= {minimum}x {ref}"
            row["met"] = None if ratio is None else ratio >= minimum
        rows.append(row)
    # RSS of the list_load runs counts too.
    lake_runs = [r for r in results if r["target"] == "lakeproxy"]
    for r in lake_runs:
        if r.get("server_rss_mb_max"):
            lake_rss_max = max(lake_rss_max, r["server_rss_mb_max"])
    return {
        "rows": rows,
        "lakeproxy_rss_mb_max": lake_rss_max,
        "lakeproxy_rss_mb_max_proc": max(
            (r.get("server_rss_mb_max_proc") or 0 for r in lake_runs), default=None
        ),
        "lakeproxy_pss_mb_max": max(
            (r.get("server_pss_mb_max") or 0 for r in lake_runs), default=None
        ),
        "rss_goal_met": lake_rss_max < RSS_GOAL_MB if lake_rss_max else None,
    }


def print_table(summary: dict[str, Any]) -> None:
    head = [
        "scenario",
        "conc",
        "metric",
        "lakeproxy",
        "moto",
        "nginx",
        "ratio",
        "goal",
        "met",
        "lake p50/p99 ms",
        "moto p50/p99 ms",
        "lake RSS",
        "moto RSS",
        "errors l/m",
    ]
    lines = [head]
    for r in summary["rows"]:
        ratio = (
            r.get("lakeproxy/own_put_1g")
            if r["scenario"] == "multipart_256m"
            else (
                r.get("lakeproxy/nginx") if r["scenario"] == "get_1g" else r.get("lakeproxy/moto")
            )
        )
        if r["scenario"] == "get_1g" and r.get("lakeproxy/moto"):
            ratio_s = f"{fmt(ratio, 2)} (moto {fmt(r['lakeproxy/moto'], 2)})"
        else:
            ratio_s = fmt(ratio, 2)
        met = {True: "yes", False: "NO", None: "?"}[r.get("met")] if "goal" in r else ""
        lines.append(
            [
                r["scenario"],
                str(r["concurrency"]),
                r["metric"],
                fmt(r.get("lakeproxy")),
                fmt(r.get("moto")),
                fmt(r.get("nginx")),
                ratio_s,
                r.get("goal", ""),
                met,
                f"{fmt(r.get('lakeproxy_p50_ms'), 2)}/{fmt(r.get('lakeproxy_p99_ms'), 2)}",
                f"{fmt(r.get('moto_p50_ms'), 2)}/{fmt(r.get('moto_p99_ms'), 2)}",
                fmt(r.get("lakeproxy_rss_mb_max")),
                fmt(r.get("moto_rss_mb_max")),
                f"{r.get('lakeproxy_errors', '-')}/{r.get('moto_errors', '-')}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for i, line in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in summary["rows"]:
        if r["scenario"] == "list_100k":
            for t in ("lakeproxy", "moto"):
                if r.get(f"{t}_first_page_ms") is not None:
                    print(
                        f"list_100k {t}: first page {fmt(r[f'{t}_first_page_ms'], 2)} ms, "
                        f"last page {fmt(r[f'{t}_last_page_ms'], 2)} ms, per-page p50/p99 "
                        f"{fmt(r.get(f'{t}_p50_ms'), 2)}/{fmt(r.get(f'{t}_p99_ms'), 2)} ms"
                    )
    rss = summary["lakeproxy_rss_mb_max"]
    met = {True: "yes", False: "NO", None: "?"}[summary["rss_goal_met"]]
    print(
        f"lakeproxy RSS max over all scenarios (parent + workers + helpers, summed): "
        f"{fmt(rss)} MiB (goal < {RSS_GOAL_MB} MiB: {met}); largest single process "
        f"{fmt(summary['lakeproxy_rss_mb_max_proc'])} MiB; PSS summed "
        f"{fmt(summary['lakeproxy_pss_mb_max'])} MiB"
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--endpoint", help="S3 endpoint URL (not with --compare)")
    p.add_argument("--access-key", default="")
    p.add_argument("--secret-key", default="")
    p.add_argument("--bucket", default="bench", help="bucket (lakeproxy: repository)")
    p.add_argument("--prefix", default="main/bench", help="key prefix (lakeproxy: REF/path)")
    p.add_argument("--target-name", default="endpoint", help="name of --endpoint in the output")
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="sample the RSS of this process tree (repeatable)",
    )
    p.add_argument("--create-bucket", action="store_true", help="CreateBucket first")
    p.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated, from {','.join(ALL_SCENARIOS)}",
    )
    p.add_argument("--concurrency", default="1,16,64", help="for the 4 KiB scenarios")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per 4 KiB run")
    p.add_argument("--max-ops", type=int, default=500_000, help="requests per 4 KiB run")
    p.add_argument("--keys", type=int, default=256, help="distinct 4 KiB keys")
    p.add_argument("--big-mib", type=int, default=1024, help="size of the single-stream object")
    p.add_argument(
        "--big-file",
        type=Path,
        help="file of --big-mib MiB to upload (default: written once to a temp dir under /tmp)",
    )
    p.add_argument("--multipart-mib", type=int, default=256)
    p.add_argument("--part-mib", type=int, default=8)
    p.add_argument("--part-concurrency", type=int, default=4)
    p.add_argument("--list-keys", type=int, default=100_000)
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per scenario and target (default 3 with --compare, else 1)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON lines only (the final summary as one JSON object, no table)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="start lake serve, moto_server and nginx, and compare them",
    )
    p.add_argument("--lake-workers", type=int, default=2)
    p.add_argument("--lake-bin", default=None)
    p.add_argument("--moto-bin", default=None)
    p.add_argument("--nginx-bin", default=None)
    p.add_argument("--keep-logs", type=Path, help="copy the servers' logs to this directory")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.repeat is None:
        args.repeat = 3 if args.compare else 1
    if not args.compare and not args.endpoint:
        p.error("--endpoint (or --compare) is required")
    if args.multipart_mib > args.big_mib:
        p.error("--multipart-mib must not exceed --big-mib (parts are read from the big file)")
    return args


def raise_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_on_sigterm()
    needs_file = bool({"put_1g", "get_1g", "multipart_256m"} & set(args.scenarios))
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="s3bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        if needs_file and args.big_file is None:
            args.big_file = work / f"object-{args.big_mib}MiB.bin"
        if needs_file:
            make_big_file(args.big_file, args.big_mib * MiB)
        servers: list[Server] = []
        try:
            if args.compare:
                args.lake_bin = args.lake_bin or find_bin("lake")
                args.moto_bin = args.moto_bin or find_bin("moto_server")
                lake, s1 = start_lake(work, stack, args)
                moto, s2 = start_moto(work, stack, args)
                servers += [s1, s2]
                nginx = None
                if "get_1g" in args.scenarios:
                    args.nginx_bin = args.nginx_bin or find_bin("nginx")
                    nginx, s3 = start_nginx(work, stack, args)
                    servers.append(s3)
                print(
                    f"# lakeproxy {lake.endpoint} (pid {lake.pids[0]}), moto {moto.endpoint} "
                    f"(pid {moto.pids[0]})" + (f", nginx {nginx.file_url}" if nginx else ""),
                    file=sys.stderr,
                    flush=True,
                )
                results = asyncio.run(bench([lake, moto], args, nginx))
            else:
                target = Target(
                    args.target_name,
                    args.endpoint,
                    args.access_key,
                    args.secret_key,
                    args.bucket,
                    args.prefix,
                    pids=args.server_pid,
                )
                if args.create_bucket:
                    with contextlib.suppress(
                        target.client.exceptions.BucketAlreadyOwnedByYou,
                        target.client.exceptions.BucketAlreadyExists,
                    ):
                        target.client.create_bucket(Bucket=args.bucket)
                results = asyncio.run(bench([target], args))
        finally:
            for s in servers:
                if s.proc.poll() is not None:
                    print(
                        f"# {s.name} exited early with {s.proc.returncode}:\n{s.tail()}",
                        file=sys.stderr,
                    )
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for s in servers:
                    with contextlib.suppress(OSError):
                        shutil.copy(s.log, args.keep_logs / s.log.name)
        errors = sum(r.get("errors", 0) for r in results)
        if errors:
            for s in servers:
                print(f"# --- last lines of the {s.name} log ---\n{s.tail()}", file=sys.stderr)
    summary = summarise(results, args)
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        print()
        print_table(summary)
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
