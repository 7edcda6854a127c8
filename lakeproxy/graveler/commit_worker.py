"""Building the ranges of big commits, and of merges, in helper processes, outside the
serving process's GIL.

A commit of many changes decodes, merges, encodes and hashes ranges for hundreds of
milliseconds or more. On the event loop's thread, even cut into 1 ms steps, that work
competes for the GIL and the CPU with the metadata store's threads, so the loop still went
10-40 ms at a time without serving anyone. A helper process opens the same metadata store,
reads the sealed staging tokens, applies them to the head's tree and stores the new ranges;
the serving process only waits for the new root, then publishes the commit itself (the
compare-and-swap of the branch stays where the branch lock is). A merge (and a revert or a
cherry-pick) is diffed and built the same way.

Ranges are content-addressed, so a helper that dies midway leaves only unreferenced ranges
behind, and the commit is then built in the serving process instead. A helper exits when
the process that started it does.

The helper also sends back what it wrote (every index range, and the most recent of the
ranges up to 16 MiB in all, at most the size of the server's encoded range cache), which
the server caches as it would have had it built them: a diff or a read of the new commit
right after it does not have to read them back from the store.

Protocol, on the helper's stdin and stdout: frames of a 2-byte mark, a 4-byte big-endian
length and a msgpack body. One request (a map) at a time; the answer is a map, followed by as
many frames of ranges (lists of [id, encoded range]) as its "frames" says.
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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import msgpack

from lakeproxy import errors
from lakeproxy.graveler.committed.apply import ChangeStream, apply_changes
from lakeproxy.graveler.committed.merge import merge_trees
from lakeproxy.graveler.committed.tree import NodeCache, NodeRef, TreeStore, encoded_level
from lakeproxy.graveler.committed.writer import TreeWriter
from lakeproxy.graveler.model import MergeStrategy
from lakeproxy.graveler.staging import StagingManager
from lakeproxy.metastore import open_by_spec
from lakeproxy.metastore.base import MetadataStore
from lakeproxy.metastore.sqlite_writer import HELPER_NICENESS
from lakeproxy.pause import tune_gc

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">2sI")  # a mark, then the body's length
_MARK = b"LK"  # a frame without it is not ours: fail at once rather than wait for bytes
_RANGES_FRAME_BYTES = 1024 * 1024  # unpacked in one go, with the GIL held: keep it short
_RANGES_SENT_BYTES = 16 * 1024 * 1024
"""The most bytes of new ranges a helper sends back (unless its index ranges alone take
more): all of those of a commit of a thousand changes on a million entries, and every index
range and the last ranges of bigger ones. Sending all 108 MB of a commit of 100,000 changes
cost it about half a second more."""
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
    ranges: list[list[tuple[bytes, bytes]]]  # new ranges to cache, in frames


class WorkerLost(Exception):
    """The helper died or stopped answering; the work must be done in this process."""


def _write_frame(out: IO[bytes], message: Any) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    out.write(_HEADER.pack(_MARK, len(body)) + body)


def _read_frame(src: IO[bytes]) -> Any:
    """The next message, or None at the end of the stream (a short frame counts as the end)."""
    header = src.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    mark, size = _HEADER.unpack(header)
    if mark != _MARK:
        raise ValueError(f"not a frame: {header!r}")
    body = src.read(size)
    if len(body) < size:
        return None
    return msgpack.unpackb(body, raw=False)


def _range_frames(ranges: list[tuple[bytes, bytes]]) -> list[list[tuple[bytes, bytes]]]:
    frames: list[list[tuple[bytes, bytes]]] = [[]]
    size = 0
    for item in ranges:
        if size >= _RANGES_FRAME_BYTES:
            frames.append([])
            size = 0
        frames[-1].append(item)
        size += len(item[1])
    return frames if ranges else []


def _error_from(answer: dict[str, Any]) -> errors.LakeproxyError:
    """The error a helper reported, as the same class of the core's hierarchy."""
    kind, message = answer["error"]
    if kind == "MergeConflict":
        return errors.MergeConflict(message, answer.get("conflicts", []))
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.LakeproxyError)):
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

    def ask(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        """Send a request and wait for the answer and its frames of ranges (blocking: run it
        on a thread)."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        try:
            _write_frame(stdin, request)
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise WorkerLost("the commit helper is gone") from exc
        try:
            answer = _read_frame(stdout)
            frames = [_read_frame(stdout) for _ in range(answer.get("frames", 0) if answer else 0)]
        except (ValueError, TypeError, AttributeError) as exc:  # not our protocol
            raise WorkerLost(f"the commit helper answered garbage: {exc}") from exc
        if answer is None or any(f is None for f in frames):
            raise WorkerLost(f"the commit helper exited ({self.proc.wait()})")
        return answer, frames

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
    """A small pool of helper processes that build the ranges of big commits and merges.

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
        self.answered = 0  # requests helpers answered (errors included)
        # Dropped without `close()`, the pool still stops its idle helpers.
        weakref.finalize(self, _stop_all, self._idle)

    @property
    def idle_pids(self) -> list[int]:
        """The process ids of the helpers waiting for work (for monitoring)."""
        return [helper.proc.pid for helper in self._idle if helper.alive]

    def start(self) -> None:
        """Start a helper now, rather than at the first big commit (a helper takes a few
        hundred milliseconds to import lakeproxy and open the store)."""
        if not self._closed and not self._idle:
            self._idle.append(self._take())

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
        return await self._run({
            "op": "apply",
            "nodes": nodes_partition,
            "staging": staging_partition,
            "tokens": list(tokens),
            "base": base.hex,
        })

    async def merge(
        self,
        nodes_partition: str,
        base: NodeRef,
        source: NodeRef,
        dest: NodeRef,
        strategy: MergeStrategy,
    ) -> Applied:
        """`merge_trees` in a helper, which stores every new range; the caller publishes the
        merge commit. Raises as `apply` does, and MergeConflict with every conflicting key."""
        return await self._run({
            "op": "merge",
            "nodes": nodes_partition,
            "base": base.hex,
            "source": source.hex,
            "dest": dest.hex,
            "strategy": strategy.value,
        })

    async def _run(self, request: dict[str, Any]) -> Applied:
        if self._closed:
            raise WorkerLost("the commit helpers are closed")
        request.update(store=list(self.spec), cache=list(self.cache))
        async with self._slots:
            helper = self._take()
            self.busy += 1
            try:
                answer, frames = await asyncio.to_thread(helper.ask, request)
            except BaseException:
                # Lost, or the commit was cancelled while the helper works: it may be midway,
                # so it cannot take the next request.
                await asyncio.to_thread(helper.stop, kill=True)
                raise
            finally:
                self.busy -= 1
            self.answered += 1
            if self._closed:
                await asyncio.to_thread(helper.stop)
            else:
                self._idle.append(helper)
        if "error" in answer:
            raise _error_from(answer)
        return Applied(
            NodeRef(*answer["root"]), answer["changes"], answer["nodes"], answer["bytes"], frames
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


class _KeepingTrees(TreeStore):
    """A TreeStore that also keeps what it writes to send back: every index range, and the
    last of the ranges (level 0) that fit in what is left of `budget` bytes.

    Index ranges are a small part of a tree (a million entries: 998 of them, 0.8 MB of
    109 MB), and every later lookup, commit and diff of the new tree walks through them: a
    server that has them all reads only the ranges a small commit rewrites, in one round
    trip, rather than a round trip per level of the tree first.
    """

    def __init__(
        self, store: MetadataStore, partition: str, cache: NodeCache, budget: int
    ) -> None:
        super().__init__(store, partition, cache)
        self.budget = budget
        self.index: list[tuple[bytes, bytes]] = []
        self.index_bytes = 0
        self.ranges: deque[tuple[bytes, bytes]] = deque()
        self.ranges_bytes = 0

    @property
    def kept(self) -> list[tuple[bytes, bytes]]:
        """What to send back, index ranges first."""
        return self.index + list(self.ranges)

    async def write(self, nodes: list[tuple[bytes, bytes]]) -> None:
        await super().write(nodes)
        for node in nodes:
            if encoded_level(node[1]):
                self.index.append(node)
                self.index_bytes += len(node[1])
            else:
                self.ranges.append(node)
                self.ranges_bytes += len(node[1])
        while self.ranges and self.index_bytes + self.ranges_bytes > self.budget:
            self.ranges_bytes -= len(self.ranges.popleft()[1])


class _Server:
    def __init__(self) -> None:
        self.stores: dict[tuple[str, ...], MetadataStore] = {}
        self.cache: NodeCache | None = None

    async def handle(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        spec = tuple(request["store"])
        store = self.stores.get(spec)
        if store is None:
            store = self.stores[spec] = await open_by_spec(spec)
        if self.cache is None:
            self.cache = NodeCache(*request["cache"])
        trees = _KeepingTrees(
            store, request["nodes"], self.cache, min(request["cache"][1], _RANGES_SENT_BYTES)
        )
        base = await trees.root(request["base"])
        changes = 0
        writer: TreeWriter | None
        if request["op"] == "merge":
            root, writer = await merge_trees(
                trees, base, await trees.root(request["source"]),
                await trees.root(request["dest"]), MergeStrategy(request["strategy"]),
            )
        else:
            stream = ChangeStream(
                StagingManager(store).change_batches(request["staging"], request["tokens"])
            )
            root, writer = await apply_changes(trees, base, stream)
            changes = stream.count
        if writer is not None:
            await trees.write(writer.take_pending())
        frames = _range_frames(trees.kept)
        return {
            "root": list(root),
            "changes": changes,
            "nodes": writer.nodes_written if writer else 0,
            "bytes": writer.bytes_written if writer else 0,
            "frames": len(frames),
        }, frames

    async def close(self) -> None:
        for store in self.stores.values():
            await store.close()


def main() -> None:
    _die_with_parent()
    # Bulk work that can wait, on the same cores as the server's event loop, which cannot.
    with contextlib.suppress(OSError):
        os.nice(HELPER_NICENESS)
    tune_gc()  # as in the server: a helper's heap holds a big node cache too
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when helpers stop
    # Frames go out on a private copy of stdout; whatever else writes to stdout (a print, a
    # library's C code) lands on stderr instead of corrupting the channel.
    src, out = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = _Server()
    with asyncio.Runner() as runner:
        try:
            while (request := _read_frame(src)) is not None:
                frames: list[Any] = []
                try:
                    answer, frames = runner.run(server.handle(request))
                except errors.MergeConflict as exc:
                    answer = {"error": ["MergeConflict", exc.message], "conflicts": exc.conflicts}
                except errors.LakeproxyError as exc:
                    answer = {"error": [type(exc).__name__, exc.message]}
                except Exception as exc:  # reported, not fatal: the next commit may succeed
                    log.exception("commit helper failed")
                    answer = {"error": ["StorageError", f"building the commit failed: {exc}"]}
                for message in (answer, *frames):
                    _write_frame(out, message)
                out.flush()
        finally:
            runner.run(server.close())

