"""A fault-injecting HTTP proxy in front of an S3 endpoint, for tests.

`FaultProxy` is a real aiohttp server on 127.0.0.1, run in a thread of its own, that forwards
every request to the upstream endpoint (path-style S3) as it came: method, raw path and query,
every header but the hop-by-hop ones (the Host header and the signed headers are kept, so a
SigV4 signature made for the proxy's address still covers the forwarded request), and the body
streamed both ways without decoding.

A test tells it, per rule (`Fault`), which requests to spoil and how:

- `error`: answer an S3 error (default `503 SlowDown` with S3's XML body) without forwarding;
- `stall`: hold the answer `seconds` long: before forwarding (a request whose client gave up
  meanwhile is then dropped, never reaching the store), after forwarding (`forward=True`: the
  store applied it, its answer is late), or after the first `after_bytes` bytes of the body;
- `cut`: forward, send the response headers and the first `after_bytes` bytes of the body
  (default half of it), then close the connection.

A rule matches by S3 operation name (`PutObject`, `UploadPart`, `GetObject`, …), method, and
regular expressions searched in the raw path and raw query; it fires on the next `times`
matching requests (None: on every one), each time with probability `fraction` (drawn from a
generator seeded by the rule's `seed`, so a run is repeatable). The proxy counts what it
forwarded and what it injected, per operation, so tests can check that retries happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote

from aiohttp import ClientError, ClientResponse, ClientSession, ClientTimeout, web

# Headers that belong to one connection, not to the request or response they travel with.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "expect",
})
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0

Action = Literal["error", "stall", "cut"]


@dataclass
class Fault:
    """One rule: which requests to spoil, and how. See the module docstring."""

    action: Action
    operation: str | None = None
    method: str | None = None
    path: str | None = None
    query: str | None = None
    times: int | None = None
    fraction: float = 1.0
    status: int = 503
    code: str = "SlowDown"
    message: str = "Please reduce your request rate."
    seconds: float = 0.0
    forward: bool = False
    after_bytes: int | None = None
    seed: int = 0
    injected: int = field(default=0, init=False)
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ("error", "stall", "cut"):
            raise ValueError(f"unknown fault action {self.action!r}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        if self.times is not None and self.times < 0:
            raise ValueError("times must not be negative")
        self._random = random.Random(self.seed)

    def draw(self) -> bool:
        """Whether this matching request is spoiled: always, or with probability `fraction`."""
        return self.fraction >= 1.0 or self._random.random() < self.fraction

    def matches(self, operation: str, method: str, path: str, query: str) -> bool:
        return (
            (self.operation is None or self.operation == operation)
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or re.search(self.path, unquote(path)) is not None)
            and (self.query is None or re.search(self.query, query) is not None)
        )


def s3_operation(method: str, path: str, query: str, headers: object = None) -> str:
    """The S3 operation of a path-style request (`PutObject`, `UploadPart`, `ListObjectsV2`, …)."""
    params = parse_qs(query, keep_blank_values=True)
    has_key = "/" in path.strip("/")
    copy = headers is not None and "x-amz-copy-source" in headers  # type: ignore[operator]
    if not path.strip("/"):
        return "ListBuckets" if method == "GET" else f"{method}Service"
    if not has_key:
        if method == "GET":
            if params.get("list-type") == ["2"]:
                return "ListObjectsV2"
            return "ListMultipartUploads" if "uploads" in params else "ListObjects"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
            method, f"{method}Bucket")
    if method == "PUT":
        if "partNumber" in params and "uploadId" in params:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
    if method == "GET":
        return "ListParts" if "uploadId" in params else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    return f"{method}Object"


def error_body(code: str, message: str, resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>FAULTPROXY</RequestId>"
        "<HostId>faultproxy</HostId></Error>"
    ).encode()


class FaultProxy:
    """The proxy; `start` and `stop` it, or use it as a context manager.

    Args:
        upstream: the endpoint requests are forwarded to (`http://host:port`).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        self._faults: list[Fault] = []
        self._forwarded: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._stopping: asyncio.Event | None = None

    # -- control (called from the test's thread) -------------------------------------------

    def inject(self, action: Action, **rule: object) -> Fault:
        """Add a rule (the keyword arguments are the fields of `Fault`) and return it."""
        fault = Fault(action, **rule)  # type: ignore[arg-type]
        with self._lock:
            self._faults.append(fault)
        return fault

    def slowdown(self, **rule: object) -> Fault:
        """Answer `503 SlowDown` to the matching requests."""
        return self.inject("error", **rule)

    def clear(self) -> None:
        """Remove every rule; requests are forwarded untouched from now on."""
        with self._lock:
            self._faults.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self._forwarded.clear()
            self._injected.clear()

    def forwarded(self, operation: str | None = None) -> int:
        """Requests forwarded upstream (of one operation, or all), spoiled ones included."""
        with self._lock:
            return self._forwarded[operation] if operation else sum(self._forwarded.values())

    def injected(self, operation: str | None = None) -> int:
        """Faults injected (into one operation's requests, or all)."""
        with self._lock:
            return self._injected[operation] if operation else sum(self._injected.values())

    def _pick(self, operation: str, method: str, path: str, query: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times == 0 or not fault.matches(operation, method, path, query):
                    continue
                if not fault.draw():
                    continue
                if fault.times is not None:
                    fault.times -= 1
                fault.injected += 1
                self._injected[operation] += 1
                return fault
        return None

    def _count_forwarded(self, operation: str) -> None:
        with self._lock:
            self._forwarded[operation] += 1

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not started.wait(_START_TIMEOUT):
            raise TimeoutError("the fault proxy did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if not loop.is_closed():
            with contextlib.suppress(TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(_STOP_TIMEOUT)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        self._session = ClientSession(
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=ClientTimeout(total=None, sock_connect=10),
        )
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _close(self) -> None:
        assert self._stopping is not None
        self._stopping.set()  # wakes every stall
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _pause(self, seconds: float) -> None:
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- requests ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        operation = s3_operation(request.method, path, query, request.headers)
        fault = self._pick(operation, request.method, path, query)
        if fault is not None and fault.action == "error":
            await _discard(request)
            return web.Response(
                status=fault.status, body=error_body(fault.code, fault.message, path),
                content_type="application/xml", headers={"x-amz-request-id": "FAULTPROXY"},
            )
        if fault is not None and fault.action == "stall" and not fault.forward \
                and fault.after_bytes is None:
            await self._pause(fault.seconds)
            transport = request.transport
            if transport is None or transport.is_closing():
                return web.Response(status=499)  # the client gave up: the store never sees it
        self._count_forwarded(operation)
        try:
            return await self._forward(request, fault)
        except ConnectionError:  # the client gave up (its read timeout) or was cut off
            return web.Response(status=499)

    async def _forward(self, request: web.Request, fault: Fault | None) -> web.StreamResponse:
        assert self._session is not None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        data = request.content if request.body_exists else None
        try:
            upstream = await self._session.request(
                request.method, self.upstream + request.raw_path, headers=headers, data=data,
                allow_redirects=False,
            )
        except ClientError as exc:
            return web.Response(status=502, text=f"upstream unreachable: {exc}")
        async with upstream:
            if fault is not None and fault.action == "stall" and fault.forward \
                    and fault.after_bytes is None:
                body = await upstream.read()  # the store has answered: hold the answer
                await self._pause(fault.seconds)
                chunks = _once(body)
            else:
                chunks = None
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            if request.method == "HEAD":
                await response.write_eof()
                return response
            limit = _body_limit(fault, upstream.content_length)
            sent = 0
            source = chunks if chunks is not None else _iterate(upstream)
            async for chunk in source:
                if limit is not None and sent + len(chunk) >= limit:
                    head, chunk = chunk[: limit - sent], chunk[limit - sent :]
                    await response.write(head)
                    sent += len(head)
                    limit = None
                    if await self._spoil(request, fault):
                        return response
                if chunk:
                    await response.write(chunk)
                    sent += len(chunk)
            await response.write_eof()
            return response

    async def _spoil(self, request: web.Request, fault: Fault | None) -> bool:
        """Apply a mid-body fault; True when the connection was cut."""
        assert fault is not None
        if fault.action == "stall":
            await self._pause(fault.seconds)
            return False
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then closes: a short body
        return True


def _body_limit(fault: Fault | None, length: int | None) -> int | None:
    """How many body bytes go out before a mid-body fault (None: no mid-body fault)."""
    if fault is None or fault.action == "error":
        return None
    if fault.action == "cut":
        return fault.after_bytes if fault.after_bytes is not None else (length or 0) // 2
    return fault.after_bytes


async def _discard(request: web.Request) -> None:
    if request.body_exists:
        async for _ in request.content.iter_any():
            pass


async def _iterate(upstream: ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in upstream.content.iter_any():
        yield chunk


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Run a `FaultProxy` in front of `upstream` for the duration of the block."""
    with FaultProxy(upstream) as proxy:
        yield proxy
