"""What operators need beside S3: health checks, Prometheus metrics and the access log.

- `GET /healthz`: live; 200 as long as the event loop answers.
- `GET /readyz`: ready; a cheap real probe of the metadata store and of the block store, each
  bounded by `ready_timeout`; 503 with a JSON reason when one fails.
- `GET /metrics`: Prometheus text format. None of the three needs S3 credentials; set
  `metrics_token` to make /metrics want `Authorization: Bearer TOKEN`, and keep it off the
  public side of the load balancer either way.

Requests are measured once they are fully sent: `AccessObserver` is the server's aiohttp access
logger, so the latency of a GetObject includes sending its bytes. Labels are bounded: the S3
operation (the route table's names) and status, or the route of a non-S3 request, never a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from lakeproxy.config import Settings
from lakeproxy.gateway.app import OPERATION, REQUEST_ID, dispatch
from lakeproxy.gateway.context import Services
from lakeproxy.graveler import Graveler
from lakeproxy.logs import ACCESS_LOGGER, bind_request_id, unbind_request_id

log = logging.getLogger("lakeproxy.ops")
access_log = logging.getLogger(ACCESS_LOGGER)
# The `_created` series double the output and no dashboard reads them.
disable_created_metrics()

OPS_PATHS = ("/healthz", "/readyz", "/metrics")
# Latency buckets from 1 ms (a cached HEAD) to a minute (a large upload or a big merge).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The metric families of one server process, in their own registry."""

    def __init__(self, graveler: Graveler | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.s3_requests = Counter(
            "lakeproxy_s3_requests", "S3 requests by operation and HTTP status.",
            ["operation", "status"], registry=reg)
        self.s3_latency = Histogram(
            "lakeproxy_s3_request_duration_seconds",
            "Time from a request's arrival to the last byte of its response.",
            ["operation", "status"], buckets=LATENCY_BUCKETS, registry=reg)
        self.s3_received = Counter(
            "lakeproxy_s3_received_bytes", "Request body bytes received, by S3 operation.",
            ["operation"], registry=reg)
        self.s3_sent = Counter(
            "lakeproxy_s3_sent_bytes", "Response body bytes sent, by S3 operation.",
            ["operation"], registry=reg)
        self.http_requests = Counter(
            "lakeproxy_http_requests",
            "Requests beside S3 (REST API, health, metrics) by route, method and status.",
            ["route", "method", "status"], registry=reg)
        self.http_latency = Histogram(
            "lakeproxy_http_request_duration_seconds",
            "Latency of requests beside S3, by route and method.",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=reg)
        self.in_flight = Gauge(
            "lakeproxy_requests_in_flight", "Requests being handled right now.", registry=reg)
        self.core_latency = Histogram(
            "lakeproxy_core_operation_duration_seconds",
            "Duration of commits and merges in the versioning core, by outcome.",
            ["operation", "outcome"], buckets=LATENCY_BUCKETS, registry=reg)
        if graveler is not None:
            reg.register(NodeCacheCollector(graveler))
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self._s3_children: dict[tuple[str, int], tuple[Any, Any, Any, Any]] = {}

    def observe_s3(self, operation: str, status: int, seconds: float,
                   received: int, sent: int) -> None:
        children = self._s3_children.get((operation, status))
        if children is None:
            labels = (operation, str(status))
            children = self._s3_children[(operation, status)] = (
                self.s3_requests.labels(*labels), self.s3_latency.labels(*labels),
                self.s3_received.labels(operation), self.s3_sent.labels(operation))
        requests, latency, received_c, sent_c = children
        requests.inc()
        latency.observe(seconds)
        if received:
            received_c.inc(received)
        if sent:
            sent_c.inc(sent)

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_latency.labels(route, method).observe(seconds)

    def observe_core(self, operation: str, seconds: float, outcome: str) -> None:
        self.core_latency.labels(operation, outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class NodeCacheCollector(Collector):
    """Hits, misses and size of the core's cache of decoded ranges, read at scrape time."""

    def __init__(self, graveler: Graveler) -> None:
        self.graveler = graveler

    def collect(self) -> Iterator[Any]:
        cache = self.graveler.node_cache
        hits, misses = cache.hits, cache.misses
        yield CounterMetricFamily("lakeproxy_node_cache_hits",
                                  "Range lookups answered from memory.", value=hits)
        yield CounterMetricFamily("lakeproxy_node_cache_misses",
                                  "Range lookups that read the metadata store.", value=misses)
        yield GaugeMetricFamily(
            "lakeproxy_node_cache_hit_ratio",
            "hits / (hits + misses) since the process started (1 before any lookup).",
            value=hits / (hits + misses) if hits + misses else 1.0)
        yield GaugeMetricFamily("lakeproxy_node_cache_bytes",
                                "Encoded bytes of the ranges held in the cache.",
                                value=cache.decoded_held_bytes)
        yield GaugeMetricFamily("lakeproxy_node_cache_max_bytes",
                                "The cache's size limit.", value=cache.max_bytes)
        yield GaugeMetricFamily(
            "lakeproxy_node_cache_encoded_bytes",
            "Bytes of encoded ranges held behind the decoded ones.", value=cache.encoded_held_bytes)
        yield GaugeMetricFamily(
            "lakeproxy_node_cache_encoded_max_bytes",
            "The encoded tier's size limit.", value=cache.encoded_max_bytes)


# Readiness


Probe = Callable[[], Awaitable[None]]


class Readiness:
    """Cheap real probes of the stores a request needs, each bounded by `timeout` seconds."""

    def __init__(self, graveler: Graveler, timeout: float) -> None:
        self.graveler = graveler
        self.timeout = timeout
        self.probes: dict[str, Probe] = {"metadata": self.probe_metadata,
                                         "blocks": self.probe_blocks}

    async def check(self) -> dict[str, str]:
        """"ok" or the reason of its failure, for every probe (run concurrently)."""
        names = list(self.probes)
        results = await asyncio.gather(*(self._run(self.probes[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def _run(self, probe: Probe) -> str:
        try:
            await asyncio.wait_for(probe(), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            return f"{type(exc).__name__}: {reason}"[:300]
        return "ok"

    async def probe_metadata(self) -> None:
        """One point read of the repository list (a round trip to the database)."""
        await self.graveler.store.get("repos", b"\x00readyz")

    async def probe_blocks(self) -> None:
        """S3: list the default namespace (one request). Local: create and remove a file."""
        blocks = self.graveler.blocks
        namespace = getattr(blocks, "default_s3_namespace", None)
        if namespace:
            store = await blocks.get(namespace)
            async with contextlib.aclosing(store.list("readyz")) as listing:
                async for _ in listing:
                    break
            return
        root = getattr(blocks, "local_root", None)
        if root is not None:
            await asyncio.to_thread(_touch, Path(root))


def _touch(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".readyz-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


# The routes and their wiring


@dataclass(slots=True)
class Ops:
    metrics: Metrics
    readiness: Readiness
    metrics_token: str | None
    access_log: bool
    active: int = 0  # requests inside their handler (reading a body, computing a response)
    stopping: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set when stopping and active == 0


OPS = web.AppKey("lakeproxy.ops", Ops)
# The id of a request the S3 gateway does not number (REST API, health, metrics).
OWN_REQUEST_ID = web.RequestKey("lakeproxy.ops.request_id", str)


def request_id_of(request: BaseRequest) -> str | None:
    found = request.get(REQUEST_ID) or request.get(OWN_REQUEST_ID)
    return None if found is None else str(found)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ops = request.config_dict[OPS]
    if ops.stopping:
        return web.json_response({"status": "stopping", "checks": {}}, status=503)
    checks = await ops.readiness.check()
    ready = all(result == "ok" for result in checks.values())
    if not ready:
        log.warning("not ready: %s", ", ".join(f"{k}: {v}" for k, v in checks.items()
                                               if v != "ok"))
    return web.json_response({"status": "ready" if ready else "unavailable", "checks": checks},
                             status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    ops = request.config_dict[OPS]
    if ops.metrics_token is not None:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {ops.metrics_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"message": "metrics need a bearer token"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    response = web.Response(body=ops.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@web.middleware
async def track_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Counts requests in flight and binds the request id to the log lines they write."""
    if request.match_info.handler is not dispatch:
        request[OWN_REQUEST_ID] = uuid.uuid4().hex[:20].upper()
    token = bind_request_id(lambda: request_id_of(request))
    ops = request.config_dict[OPS]
    ops.active += 1
    ops.metrics.in_flight.inc()
    try:
        return await handler(request)  # type: ignore[no-any-return]
    finally:
        ops.active -= 1
        ops.metrics.in_flight.dec()
        unbind_request_id(token)
        if ops.stopping and not ops.active:
            ops.idle.set()


async def drain(app: web.Application, grace: float) -> int:
    """Wait (at most `grace` seconds) until no request is inside its handler.

    Call it after the listening sockets are closed and before `AppRunner.cleanup`: aiohttp's
    own shutdown stops reading from connections at once, which would stall an upload whose
    body is still arriving. Returns the number of requests still active at the end.
    """
    ops = app.get(OPS)
    if ops is None:
        return 0
    ops.stopping = True
    if ops.active:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await ops.idle.wait()
    if ops.active:
        log.warning("%d requests still running after %gs: cutting them off", ops.active, grace)
    return ops.active


def mount_ops(app: web.Application, services: Services, settings: Settings | None = None) -> None:
    """Add /healthz, /readyz and /metrics, the request tracking, and the core's timings."""
    settings = settings or Settings()
    graveler = services.graveler
    ops = Ops(Metrics(graveler), Readiness(graveler, settings.ready_timeout),
              settings.metrics_token, settings.access_log)
    app[OPS] = ops
    app.router.add_get("/healthz", healthz, name="healthz", allow_head=True)
    app.router.add_get("/readyz", readyz, name="readyz", allow_head=True)
    app.router.add_get("/metrics", metrics, name="metrics")
    app.middlewares.insert(0, track_requests)
    graveler.observers.append(ops.metrics.observe_core)

    async def forget(_: web.Application) -> None:
        with contextlib.suppress(ValueError):
            graveler.observers.remove(ops.metrics.observe_core)

    app.on_cleanup.append(forget)


class AccessObserver(AbstractAccessLogger):
    """The server's access logger: measures every request once its response is sent, and
    writes one access log line (without the query string) when the access log is on."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        ops = request.config_dict.get(OPS) if isinstance(request, web.Request) else None
        received = request.content.total_bytes
        sent = _sent_bytes(request, response)
        operation = route = None
        if ops is not None:
            match = request.match_info  # type: ignore[attr-defined]
            if match.handler is dispatch:
                operation = str(request.get(OPERATION) or "unknown")
                ops.metrics.observe_s3(operation, response.status, time, received, sent)
            else:
                route = _route_label(match)
                ops.metrics.observe_http(route, request.method, response.status, time)
        # Probes and scrapes arrive every few seconds: their lines are debug lines.
        level = logging.DEBUG if request.path in OPS_PATHS else logging.INFO
        if (ops is None or ops.access_log) and self.logger.isEnabledFor(level):
            request_id = request_id_of(request)
            label = operation or route or "-"
            self.logger.log(
                level, "%s %s %s %s %d %d %.1fms", request.method, request.path, response.status,
                label, received, sent, time * 1000,
                extra={"request_id": request_id, "method": request.method,
                       "path": request.path, "status": response.status, "operation": label,
                       "bytes_in": received, "bytes_out": sent,
                       "duration_ms": round(time * 1000, 3), "remote": request.remote},
            )


def _sent_bytes(request: BaseRequest, response: web.StreamResponse) -> int:
    if request.method == "HEAD" or response.status in (204, 304):
        return 0
    length = response.content_length
    return length if length is not None else response.body_length


def _route_label(match: Any) -> str:
    route = getattr(match, "route", None)
    if route is None:
        return "unmatched"
    if route.name:
        return str(route.name)
    resource = route.resource
    return str(resource.canonical) if resource is not None else "unmatched"


def access_log_options() -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` that route every finished request through
    `AccessObserver` (metrics, access log)."""
    return {"access_log_class": AccessObserver, "access_log": access_log}
