"""Building the ranges of big commits in helper processes, outside the serving process's GIL.

A commit of many changes decodes, merges, encodes and hashes ranges for hundreds of
milliseconds or more. On the event loop's thread, even cut into 1 ms steps, that work
competes for the GIL and the CPU with the metadata store's threads, so the loop still went
10-40 ms at a time without serving anyone. A helper process opens the same metadata store,
reads the sealed staging tokens, applies them to the head's tree and stores the new ranges;
the serving process only waits for the new root, then publishes the commit itself (the
compare-and-swap of the branch stays where the branch lock is).

Ranges are content-addressed, so a helper that dies midway leaves only unreferenced ranges
behind, and the commit is then built in the serving process instead. A helper exits when
the process that started it does.

Protocol: frames of a 4-byte big-endian length and a msgpack map, one request and one answer
at a time, on the helper's stdin and stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import struct
import subprocess
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import msgpack

from lakeproxy import errors
from lakeproxy.graveler.committed.tree import NodeRef

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_PARENT_VARIABLE = "LAKEPROXY_WORKER_PARENT"
# Not `-m`: the package imports this module, and running it again as __main__ would make a
# second copy of it.
COMMAND = [sys.executable, "-c", "from lakeproxy.graveler.commit_worker import main; main()"]


@dataclass(frozen=True, slots=True)
class Applied:
    """What a helper built: the new root and what writing it cost."""

    root: NodeRef
    changes: int
    nodes_written: int
    bytes_written: int


class WorkerLost(Exception):
    """The helper died or stopped answering; the work must be done in this process."""


def _write_frame(out: IO[bytes], message: dict[str, Any]) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    out.write(_HEADER.pack(len(body)) + body)
    out.flush()


def _read_frame(src: IO[bytes]) -> dict[str, Any] | None:
    """The next message, or None at the end of the stream (a short frame counts as the end)."""
    header = src.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    body = src.read(size)
    if len(body) < size:
        return None
    message: dict[str, Any] = msgpack.unpackb(body, raw=False)
    return message


def _error_from(kind: str, message: str) -> errors.LakeproxyError:
    """The error a helper reported, as the same class of the core's hierarchy."""
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.LakeproxyError)) or (
        cls is errors.MergeConflict
    ):
        cls = errors.StorageError
    return cls(message)


class _Helper:
    """One helper process, answering one request at a time."""

    def __init__(self) -> None:
        env = dict(os.environ, **{_PARENT_VARIABLE: str(os.getpid())})
        self.proc = subprocess.Popen(
            COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send a request and wait for the answer (blocking: run it on a thread)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _write_frame(self.proc.stdin, request)
        except (BrokenPipeError, ValueError) as exc:
            raise WorkerLost("the commit helper is gone") from exc
        answer = _read_frame(self.proc.stdout)
        if answer is None:
            raise WorkerLost(f"the commit helper exited ({self.proc.wait()})")
        return answer

    def stop(self, *, kill: bool = False) -> None:
        """Close its stdin (it exits when it reads the end), or kill it; then reap it."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CommitWorkers:
    """A small pool of helper processes that build big commits' ranges.

    Helpers start when first needed and stay for the next commits (with their node cache
    warm); at most `size` work at once, and further commits wait for one.

    Args:
        spec: the metadata store's `reopen_spec`.
        size: how many helpers may run at once.
        cache_bytes: each helper's decoded node cache.
        encoded_cache_bytes: each helper's encoded node cache.
    """

    def __init__(
        self,
        spec: tuple[str, ...],
        size: int,
        *,
        cache_bytes: int,
        encoded_cache_bytes: int,
    ) -> None:
        if size < 1:
            raise ValueError("a pool of commit helpers needs at least one")
        self.spec = spec
        self.cache = (cache_bytes, encoded_cache_bytes)
        self._idle: list[_Helper] = []
        self._slots = asyncio.BoundedSemaphore(size)
        self._closed = False
        self.busy = 0  # helpers working right now
        # Dropped without `close()`, the pool still stops its idle helpers.
        weakref.finalize(self, _stop_all, self._idle)

    async def apply(
        self,
        nodes_partition: str,
        staging_partition: str,
        tokens: Sequence[bytes],
        base: NodeRef,
    ) -> Applied:
        """Apply the staged changes of `tokens` (oldest first) to the tree at `base`, storing
        every new range; the caller publishes the commit.

        Raises:
            WorkerLost: no helper could do it (the caller builds the commit itself).
            LakeproxyError: the helper failed as the same work in this process would have.
        """
        if self._closed:
            raise WorkerLost("the commit helpers are closed")
        request = {
            "store": list(self.spec),
            "cache": list(self.cache),
            "nodes": nodes_partition,
            "staging": staging_partition,
            "tokens": list(tokens),
            "base": base.hex,
        }
        async with self._slots:
            helper = self._take()
            self.busy += 1
            try:
                answer = await asyncio.to_thread(helper.ask, request)
            except BaseException:
                # Lost, or the commit was cancelled while the helper works: it may be midway,
                # so it cannot take the next request.
                await asyncio.to_thread(helper.stop, kill=True)
                raise
            finally:
                self.busy -= 1
            if self._closed:
                await asyncio.to_thread(helper.stop)
            else:
                self._idle.append(helper)
        if "error" in answer:
            kind, message = answer["error"]
            raise _error_from(kind, message)
        return Applied(
            NodeRef(*answer["root"]), answer["changes"], answer["nodes"], answer["bytes"]
        )

    def _take(self) -> _Helper:
        while self._idle:
            helper = self._idle.pop()
            if helper.alive:
                return helper
            helper.stop()
        try:
            return _Helper()
        except OSError as exc:
            raise WorkerLost(f"cannot start a commit helper: {exc}") from exc

    async def close(self) -> None:
        """Stop the idle helpers (each finishes and exits)."""
        self._closed = True
        while self._idle:
            await asyncio.to_thread(self._idle.pop().stop)


def _stop_all(helpers: list[_Helper]) -> None:
    while helpers:
        helpers.pop().stop()


# The helper's side.


def _die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux), and exit now if the
    parent is already gone."""
    parent = int(os.environ.get(_PARENT_VARIABLE, "0"))
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:
        sys.exit(0)


class _Server:
    def __init__(self) -> None:
        from lakeproxy.graveler.committed.tree import NodeCache

        self.stores: dict[tuple[str, ...], Any] = {}
        self.cache: NodeCache | None = None

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        from lakeproxy.graveler.committed.apply import ChangeStream, apply_changes
        from lakeproxy.graveler.committed.tree import NodeCache, TreeStore
        from lakeproxy.graveler.staging import StagingManager
        from lakeproxy.metastore import open_by_spec

        spec = tuple(request["store"])
        store = self.stores.get(spec)
        if store is None:
            store = self.stores[spec] = await open_by_spec(spec)
        if self.cache is None:
            self.cache = NodeCache(*request["cache"])
        trees = TreeStore(store, request["nodes"], self.cache)
        base = await trees.root(request["base"])
        stream = ChangeStream(
            StagingManager(store).change_batches(request["staging"], request["tokens"])
        )
        root, writer = await apply_changes(trees, base, stream)
        await trees.write(writer.take_pending())
        return {
            "root": list(root),
            "changes": stream.count,
            "nodes": writer.nodes_written,
            "bytes": writer.bytes_written,
        }

    async def close(self) -> None:
        for store in self.stores.values():
            await store.close()


def main() -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when helpers stop
    src, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the channel
    server = _Server()
    with asyncio.Runner() as runner:
        try:
            while (request := _read_frame(src)) is not None:
                try:
                    answer = runner.run(server.handle(request))
                except errors.LakeproxyError as exc:
                    answer = {"error": [type(exc).__name__, exc.message]}
                except Exception as exc:  # reported, not fatal: the next commit may succeed
                    log.exception("commit helper failed")
                    answer = {"error": ["StorageError", f"building the commit failed: {exc}"]}
                _write_frame(out, answer)
        finally:
            runner.run(server.close())

