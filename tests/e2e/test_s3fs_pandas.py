"""s3fs and pandas (through fsspec) against a real `lake serve`."""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd
import pyarrow  # noqa: F401
import pytest
import s3fs

from tests.server import Server


@pytest.fixture(scope="module")
def options(server: Server) -> dict[str, Any]:
    return {
        "key": server.access_key,
        "secret": server.secret_key,
        "client_kwargs": {"endpoint_url": server.endpoint, "region_name": "us-east-1"},
    }


@pytest.fixture
def fs(options: dict[str, Any]) -> Any:
    # skip_instance_cache: a fresh filesystem per test, so no listing cache leaks between them
    return s3fs.S3FileSystem(skip_instance_cache=True, **options)


@pytest.fixture
def repo(s3: Any) -> str:
    name = f"pd-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def frame() -> Any:
    return pd.DataFrame({
        "id": list(range(1000)),
        "name": [f"name-{i} ü" for i in range(1000)],
        "value": [i * 0.5 for i in range(1000)],
        "flag": [i % 3 == 0 for i in range(1000)],
    })


def test_parquet_round_trip(repo: str, options: dict[str, Any]) -> None:
    df = frame()
    url = f"s3://{repo}/main/tables/data.parquet"
    df.to_parquet(url, storage_options=options, index=False)
    back = pd.read_parquet(url, storage_options=options)
    pd.testing.assert_frame_equal(back, df)
    # column projection reads ranges of the file
    ids = pd.read_parquet(url, storage_options=options, columns=["id"])
    pd.testing.assert_frame_equal(ids, df[["id"]])


def test_csv_round_trip(repo: str, options: dict[str, Any]) -> None:
    df = frame()
    url = f"s3://{repo}/main/tables/data.csv"
    df.to_csv(url, storage_options=options, index=False)
    back = pd.read_csv(url, storage_options=options)
    pd.testing.assert_frame_equal(back, df)


def test_large_csv_goes_multipart(repo: str, options: dict[str, Any], fs: Any) -> None:
    rows = 400_000
    df = pd.DataFrame({"id": range(rows), "text": ["x" * 20] * rows})
    url = f"s3://{repo}/main/big/data.csv"
    with fs.open(url, "w", block_size=5 * 1024 * 1024) as out:
        df.to_csv(out, index=False)
    info = fs.info(url)
    assert info["size"] > 10 * 1024 * 1024
    assert info["ETag"].strip('"').endswith(("-2", "-3"))
    back = pd.read_csv(url, storage_options=options)
    pd.testing.assert_frame_equal(back, df)


def test_ls_find_rm(repo: str, fs: Any) -> None:
    files = {
        f"{repo}/main/d/a.txt": b"a",
        f"{repo}/main/d/sub/b.txt": b"bb",
        f"{repo}/main/d/sub/c.txt": b"ccc",
        f"{repo}/main/e.txt": b"eeee",
    }
    for path, data in files.items():
        fs.pipe(path, data)
    assert fs.cat(f"{repo}/main/d/sub/c.txt") == b"ccc"
    assert sorted(fs.ls(f"{repo}/main/d", detail=False)) == [
        f"{repo}/main/d/a.txt", f"{repo}/main/d/sub"]
    detail = {e["name"]: e for e in fs.ls(f"{repo}/main/d/sub", detail=True)}
    assert {n: e["size"] for n, e in detail.items()} == {
        f"{repo}/main/d/sub/b.txt": 2, f"{repo}/main/d/sub/c.txt": 3}
    assert fs.isdir(f"{repo}/main/d") and fs.isfile(f"{repo}/main/e.txt")
    assert fs.exists(f"{repo}/main/d/a.txt") and not fs.exists(f"{repo}/main/nope")
    assert sorted(fs.find(f"{repo}/main")) == sorted(files)
    assert fs.glob(f"{repo}/main/d/sub/*.txt") == [
        f"{repo}/main/d/sub/b.txt", f"{repo}/main/d/sub/c.txt"]
    fs.copy(f"{repo}/main/e.txt", f"{repo}/main/copied.txt")
    assert fs.cat(f"{repo}/main/copied.txt") == b"eeee"
    fs.rm(f"{repo}/main/d", recursive=True)
    fs.invalidate_cache()
    assert sorted(fs.find(f"{repo}/main")) == [f"{repo}/main/copied.txt", f"{repo}/main/e.txt"]
    fs.rm(f"{repo}/main/e.txt")
    fs.invalidate_cache()
    assert fs.find(f"{repo}/main") == [f"{repo}/main/copied.txt"]
