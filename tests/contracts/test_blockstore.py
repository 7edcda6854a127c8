"""The block store contract, run against the local adapter and the S3 adapter (moto)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import boto3
import pytest

from lakeproxy.blockstore import (
    BlockStat,
    BlockStore,
    PartInfo,
    S3Settings,
    open_block_store,
    parse_namespace,
)
from lakeproxy.blockstore.local import LocalBlockStore
from lakeproxy.blockstore.s3 import S3BlockStore
from lakeproxy.errors import InvalidArgument, ObjectNotFound, StorageError, UploadNotFound

MiB = 1 << 20


class Boom(Exception):
    """Raised by a chunk iterator that fails midway."""


async def chunked(data: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def failing(good: int, size: int = MiB) -> AsyncIterator[bytes]:
    for _ in range(good // size):
        yield b"x" * size
    raise Boom("the client went away")


async def read(store: BlockStore, path: str, **kw: int | None) -> bytes:
    return b"".join([chunk async for chunk in store.get(path, **kw)])  # type: ignore[arg-type]


async def listed(store: BlockStore, prefix: str = "") -> list[BlockStat]:
    return [stat async for stat in store.list(prefix)]


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes where every offset differs from its neighbours, so misplaced ranges show."""
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


@functools.cache
def boto_client(settings: S3Settings) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlockStore]:
    if request.param == "local":
        yield LocalBlockStore(tmp_path / "data" / "ns", "local://ns")
        return
    settings = request.getfixturevalue("s3_settings")
    bucket = request.getfixturevalue("s3_bucket")
    # 5 MiB parts (S3's minimum) so that multi-MiB bodies go through multipart uploads.
    async with S3BlockStore(
        bucket, "repo/prefix", settings, multipart_threshold=5 * MiB, part_size=5 * MiB
    ) as s3_store:
        yield s3_store


def checks_upload_on_put_part(store: BlockStore) -> bool:
    """Whether put_part can be asked to reject an unknown upload id.

    Real S3 answers UploadPart for an unknown upload id, or one started for another key,
    with NoSuchUpload; moto (5.x) fails with a 500 instead and never compares the key.
    """
    return not isinstance(store, S3BlockStore)


def assert_nothing_left(store: BlockStore) -> None:
    """No temporary file on disk (local), no pending multipart upload (S3)."""
    if isinstance(store, LocalBlockStore):
        tmp = store.root / ".tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == []
    else:
        assert isinstance(store, S3BlockStore)
        client = boto_client(store._settings)
        assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


# -- put / get -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(0, MiB), (1, MiB), (3 * MiB + 17, 64 * 1024), (7 * MiB + 5, MiB)],
    ids=["empty", "one-byte", "many-small-chunks", "multi-mib"],
)
async def test_put_get_roundtrip(store: BlockStore, size: int, chunk: int) -> None:
    data = pattern(size)
    assert await store.put("data/a/obj", chunked(data, chunk)) == size
    assert await read(store, "data/a/obj") == data
    assert await store.stat("data/a/obj") == BlockStat("data/a/obj", size)


async def test_fresh_put_of_a_small_body(store: BlockStore) -> None:
    """A new address of the caller's own is written in place: same result, nothing left over;
    an address that does exist after all is replaced whole."""
    assert await store.put("data/2026112700/new", chunked(b"small body"), fresh=True) == 10
    assert await read(store, "data/2026112700/new") == b"small body"
    assert await store.put("data/2026112700/new", chunked(b"other"), fresh=True) == 5
    assert await read(store, "data/2026112700/new") == b"other"
    assert await listed(store, "data/") == [BlockStat("data/2026112700/new", 5)]
    assert_nothing_left(store)


async def test_put_with_empty_chunks(store: BlockStore) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"", b"ab", b"", b"c", b""):
            yield part

    assert await store.put("x", chunks()) == 3
    assert await read(store, "x") == b"abc"


async def test_get_yields_chunks_of_at_most_a_mib(store: BlockStore) -> None:
    data = pattern(3 * MiB + 1)
    await store.put("big", chunked(data, 256 * 1024))
    chunks = [chunk async for chunk in store.get("big")]
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= MiB for chunk in chunks)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (100, None),
        (100, 200),
        (10230, None),
        (10230, 10240),
        (10230, 99999),
        (0, 1),
        (10239, None),
        (10240, None),
        (20000, None),
        (5, 5),
        (0, 0),
    ],
)
async def test_ranged_get(store: BlockStore, start: int, end: int | None) -> None:
    data = pattern(10240)
    await store.put("r", chunked(data, 1000))
    assert await read(store, "r", start=start, end=end) == data[start:end]


async def test_ranged_get_of_an_empty_object(store: BlockStore) -> None:
    await store.put("empty", chunked(b""))
    assert await read(store, "empty", start=0, end=10) == b""
    assert await read(store, "empty", start=3) == b""


async def test_invalid_ranges(store: BlockStore) -> None:
    await store.put("r", chunked(b"abc"))
    with pytest.raises(InvalidArgument):
        await read(store, "r", start=-1)
    with pytest.raises(InvalidArgument):
        await read(store, "r", start=2, end=1)


@pytest.mark.parametrize(("start", "end"), [(0, None), (3, 10), (0, 0)])
async def test_get_missing_object(store: BlockStore, start: int, end: int | None) -> None:
    with pytest.raises(ObjectNotFound):
        await read(store, "nope/x", start=start, end=end)


async def test_stat_and_delete(store: BlockStore) -> None:
    assert await store.stat("a/b") is None
    await store.put("a/b", chunked(b"hello"))
    assert await store.stat("a/b") == BlockStat("a/b", 5)
    assert await store.stat("a") is None  # a folder, not an object
    await store.delete("a/b")
    assert await store.stat("a/b") is None
    await store.delete("a/b")  # idempotent
    await store.delete("never/there")
    with pytest.raises(ObjectNotFound):
        await read(store, "a/b")


async def test_list_order_and_prefix(store: BlockStore) -> None:
    paths = ["b", "a/2", "a-b", "a/b/c", "ab", "a/1", "a/b/a", "c/d/e/f"]
    for i, path in enumerate(paths):
        await store.put(path, chunked(b"x" * i))
    sizes = {path: i for i, path in enumerate(paths)}

    def expect(prefix: str) -> list[BlockStat]:
        return [BlockStat(p, sizes[p]) for p in sorted(paths) if p.startswith(prefix)]

    for prefix in ("", "a", "a/", "a/b", "a/b/", "ab", "c/d/", "zz", "a/b/c/x"):
        assert await listed(store, prefix) == expect(prefix), prefix


async def test_list_empty_store(store: BlockStore) -> None:
    assert await listed(store) == []


@pytest.mark.parametrize("good", [0, 2 * MiB, 7 * MiB], ids=["at-once", "small", "multipart"])
async def test_failed_put_leaves_nothing(store: BlockStore, good: int) -> None:
    with pytest.raises(Boom):
        await store.put("d/failed", failing(good))
    assert await store.stat("d/failed") is None
    assert await listed(store) == []
    assert_nothing_left(store)


@pytest.mark.parametrize("before", [MiB, 6 * MiB], ids=["small", "multipart"])
async def test_cancelled_put_leaves_nothing(store: BlockStore, before: int) -> None:
    sent = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        for i in range(0, before, MiB):
            yield pattern(MiB, i)
        sent.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(store.put("d/cancelled", stalled()))
    await asyncio.wait_for(sent.wait(), 30)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.stat("d/cancelled") is None
    assert await listed(store) == []
    assert_nothing_left(store)


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "a/../b", "", "a\\b", "a\x00b"])
async def test_malformed_paths_are_rejected(store: BlockStore, path: str) -> None:
    with pytest.raises(InvalidArgument):
        await store.put(path, chunked(b"x"))
    with pytest.raises(InvalidArgument):
        await read(store, path)
    with pytest.raises(InvalidArgument):
        await store.stat(path)
    with pytest.raises(InvalidArgument):
        await store.create_multipart(path)
    assert await listed(store) == []


# -- multipart -------------------------------------------------------------------------

PART_1 = pattern(5 * MiB, 1)  # S3 wants every part but the last to be at least 5 MiB
PART_2 = pattern(5 * MiB, 2)
PART_3 = pattern(1000, 3)


async def upload_three(store: BlockStore, path: str) -> str:
    upload_id = await store.create_multipart(path)
    for number, data in ((3, PART_3), (1, PART_1), (2, PART_2)):
        info = await store.put_part(path, upload_id, number, chunked(data, 300 * 1024))
        assert info == PartInfo(number, len(data))
    return upload_id


async def test_multipart_out_of_order_parts(store: BlockStore) -> None:
    upload_id = await upload_three(store, "mp/obj")
    assert await store.stat("mp/obj") is None  # nothing visible before completion
    size = await store.complete_multipart("mp/obj", upload_id, [1, 2, 3])
    assert size == len(PART_1) + len(PART_2) + len(PART_3)
    assert await read(store, "mp/obj") == PART_1 + PART_2 + PART_3
    assert await listed(store) == [BlockStat("mp/obj", size)]
    with pytest.raises(UploadNotFound):  # a completed upload is gone
        await store.complete_multipart("mp/obj", upload_id, [1, 2, 3])
    assert_nothing_left(store)


async def test_multipart_chosen_parts(store: BlockStore) -> None:
    upload_id = await upload_three(store, "mp/obj")
    assert await store.complete_multipart("mp/obj", upload_id, [2, 3]) == len(PART_2 + PART_3)
    assert await read(store, "mp/obj", start=len(PART_2) - 2) == PART_2[-2:] + PART_3


async def test_multipart_part_replaced(store: BlockStore) -> None:
    upload_id = await store.create_multipart("mp/obj")
    await store.put_part("mp/obj", upload_id, 1, chunked(b"first"))
    await store.put_part("mp/obj", upload_id, 1, chunked(b"second"))
    assert await store.complete_multipart("mp/obj", upload_id, [1]) == 6
    assert await read(store, "mp/obj") == b"second"


async def test_multipart_bad_part_lists(store: BlockStore) -> None:
    upload_id = await upload_three(store, "mp/obj")
    for parts in ([1, 4], [2, 1], [1, 1], [], [0], [10001]):
        with pytest.raises(InvalidArgument):
            await store.complete_multipart("mp/obj", upload_id, parts)
    with pytest.raises(InvalidArgument):
        await store.put_part("mp/obj", upload_id, 0, chunked(b"x"))
    # The upload survives a rejected completion.
    assert await store.complete_multipart("mp/obj", upload_id, [1, 3]) == len(PART_1 + PART_3)


async def test_multipart_abort(store: BlockStore) -> None:
    upload_id = await upload_three(store, "mp/obj")
    await store.abort_multipart("mp/obj", upload_id)
    await store.abort_multipart("mp/obj", upload_id)  # aborting twice is fine
    with pytest.raises(UploadNotFound):
        await store.complete_multipart("mp/obj", upload_id, [1, 2, 3])
    if checks_upload_on_put_part(store):
        with pytest.raises(UploadNotFound):
            await store.put_part("mp/obj", upload_id, 1, chunked(b"x"))
    assert await store.stat("mp/obj") is None
    assert await listed(store) == []
    assert_nothing_left(store)


@pytest.mark.parametrize("upload_id", ["0" * 32, "nope", "../../x"])
async def test_multipart_unknown_upload(store: BlockStore, upload_id: str) -> None:
    if checks_upload_on_put_part(store):
        with pytest.raises(UploadNotFound):
            await store.put_part("mp/obj", upload_id, 1, chunked(b"x"))
    with pytest.raises(UploadNotFound):
        await store.complete_multipart("mp/obj", upload_id, [1])
    await store.abort_multipart("mp/obj", upload_id)


async def test_multipart_upload_of_another_path(store: BlockStore) -> None:
    if not checks_upload_on_put_part(store):
        pytest.skip("moto does not compare an upload's key")
    upload_id = await store.create_multipart("mp/one")
    with pytest.raises(UploadNotFound):
        await store.put_part("mp/other", upload_id, 1, chunked(b"x"))
    await store.abort_multipart("mp/one", upload_id)


async def test_local_path(store: BlockStore) -> None:
    await store.put("a/b", chunked(b"abc"))
    path = store.local_path("a/b")
    if isinstance(store, S3BlockStore):
        assert path is None
    else:
        assert path is not None and os.path.isabs(path)
        assert await asyncio.to_thread(Path(path).read_bytes) == b"abc"


# -- S3 only ---------------------------------------------------------------------------


@pytest.mark.s3
async def test_s3_large_put_goes_multipart(
    s3_settings: S3Settings, s3_bucket: str, s3_admin: Any
) -> None:
    data = pattern(12 * MiB)
    async with S3BlockStore(
        s3_bucket, "p", s3_settings, multipart_threshold=5 * MiB, part_size=5 * MiB
    ) as store:
        assert await store.put("big", chunked(data)) == len(data)
        assert await store.put("small", chunked(data[: 4 * MiB])) == 4 * MiB
        assert await read(store, "big") == data
        assert (
            await read(store, "big", start=5 * MiB - 3, end=5 * MiB + 3)
            == data[5 * MiB - 3 : 5 * MiB + 3]
        )
    assert s3_admin.head_object(Bucket=s3_bucket, Key="p/big")["ETag"].endswith('-3"')
    assert "-" not in s3_admin.head_object(Bucket=s3_bucket, Key="p/small")["ETag"]


@pytest.mark.s3
async def test_s3_keys_live_under_the_prefix(
    s3_settings: S3Settings, s3_bucket: str, s3_admin: Any
) -> None:
    client = s3_admin
    client.put_object(Bucket=s3_bucket, Key="elsewhere", Body=b"x")
    client.put_object(Bucket=s3_bucket, Key="repo/folder/", Body=b"")  # a folder marker
    async with S3BlockStore(s3_bucket, "repo/", s3_settings) as store:
        assert store.namespace == f"s3://{s3_bucket}/repo"
        await store.put("a/b", chunked(b"abc"))
        assert await listed(store) == [BlockStat("a/b", 3)]
    assert client.get_object(Bucket=s3_bucket, Key="repo/a/b")["Body"].read() == b"abc"


@pytest.mark.s3
async def test_s3_errors_are_storage_errors_without_secrets(s3_endpoint: str) -> None:
    secret = "do-not-leak-this-secret-0123456789"
    settings = S3Settings(s3_endpoint, "us-east-1", "AKIDEXAMPLE", secret)
    assert secret not in repr(settings)
    async with S3BlockStore("no-such-bucket-here", "", settings, max_attempts=1) as store:
        with pytest.raises(StorageError) as caught:
            await store.put("x", chunked(b"x"))
    assert "NoSuchBucket" in str(caught.value)
    assert secret not in str(caught.value)


# -- local only ------------------------------------------------------------------------


ESCAPES = [
    "../x",
    "/etc/passwd",
    "a/../../b",
    "a//b",
    "a\\b",
    "\x00",
    "a/\x00/b",
    ".",
    "./a",
    ".tmp/x",
    ".uploads/x",
    "link/planted",
    "file-link",
]


def all_files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*") if not p.is_dir() or p.is_symlink()}


@pytest.fixture
def escape_setup(tmp_path: Path) -> tuple[LocalBlockStore, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "data" / "ns"
    root.mkdir(parents=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "secret")
    return LocalBlockStore(root, "local://ns"), outside


@pytest.mark.parametrize("path", ESCAPES)
async def test_local_paths_never_escape_the_root(
    escape_setup: tuple[LocalBlockStore, Path], tmp_path: Path, path: str
) -> None:
    store, outside = escape_setup
    before = all_files(tmp_path)
    with pytest.raises(InvalidArgument):
        await store.put(path, chunked(b"planted"))
    with pytest.raises(InvalidArgument):
        await store.put(path, chunked(b"planted"), fresh=True)
    with pytest.raises(InvalidArgument):
        await read(store, path)
    with pytest.raises(InvalidArgument):
        await store.stat(path)
    with pytest.raises(InvalidArgument):
        await store.delete(path)
    with pytest.raises(InvalidArgument):
        await store.create_multipart(path)
    with pytest.raises(InvalidArgument):
        store.local_path(path)
    assert (outside / "secret").read_bytes() == b"secret"
    assert all_files(tmp_path) - before <= {"data/ns/.tmp"}  # at most the empty temp folder


async def test_local_list_does_not_follow_symlinks(
    escape_setup: tuple[LocalBlockStore, Path],
) -> None:
    store, _ = escape_setup
    await store.put("real", chunked(b"r"))
    assert await listed(store) == [BlockStat("real", 1)]
    with pytest.raises(InvalidArgument):
        await listed(store, "link/")
    for prefix in ("../", "/etc/", "a//", "a\\b"):
        with pytest.raises(InvalidArgument):
            await listed(store, prefix)


async def test_local_list_hides_temporary_and_upload_files(tmp_path: Path) -> None:
    store = LocalBlockStore(tmp_path / "ns", "local://ns")
    await store.put("obj", chunked(b"o"))
    upload_id = await store.create_multipart("later")
    await store.put_part("later", upload_id, 1, chunked(b"part"))
    (store.root / ".tmp" / "put-stray").write_bytes(b"stray")
    assert await listed(store) == [BlockStat("obj", 1)]
    assert await listed(store, ".") == []
    assert (store.root / ".uploads" / upload_id / "1").read_bytes() == b"part"


async def test_local_put_over_a_folder_is_rejected(tmp_path: Path) -> None:
    store = LocalBlockStore(tmp_path / "ns", "local://ns")
    await store.put("a/b", chunked(b"x"))
    with pytest.raises(InvalidArgument):
        await store.put("a", chunked(b"y"))
    with pytest.raises(InvalidArgument):
        await store.put("a/b/c", chunked(b"y"))
    for path in ("a", "a/b/c"):
        with pytest.raises(InvalidArgument):
            await store.put(path, chunked(b"y"), fresh=True)
    assert await listed(store) == [BlockStat("a/b", 1)]
    assert list((store.root / ".tmp").iterdir()) == []


# -- namespaces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "parsed"),
    [
        ("local://repo", ("local", "repo")),
        ("local://team/a.b_c-D", ("local", "team/a.b_c-D")),
        ("s3://my-bucket", ("s3", "my-bucket")),
        ("s3://my.bucket.01/", ("s3", "my.bucket.01")),
        ("s3://my-bucket/some/prefix/", ("s3", "my-bucket/some/prefix")),
    ],
)
def test_parse_namespace(namespace: str, parsed: tuple[str, str]) -> None:
    assert parse_namespace(namespace) == parsed


BAD_NAMESPACES: Iterable[str] = [
    "local://../x",
    "local://a/../../b",
    "local://",
    "local:///abs",
    "local://a//b",
    "local://a b",
    "local://.",
    "local://a\\b",
    "s3://Bad_Bucket",
    "s3://ab",
    "s3://-bucket",
    "s3://bucket-",
    "s3://a..b",
    "s3://192.168.1.1",
    "s3://xn--bucket",
    "s3://b-s3alias",
    "s3://bucket//x",
    "s3://bucket/../x",
    "s3://bucket/a\x00",
    "ftp://x",
    "x",
    "s3:/bucket",
]


@pytest.mark.parametrize("namespace", BAD_NAMESPACES)
async def test_bad_namespaces(tmp_path: Path, namespace: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_namespace(namespace)
    with pytest.raises(InvalidArgument):
        await open_block_store(namespace, local_root=tmp_path)


async def test_open_local_block_store(tmp_path: Path) -> None:
    store = await open_block_store("local://team/repo", local_root=tmp_path)
    assert isinstance(store, LocalBlockStore)
    assert store.namespace == "local://team/repo"
    assert store.root == tmp_path / "team" / "repo"
    await store.put("x", chunked(b"x"))
    assert (tmp_path / "team" / "repo" / "x").read_bytes() == b"x"
    await store.close()


async def test_open_local_block_store_through_an_escaping_symlink(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "evil").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(InvalidArgument, match="outside"):
        await open_block_store("local://evil", local_root=tmp_path / "data")


@pytest.mark.s3
async def test_open_s3_block_store(s3_settings: S3Settings, s3_bucket: str) -> None:
    store = await open_block_store(
        f"s3://{s3_bucket}/a/b", local_root=Path("/nonexistent"), s3=s3_settings
    )
    assert isinstance(store, S3BlockStore)
    assert store.namespace == f"s3://{s3_bucket}/a/b"
    await store.put("x", chunked(b"x"))
    assert await listed(store) == [BlockStat("x", 1)]
    await store.close()


# -- multipart parts with an announced size (written in place by the local store) ------


async def upload_sized(store: BlockStore, path: str, parts: Iterable[tuple[int, bytes]]) -> str:
    upload_id = await store.create_multipart(path)
    for number, data in parts:
        info = await store.put_part(
            path, upload_id, number, chunked(data, 300 * 1024), size=len(data)
        )
        assert info == PartInfo(number, len(data))
    return upload_id


def upload_folder(store: BlockStore, upload_id: str) -> Path | None:
    return store.root / ".uploads" / upload_id if isinstance(store, LocalBlockStore) else None


async def test_multipart_sized_parts_complete_without_a_copy(store: BlockStore) -> None:
    upload_id = await upload_sized(store, "mp/obj", [(3, PART_3), (1, PART_1), (2, PART_2)])
    folder = upload_folder(store, upload_id)
    if folder is not None:
        # Parts 1 and 2 went straight into the object being assembled. Part 3 came first,
        # too small to tell the parts' size: it is a file, appended on completion.
        assert sorted(p.name for p in folder.iterdir()) == [
            "1.in", "2.in", "3", "assembly", "stride", "target"]
        assembly_inode = (folder / "assembly").stat().st_ino
    size = await store.complete_multipart("mp/obj", upload_id, [1, 2, 3])
    assert size == len(PART_1 + PART_2 + PART_3)
    assert await read(store, "mp/obj") == PART_1 + PART_2 + PART_3
    if folder is not None:
        assert (store.root / "mp" / "obj").stat().st_ino == assembly_inode  # renamed, not copied
        assert not folder.exists()
    assert_nothing_left(store)


async def test_multipart_sized_parts_chosen_and_replaced(store: BlockStore) -> None:
    upload_id = await upload_sized(store, "mp/obj", [(1, PART_1), (2, PART_2), (3, PART_3)])
    newer = pattern(5 * MiB, 9)
    await store.put_part("mp/obj", upload_id, 2, chunked(newer), size=len(newer))
    # Part 2's new version cannot overwrite the old one in place (an upload that fails midway
    # must leave the old one whole): it is joined from a file of its own.
    assert await store.complete_multipart("mp/obj", upload_id, [1, 2]) == len(PART_1 + newer)
    assert await read(store, "mp/obj") == PART_1 + newer

    upload_id = await upload_sized(store, "mp/other", [(1, PART_1), (2, PART_2), (3, PART_3)])
    assert await store.complete_multipart("mp/other", upload_id, [1, 3]) == len(PART_1 + PART_3)
    assert await read(store, "mp/other") == PART_1 + PART_3
    assert_nothing_left(store)


async def test_multipart_sized_parts_of_uneven_sizes(store: BlockStore) -> None:
    small, big = pattern(6 * MiB, 4), pattern(7 * MiB, 5)
    upload_id = await upload_sized(
        store, "mp/obj", [(2, small), (1, PART_1), (3, big), (4, PART_3)]
    )
    size = await store.complete_multipart("mp/obj", upload_id, [1, 2, 3, 4])
    assert size == len(PART_1 + small + big + PART_3)
    assert await read(store, "mp/obj") == PART_1 + small + big + PART_3


@pytest.mark.parametrize("delta", [-1, 1], ids=["short", "long"])
async def test_multipart_sized_part_of_another_length_fails(
    store: BlockStore, delta: int
) -> None:
    upload_id = await upload_sized(store, "mp/obj", [(1, PART_1), (2, PART_2)])
    with pytest.raises(InvalidArgument):
        await store.put_part("mp/obj", upload_id, 3, chunked(PART_2), size=len(PART_2) + delta)
    with pytest.raises(InvalidArgument):  # the failed part was not stored
        await store.complete_multipart("mp/obj", upload_id, [1, 2, 3])
    with pytest.raises(InvalidArgument):  # nor does a failed new version replace the old one
        await store.put_part("mp/obj", upload_id, 2, chunked(PART_1), size=len(PART_1) + delta)
    assert await store.complete_multipart("mp/obj", upload_id, [1, 2]) == len(PART_1 + PART_2)
    assert await read(store, "mp/obj") == PART_1 + PART_2


async def paused(data: bytes, started: asyncio.Event,
                 release: asyncio.Event) -> AsyncIterator[bytes]:
    """The first MiB of `data`, then (once `release` is set) the rest."""
    yield data[:MiB]
    started.set()
    await release.wait()
    yield data[MiB:]


async def test_multipart_part_in_flight_during_completion(store: BlockStore) -> None:
    """A part still being written when the others are completed never lands in the object."""
    upload_id = await upload_sized(store, "mp/obj", [(1, PART_1), (2, PART_3)])
    started, release = asyncio.Event(), asyncio.Event()
    late = asyncio.create_task(
        store.put_part("mp/obj", upload_id, 3, paused(PART_2, started, release), size=len(PART_2))
    )
    await started.wait()
    assert await store.complete_multipart("mp/obj", upload_id, [1, 2]) == len(PART_1 + PART_3)
    release.set()
    with contextlib.suppress(UploadNotFound, StorageError):
        await late
    assert await read(store, "mp/obj") == PART_1 + PART_3
    assert await listed(store) == [BlockStat("mp/obj", len(PART_1 + PART_3))]


async def test_multipart_sized_part_aborted_midway(store: BlockStore) -> None:
    upload_id = await upload_sized(store, "mp/obj", [(1, PART_1)])
    started, release = asyncio.Event(), asyncio.Event()
    late = asyncio.create_task(
        store.put_part("mp/obj", upload_id, 2, paused(PART_2, started, release), size=len(PART_2))
    )
    await started.wait()
    await store.abort_multipart("mp/obj", upload_id)
    release.set()
    if checks_upload_on_put_part(store):
        with pytest.raises(UploadNotFound):
            await late
    else:
        with contextlib.suppress(UploadNotFound, StorageError):
            await late
    assert await listed(store) == []
    assert_nothing_left(store)


async def test_local_completion_interrupted_before_cleanup_can_be_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the object is in place but before the upload folder is removed: the
    client's retry of the completion gets the same object."""
    store = LocalBlockStore(tmp_path / "ns", "local://ns")
    upload_id = await upload_sized(store, "mp/obj", [(1, PART_1), (2, PART_2), (3, PART_3)])
    import lakeproxy.blockstore.local as local

    with monkeypatch.context() as m:
        m.setattr(local.shutil, "rmtree", lambda *a, **k: None)
        await store.complete_multipart("mp/obj", upload_id, [1, 2, 3])
    assert (store.root / ".uploads" / upload_id).exists()
    assert await store.complete_multipart("mp/obj", upload_id, [1, 2, 3]) == len(
        PART_1 + PART_2 + PART_3
    )
    assert await read(store, "mp/obj") == PART_1 + PART_2 + PART_3
    assert_nothing_left(store)
