"""A block store in a directory of the local file system.

Objects are plain files under the store's root. Writes go to a temporary file in
`<root>/.tmp`, are fsynced and renamed into place, so a reader sees a whole object or
nothing. Multipart uploads keep their parts in `<root>/.uploads/<upload id>/<part number>`.
Every path is validated and resolved before use: nothing outside the root is ever read,
written or listed, whatever the path string or the symlinks inside the root.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from lakeproxy.blockstore import (
    check_part_number,
    check_parts,
    check_path,
    check_prefix,
    check_range,
)
from lakeproxy.blockstore.base import BlockStat, PartInfo
from lakeproxy.errors import InvalidArgument, ObjectNotFound, StorageError, UploadNotFound

CHUNK_SIZE = 1 << 20
"""Size of the chunks `get` yields, and of the write batches of `put`."""
_WRITES_IN_FLIGHT = 2  # write batches of one body being written at once

_WRITE_BEHIND = hasattr(os, "posix_fadvise")
_TMP = ".tmp"
_UPLOADS = ".uploads"
_TARGET = "target"  # file of an upload folder: the path the upload ends up at
# Parts are assembled in place when their sizes allow it: the first part of at least
# _MIN_STRIDE bytes fixes the upload's stride (file `stride`), and a part of that size (or a
# smaller last part) uploaded for the first time is written straight into `assembly` at
# offset (number - 1) * stride, with a marker `<number>.in` holding its size. A part
# uploaded again, or of another size, is a file `<number>` of its own. When every part
# of a completion is in place, completing renames the assembly: nothing is copied.
_ASSEMBLY = "assembly"
_STRIDE = "stride"
_IN_PLACE = ".in"
_CLAIM = ".claim"
_COMPLETING = "completing"
_MIN_STRIDE = 5 * 1024 * 1024
_RESERVED = frozenset({_TMP, _UPLOADS})
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
# Errors saying that a copy_file_range cannot be used between these files: fall back to read/write.
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM})

T = TypeVar("T")


async def _in_thread(
    fn: Callable[..., T], *args: object, undo: Callable[[T], object] | None = None
) -> T:
    """Run `fn` in a worker thread; when cancelled, wait for the thread before raising.

    A cancelled `asyncio.to_thread` leaves its thread running. Waiting for it means the
    caller's cleanup (closing a descriptor, removing a temporary file) never races a
    read or write still in flight on the same descriptor. `undo` releases what `fn`
    returned (a descriptor, a file) when the caller is cancelled and never sees it.
    """
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FolderSyncs:
    """Shared fsyncs of folders (group commit for renames).

    A rename is durable once an fsync of its folder *starts after it*; many writer threads
    renaming into one folder can therefore share one fsync instead of paying one each.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rounds: dict[str, list[int]] = {}  # folder -> [next round, completed, running]

    def sync(self, folder: str) -> None:
        with self._cond:
            state = self._rounds.setdefault(folder, [1, 0, 0])
            need = state[0]  # the first round that starts after this call
            while state[1] < need:
                if state[2]:
                    self._cond.wait()
                    continue
                state[2] = 1
                number = state[0]
                state[0] += 1
                self._cond.release()
                try:
                    _fsync_dir(folder)
                finally:
                    self._cond.acquire()
                    state[2] = 0
                    self._cond.notify_all()
                state[1] = number
            if len(self._rounds) > 1024 and not state[2]:
                self._rounds.pop(folder, None)


def _write_all(fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _write_synced(fd: int, chunks: list[bytes]) -> None:
    """Write `chunks`, fsync and close `fd` (closed whatever happens)."""
    try:
        _write_all(fd, chunks)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_behind(fd: int, chunks: list[bytes], offset: int) -> None:
    """Write `chunks` at `offset` of `fd`, then start writing them back.

    POSIX_FADV_DONTNEED starts the write-back of the range's dirty pages without waiting for
    it, so the disk works while the rest of a large body arrives and the final fsync has
    little left to do.
    """
    start = offset
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    if _WRITE_BEHIND and offset > start:
        os.posix_fadvise(fd, start, offset - start, os.POSIX_FADV_DONTNEED)


def _append_range(fd: int, source: str, offset: int, length: int) -> int:
    """Append `length` bytes of the file at `source` from `offset` to the file open at `fd`."""
    copied = 0
    with open(source, "rb") as src:
        if hasattr(os, "copy_file_range"):
            try:
                while copied < length:
                    n = os.copy_file_range(
                        src.fileno(), fd, min(length - copied, 1 << 30), offset + copied
                    )
                    if n == 0:
                        break
                    copied += n
            except OSError as e:
                if e.errno not in _NO_COPY_RANGE or copied:
                    raise
        while copied < length:
            data = os.pread(src.fileno(), min(CHUNK_SIZE, length - copied), offset + copied)
            if not data:
                break
            _write_all(fd, [data])
            copied += len(data)
    if copied != length:
        raise StorageError(f"part data is missing from {source}")
    return copied


def _write_file(folder: str, name: str, text: str) -> None:
    """Create or replace the small file `name` in `folder` atomically and durably."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        _write_all(fd, [text.encode()])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(folder, name))
    _fsync_dir(folder)


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _close_first(opened: tuple[int, object]) -> None:
    os.close(opened[0])


def _discard_temp(opened: tuple[int, str]) -> None:
    os.close(opened[0])
    _unlink_quietly(opened[1])


class LocalBlockStore:
    """Objects as files under `root`; `namespace` is the name the store was opened with."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.namespace = namespace
        self.root = Path(os.path.abspath(root))
        self._root_real: str | None = None
        self._folders: dict[str, str] = {}
        self._folder_syncs = _FolderSyncs()

    # -- paths -------------------------------------------------------------------------

    def _real_root(self) -> str:
        if self._root_real is None:
            self._root_real = os.path.realpath(self.root)
        return self._root_real

    def _inside(self, segments: Sequence[str], shown: str) -> str:
        """The real path of `segments`, which must lie strictly inside the real root."""
        root = self._real_root()
        real = os.path.realpath(os.path.join(root, *segments))
        if not real.startswith(root + os.sep):
            raise InvalidArgument(f"{shown!r} resolves outside the block store", path=shown)
        return real

    def _resolve(self, path: str) -> str:
        segments = check_path(path)
        if segments[0] in _RESERVED:
            raise InvalidArgument(f"block path {path!r} uses a reserved name", path=path)
        return self._inside(segments, path)

    def _upload_dir(self, path: str, upload_id: str) -> str:
        """The folder of an upload that exists and ends up at `path`, else UploadNotFound."""
        self._resolve(path)
        folder = os.path.join(self._real_root(), _UPLOADS, upload_id)
        try:
            if _UPLOAD_ID.fullmatch(upload_id) is None:
                raise FileNotFoundError(upload_id)
            with open(os.path.join(folder, _TARGET), encoding="utf-8") as f:
                if f.read() != path:
                    raise FileNotFoundError(upload_id)
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(
                f"no multipart upload {upload_id!r} for {path!r}", path=path, upload_id=upload_id
            ) from None
        return folder

    def local_path(self, path: str) -> str | None:
        """The absolute path of the object's file (it may not exist), for sendfile.

        The folder is resolved (symlinks included) and must lie inside the store; resolved
        folders are remembered, so a GET costs one lstat here. Open the file with O_NOFOLLOW.

        Raises:
            InvalidArgument: for a malformed path, or one that resolves outside the store.
        """
        full = self._in_known_folder(path)
        if os.path.islink(full):
            raise InvalidArgument(f"{path!r} resolves outside the block store", path=path)
        return full

    def _in_known_folder(self, path: str) -> str:
        """`path` inside its folder's real path, which is resolved once and remembered; the
        last segment is not resolved (open it with O_NOFOLLOW or O_EXCL)."""
        segments = check_path(path)
        if segments[0] in _RESERVED:
            raise InvalidArgument(f"block path {path!r} uses a reserved name", path=path)
        folder = "/".join(segments[:-1])
        real = self._folders.get(folder)
        if real is None:
            real = self._inside(segments[:-1], path) if folder else self._real_root()
            if len(self._folders) >= 4096:
                self._folders.clear()
            self._folders[folder] = real
        return os.path.join(real, segments[-1])

    # -- writing -----------------------------------------------------------------------

    def _open_temp(self) -> tuple[int, str]:
        folder = os.path.join(self._real_root(), _TMP)
        os.makedirs(folder, exist_ok=True)
        return tempfile.mkstemp(dir=folder, prefix="put-")

    def _make_parents(self, target: str) -> None:
        """Create the missing folders above `target`, each durably (fsync of its parent)."""
        root = self._real_root()
        missing: list[str] = []
        folder = os.path.dirname(target)
        while len(folder) > len(root) and not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder)
            _fsync_dir(os.path.dirname(folder))

    def _place(self, tmp: str, target: str, make_parents: bool) -> None:
        if make_parents:
            self._make_parents(target)
        os.replace(tmp, target)
        self._folder_syncs.sync(os.path.dirname(target))

    def _place_link(self, source: str, target: str) -> None:
        """Put a second name for the file at `source` at `target` (the upload folder keeps its
        own until it is removed, so a completion interrupted by a crash can be retried)."""
        folder = os.path.join(self._real_root(), _TMP)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"link-{secrets.token_hex(8)}")
        os.link(source, tmp)
        try:
            self._place(tmp, target, True)
        finally:
            # Gone after a rename; left when `target` already was this file (a retried
            # completion), since renaming a file onto another name of itself does nothing.
            _unlink_quietly(tmp)

    async def _atomic(
        self, target: str, fill: Callable[[int], Awaitable[int]], *, make_parents: bool = True
    ) -> int:
        """Let `fill` write a temporary file, then fsync it and rename it to `target`."""
        fd, tmp = await _in_thread(self._open_temp, undo=_discard_temp)
        try:
            try:
                size = await fill(fd)
                await _in_thread(os.fsync, fd)
            finally:
                os.close(fd)
            await _in_thread(self._place, tmp, target, make_parents)
            return size
        except BaseException:
            # Shielded: a second cancellation must not leave the temporary file behind.
            await asyncio.shield(asyncio.to_thread(_unlink_quietly, tmp))
            raise

    @staticmethod
    async def _stream_to(
        fd: int, chunks: AsyncIterable[bytes], offset: int = 0, limit: int | None = None
    ) -> int:
        """Write `chunks` at `offset` of `fd`, one thread hop per MiB or so; returns the size.

        Each MiB is written while the next ones are received, at most `_WRITES_IN_FLIGHT`
        at once (each at its own offset), and none is left running when this returns or
        raises (the caller closes `fd` next). With `limit`, reading stops as soon as more
        bytes than that arrived, and the count so far is returned (nothing past
        `offset + limit` is written).
        """
        size, batch, batched = 0, [], 0
        source = aiter(chunks)
        writing: deque[asyncio.Future[None]] = deque()
        try:
            while True:
                try:
                    chunk = await anext(source)
                except StopAsyncIteration:
                    break
                except Exception as e:
                    # The caller's stream failed, not the file system: let it through as is.
                    raise _SourceError(e) from e
                batch.append(chunk)
                batched += len(chunk)
                if limit is not None and size + batched > limit:
                    return size + batched
                if batched >= CHUNK_SIZE:
                    if len(writing) >= _WRITES_IN_FLIGHT:
                        await writing.popleft()
                    writing.append(
                        asyncio.ensure_future(_in_thread(_write_behind, fd, batch, offset + size))
                    )
                    size, batch, batched = size + batched, [], 0
            while writing:
                await writing.popleft()
            await _in_thread(_write_behind, fd, batch, offset + size)
        finally:
            # Failing or cancelled: let the writes finish before the descriptor is closed.
            for pending in writing:
                with contextlib.suppress(BaseException):
                    await asyncio.shield(pending)
        return size + batched

    async def put(
        self, path: str, chunks: AsyncIterable[bytes], *, fresh: bool = False
    ) -> int:
        """Store the concatenation of `chunks` at `path`, atomically and durably.

        With `fresh` (a new address nothing reads yet), a small body is written in place:
        one file created, written and fsynced, with no temporary file and no rename. A path
        that turns out to exist is replaced through a temporary file as usual.

        Returns:
            The size of the object.

        Raises:
            InvalidArgument: for a malformed path, one that resolves outside the store, or
                one that collides with an existing folder or file.
            StorageError: when the file system fails.
        """
        source = aiter(chunks)
        head: list[bytes] = []
        size = 0
        ended = False
        while size < CHUNK_SIZE:  # small objects (most of them) take one thread hop in all
            try:
                chunk = await anext(source)
            except StopAsyncIteration:
                ended = True
                break
            head.append(chunk)
            size += len(chunk)
        try:
            with _os_errors("put", path):
                if ended:
                    await _in_thread(self._put_small, path, head, fresh)
                    return size
                target = await _in_thread(self._resolve, path)
                return await self._atomic(
                    target, lambda fd: self._stream_to(fd, _chain(head, source))
                )
        except _SourceError as e:
            raise e.original from None

    def _put_small(self, path: str, data: list[bytes], fresh: bool = False) -> None:
        """Store a body already in memory in one thread hop: in place when `fresh`, else
        written to a temporary file, fsynced and renamed into place."""
        # A fresh address is created with O_EXCL, which never follows a link, so its folder's
        # remembered real path serves; anything else is resolved in full and replaced.
        if fresh and self._create_whole(self._in_known_folder(path), data):
            return
        target = self._resolve(path)
        fd, tmp = self._open_temp()
        try:
            _write_synced(fd, data)
            self._place(tmp, target, True)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _create_whole(self, target: str, data: list[bytes]) -> bool:
        """Create `target`, write and fsync it, then fsync its folder; False (nothing done)
        when `target` already exists, or the store's own folder does not exist yet. On
        failure the file is removed again."""
        try:
            self._make_parents(target)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except (FileExistsError, FileNotFoundError):
            return False  # the usual way creates the root, or replaces the file whole
        try:
            _write_synced(fd, data)
            self._folder_syncs.sync(os.path.dirname(target))
        except BaseException:
            _unlink_quietly(target)
            raise
        return True

    # -- reading -----------------------------------------------------------------------

    def _open_read(self, path: str) -> tuple[int, int]:
        real = self._resolve(path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"no object at {path!r}", path=path) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise ObjectNotFound(f"no object at {path!r}", path=path)
        return fd, info.st_size

    async def get(
        self, path: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes [`start`, `end`) of the object in chunks of about 1 MiB.

        An `end` past the size is clamped to it; a `start` at or past it yields nothing.

        Raises:
            ObjectNotFound: when there is no object at `path`.
            InvalidArgument: for a malformed path or range.
        """
        check_range(start, end)
        with _os_errors("get", path):
            fd, size = await _in_thread(self._open_read, path, undo=_close_first)
        try:
            stop = size if end is None else min(end, size)
            while start < stop:
                with _os_errors("get", path):
                    data = await _in_thread(os.pread, fd, min(CHUNK_SIZE, stop - start), start)
                if not data:
                    break
                start += len(data)
                yield data
        finally:
            os.close(fd)

    def _stat(self, path: str) -> BlockStat | None:
        try:
            info = os.stat(self._resolve(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return BlockStat(path, info.st_size) if stat.S_ISREG(info.st_mode) else None

    async def stat(self, path: str) -> BlockStat | None:
        """Size of the object at `path`, or None if there is none."""
        with _os_errors("stat", path):
            return await _in_thread(self._stat, path)

    def _delete(self, path: str) -> None:
        # Empty folders are kept: removing them could race a put creating a file inside.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            os.unlink(self._resolve(path))

    async def delete(self, path: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        with _os_errors("delete", path):
            await _in_thread(self._delete, path)

    # -- multipart ---------------------------------------------------------------------

    def _create_upload(self, path: str) -> str:
        self._resolve(path)
        root = self._real_root()
        upload_id = secrets.token_hex(16)
        os.makedirs(os.path.join(root, _UPLOADS), exist_ok=True)
        os.makedirs(os.path.join(root, _TMP), exist_ok=True)
        staging = tempfile.mkdtemp(dir=os.path.join(root, _TMP), prefix="upload-")
        try:
            with open(os.path.join(staging, _TARGET), "w", encoding="utf-8") as f:
                f.write(path)
                f.flush()
                os.fsync(f.fileno())
            # The folder appears with its target file, or not at all.
            os.rename(staging, os.path.join(root, _UPLOADS, upload_id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(os.path.join(root, _UPLOADS))
        return upload_id

    async def create_multipart(self, path: str) -> str:
        """Start a multipart upload that will end up at `path`; returns its upload id."""
        with _os_errors("create multipart upload", path):
            return await _in_thread(self._create_upload, path)

    async def put_part(
        self, path: str, upload_id: str, part_number: int, chunks: AsyncIterable[bytes],
        *, size: int | None = None,
    ) -> PartInfo:
        """Store one part (1..10000) of an upload, atomically; storing it again replaces it.

        `size`, the part's announced length, lets the part be written in place into the
        object being assembled (see `_ASSEMBLY`); a body of another length then fails.

        Raises:
            UploadNotFound: for an unknown upload id, or one started for another path.
            InvalidArgument: for a part number out of range, or a body longer or shorter
                than `size`.
        """
        check_part_number(part_number)
        folder = await _in_thread(self._upload_dir, path, upload_id)
        try:
            with _os_errors("put part", path):
                claim = None
                if size is not None:
                    claim = await _in_thread(self._claim_slot, folder, part_number, size)
                if claim is not None:
                    written = await self._put_in_place(folder, part_number, claim, size, chunks)
                else:
                    part = os.path.join(folder, str(part_number))
                    body = chunks if size is None else _exactly(chunks, size, part_number)
                    written = await self._atomic(
                        part, lambda fd: self._stream_to(fd, body), make_parents=False
                    )
                    # This version is newer than any placed in the assembly.
                    await _in_thread(_unlink_quietly, part + _IN_PLACE)
        except _SourceError as e:
            raise e.original from None
        except StorageError as e:
            if isinstance(e.__cause__, FileNotFoundError):  # aborted while we were writing
                raise UploadNotFound(f"multipart upload {upload_id!r} was aborted") from None
            raise
        if size is not None and written != size:
            raise InvalidArgument(f"part {part_number} has {written} bytes, not {size}")
        return PartInfo(part_number, written)

    @staticmethod
    def _claim_slot(folder: str, number: int, size: int) -> int | None:
        """The assembly offset part `number` of `size` bytes may be written at, claimed for
        this writer; None when the part must go to a file of its own."""
        stride = _read_int(os.path.join(folder, _STRIDE))
        if stride is None:
            if size < _MIN_STRIDE:
                return None
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                _write_all(fd, [str(size).encode()])
                os.fsync(fd)
                os.close(fd)
                with contextlib.suppress(FileExistsError):  # another part set it first
                    os.link(tmp, os.path.join(folder, _STRIDE))
                    _fsync_dir(folder)
            finally:
                _unlink_quietly(tmp)
            stride = _read_int(os.path.join(folder, _STRIDE))
        part = os.path.join(folder, str(number))
        if stride is None or size > stride or size == 0:
            return None
        if os.path.exists(part) or os.path.exists(part + _IN_PLACE):
            return None  # uploaded before: the new version must not overwrite it in place
        try:
            os.close(os.open(part + _CLAIM, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return None  # being uploaded right now by another request
        if os.path.exists(os.path.join(folder, _COMPLETING)):
            # Completion may be renaming the assembly: write to a file of its own.
            _unlink_quietly(part + _CLAIM)
            return None
        return (number - 1) * stride

    async def _put_in_place(
        self, folder: str, number: int, offset: int, size: int, chunks: AsyncIterable[bytes]
    ) -> int:
        """Write the part at `offset` in the assembly, make it durable, then mark it placed."""
        claim = os.path.join(folder, f"{number}{_CLAIM}")
        try:
            fd = await _in_thread(
                os.open, os.path.join(folder, _ASSEMBLY), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                0o600, undo=os.close,
            )
            try:
                written = await self._stream_to(fd, chunks, offset, size)
                if written == size:
                    await _in_thread(os.fsync, fd)
            finally:
                os.close(fd)
            if written == size:
                await _in_thread(_write_file, folder, f"{number}{_IN_PLACE}", str(size))
                # The placed version is newer than a file from an earlier upload of it.
                await _in_thread(_unlink_quietly, os.path.join(folder, str(number)))
            return written
        finally:
            await asyncio.shield(asyncio.to_thread(_unlink_quietly, claim))

    @staticmethod
    def _part_sources(folder: str, parts: Sequence[int]) -> list[tuple[str, int, int]]:
        """Where each part's latest version is: (file, offset, length)."""
        stride = _read_int(os.path.join(folder, _STRIDE))
        assembly = os.path.join(folder, _ASSEMBLY)
        sources = []
        for number in parts:
            file = os.path.join(folder, str(number))
            if os.path.isfile(file):
                sources.append((file, 0, os.path.getsize(file)))
                continue
            placed = _read_int(file + _IN_PLACE)
            if placed is None or stride is None:
                raise InvalidArgument(f"part {number} was not uploaded", part_number=number)
            sources.append((assembly, (number - 1) * stride, placed))
        return sources

    @staticmethod
    def _assembled(folder: str, parts: Sequence[int],
                   sources: Sequence[tuple[str, int, int]]) -> int | None:
        """When parts 1..n are all in place and contiguous, trim the assembly to their end,
        make it durable and return its size (it is the object); else None."""
        if list(parts) != list(range(1, len(parts) + 1)):
            return None
        # Each side sets its flag, then looks for the other's: a part being written in place
        # and this rename never overlap (that write would land in the object).
        os.close(os.open(os.path.join(folder, _COMPLETING), os.O_WRONLY | os.O_CREAT, 0o600))
        if any(name.endswith(_CLAIM) for name in os.listdir(folder)):
            return None
        stride = _read_int(os.path.join(folder, _STRIDE))
        assembly = os.path.join(folder, _ASSEMBLY)
        for file, _, length in sources[:-1]:
            if file != assembly or length != stride:
                return None
        if stride is None or not os.path.isfile(assembly):
            return None
        head = (len(parts) - 1) * stride
        last, _, length = sources[-1]
        size = head + length
        fd = os.open(assembly, os.O_WRONLY | os.O_CLOEXEC)
        try:
            if last == assembly:
                os.ftruncate(fd, size)
            else:  # a last part of its own (it came before the stride was known): append it
                os.ftruncate(fd, head)
                os.lseek(fd, head, os.SEEK_SET)
                _append_range(fd, last, 0, length)
            os.fsync(fd)
        finally:
            os.close(fd)
        return size

    @staticmethod
    async def _join_to(fd: int, sources: Sequence[tuple[str, int, int]]) -> int:
        return sum([await _in_thread(_append_range, fd, file, offset, length)
                    for file, offset, length in sources])

    async def complete_multipart(self, path: str, upload_id: str, parts: Sequence[int]) -> int:
        """Join the given parts, in ascending order, into the object at `path`.

        The upload folder is removed once the object is in place.

        Returns:
            The size of the object.

        Raises:
            UploadNotFound: for an unknown upload id.
            InvalidArgument: for a missing part, or parts not in strictly ascending order.
        """
        check_parts(parts)
        with _os_errors("complete multipart upload", path):
            folder = await _in_thread(self._upload_dir, path, upload_id)
            sources = await _in_thread(self._part_sources, folder, parts)
            target = await _in_thread(self._resolve, path)
            size = await _in_thread(self._assembled, folder, parts, sources)
            if size is not None:
                await _in_thread(self._place_link, os.path.join(folder, _ASSEMBLY), target)
            else:
                size = await self._atomic(target, lambda fd: self._join_to(fd, sources))
            await _in_thread(shutil.rmtree, folder, True)
            return size

    def _abort(self, path: str, upload_id: str) -> None:
        with contextlib.suppress(UploadNotFound):
            shutil.rmtree(self._upload_dir(path, upload_id), ignore_errors=True)

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        """Discard an upload and its parts; aborting an unknown upload is not an error."""
        with _os_errors("abort multipart upload", path):
            await _in_thread(self._abort, path, upload_id)

    async def close(self) -> None:
        """Nothing to release."""

    # -- listing (last: the method named `list` shadows the builtin in this class body) --

    def _scan(self, folder: str, base: str, leaf: str) -> list[tuple[str, bool, int]]:
        """Entries of one folder as (path, is folder, size), in the order of their paths.

        Symlinks are skipped: the store never creates them, and following one could leave
        the root. Folders sort as `name/`, which makes a depth-first walk yield every path
        in plain string order.
        """
        at_root = not base
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found: list[tuple[str, bool, int]] = []
        for entry in entries:
            if not entry.name.startswith(leaf) or (at_root and entry.name in _RESERVED):
                continue
            if entry.is_dir(follow_symlinks=False):
                found.append((base + entry.name + "/", True, 0))
            elif entry.is_file(follow_symlinks=False):
                found.append((base + entry.name, False, entry.stat(follow_symlinks=False).st_size))
        found.sort()
        return found

    def _list_start(self, folders: Sequence[str], prefix: str) -> str:
        return self._inside(folders, prefix) if folders else self._real_root()

    async def list(self, prefix: str = "") -> AsyncIterator[BlockStat]:
        """Yield every object whose path starts with `prefix`, in path order.

        Raises:
            InvalidArgument: for a malformed prefix.
        """
        folders, leaf = check_prefix(prefix)
        if folders and folders[0] in _RESERVED:
            return
        with _os_errors("list", prefix):
            start = await _in_thread(self._list_start, folders, prefix)
            base = "".join(folder + "/" for folder in folders)
            stack = [iter(await _in_thread(self._scan, start, base, leaf))]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
            elif item[1]:
                folder = os.path.join(start, item[0][len(base) :])
                with _os_errors("list", prefix):
                    stack.append(iter(await _in_thread(self._scan, folder, item[0], "")))
            else:
                yield BlockStat(item[0], item[2])


async def _exactly(chunks: AsyncIterable[bytes], size: int, number: int) -> AsyncIterator[bytes]:
    """`chunks`, failing (before their end is stored) unless they hold exactly `size` bytes."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            break
        yield chunk
    if seen != size:
        raise InvalidArgument(f"part {number} is not {size} bytes long")


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


class _SourceError(Exception):
    """Carries an exception raised by the stream being stored past `_os_errors`."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


@contextlib.contextmanager
def _os_errors(operation: str, path: str) -> Iterator[None]:
    """Turn file system errors into InvalidArgument (path collisions) or StorageError."""
    try:
        yield
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as e:
        raise InvalidArgument(
            f"{operation} {path!r}: the path collides with an existing file or folder", path=path
        ) from e
    except OSError as e:
        raise StorageError(
            f"local block store: {operation} {path!r} failed: {e.strerror or e}", path=path
        ) from e
