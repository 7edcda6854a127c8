"""pyarrow's S3FileSystem (the AWS C++ SDK) against a real `lake serve`.

pyarrow sends every UploadPart as aws-chunked `STREAMING-UNSIGNED-PAYLOAD-TRAILER` with an
`x-amz-checksum-crc64nvme` trailer even over plain http, and writes directory markers (empty
objects whose key ends in `/`).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.server import Server


@pytest.fixture(scope="module")
def fs(server: Server) -> Any:
    return pafs.S3FileSystem(
        access_key=server.access_key, secret_key=server.secret_key,
        endpoint_override=urlparse(server.endpoint).netloc, scheme="http",
        region="us-east-1", connect_timeout=5, request_timeout=30,
    )


@pytest.fixture
def repo(s3: Any) -> str:
    name = f"pa-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def table(rows: int = 3000) -> Any:
    return pa.table({
        "year": [2024 + i % 3 for i in range(rows)],
        "country": [("fr", "de", "us")[i % 3 * 7 % 3] for i in range(rows)],
        "id": list(range(rows)),
        "value": [float(i) / 7 for i in range(rows)],
    })


def test_partitioned_dataset_round_trip(fs: Any, repo: str, s3: Any) -> None:
    data = table()
    base = f"{repo}/main/dataset"
    partitioning = ds.partitioning(pa.schema([("year", pa.int64())]), flavor="hive")
    ds.write_dataset(data, base, filesystem=fs, format="parquet", partitioning=partitioning,
                     existing_data_behavior="overwrite_or_ignore")
    selector = pafs.FileSelector(base, recursive=False)
    dirs = sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.Directory)
    assert dirs == [f"{base}/year={y}" for y in (2024, 2025, 2026)]
    files = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))
             if i.type == pafs.FileType.File]
    assert files and all(f.path.endswith(".parquet") for f in files)
    assert {f.path.split("/")[-2] for f in files} == {"year=2024", "year=2025", "year=2026"}

    back = ds.dataset(base, filesystem=fs, format="parquet", partitioning="hive").to_table()
    assert back.num_rows == data.num_rows
    assert back.sort_by("id").select(data.column_names).cast(data.schema).equals(
        data.sort_by("id"))
    # a filtered read touches one partition only
    only = ds.dataset(base, filesystem=fs, format="parquet", partitioning="hive").to_table(
        filter=ds.field("year") == 2025)
    assert only.num_rows == sum(1 for i in range(3000) if i % 3 == 1)
    # the keys the gateway holds: parquet files, maybe directory markers ending in '/'
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=repo, Prefix="main/dataset/")
            .get("Contents", [])]
    assert all(k.endswith((".parquet", "/")) for k in keys)
    assert sum(k.endswith(".parquet") for k in keys) == len(files)


def test_create_dir_writes_a_marker(fs: Any, repo: str, s3: Any) -> None:
    fs.create_dir(f"{repo}/main/empty/inner")
    info = fs.get_file_info(f"{repo}/main/empty/inner")
    assert info.type == pafs.FileType.Directory
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=repo, Prefix="main/empty/")
            .get("Contents", [])]
    assert "main/empty/inner/" in keys
    fs.delete_dir(f"{repo}/main/empty")
    assert fs.get_file_info(f"{repo}/main/empty/inner").type == pafs.FileType.NotFound


def test_multipart_parquet_file_and_streams(fs: Any, repo: str, s3: Any) -> None:
    big = pa.table({"id": list(range(1_500_000)),
                    "v": [i * 3 for i in range(1_500_000)]})
    path = f"{repo}/main/big/file.parquet"
    pq.write_table(big, path, filesystem=fs, compression="none")
    size = fs.get_file_info(path).size
    assert size > 5 * 1024 * 1024
    assert pq.read_table(path, filesystem=fs).equals(big)
    # written by multipart upload (aws-chunked parts with a crc64nvme trailer)
    assert "-" in s3.head_object(Bucket=repo, Key="main/big/file.parquet")["ETag"]
    raw = bytes(range(256)) * (7 * 4096 + 3)  # ~7 MiB: more than one part
    with fs.open_output_stream(f"{repo}/main/big/raw.bin") as out:
        out.write(raw)
    with fs.open_input_file(f"{repo}/main/big/raw.bin") as f:
        assert f.size() == len(raw)
        assert f.read_at(100, 1000) == raw[1000:1100]
        assert f.read() == raw
    fs.copy_file(f"{repo}/main/big/raw.bin", f"{repo}/main/big/copy.bin")
    fs.move(f"{repo}/main/big/copy.bin", f"{repo}/main/big/moved.bin")
    with fs.open_input_stream(f"{repo}/main/big/moved.bin") as f:
        assert f.read() == raw
    assert fs.get_file_info(f"{repo}/main/big/copy.bin").type == pafs.FileType.NotFound
