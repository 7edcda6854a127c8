"""The aws CLI (awscli v1, run as a subprocess) against a real `lake serve`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import awscli  # noqa: F401  (the aws command comes from this package)
import pytest

from tests.server import Server

Aws = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def aws(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    """Run `aws ARGS... --endpoint-url ENDPOINT` with only the test credentials in effect."""
    home = tmp_path_factory.mktemp("awscli-home")
    config, credentials = home / "config", home / "credentials"
    config.write_text("")
    credentials.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        HOME=str(home),
    )

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "awscli", *args, "--endpoint-url", server.endpoint],
            env=env, capture_output=True, text=True, timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"aws {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    yield run


@pytest.fixture
def repo(s3: Any) -> str:
    name = f"cli-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def listing(aws: Aws, url: str) -> dict[str, int]:
    """key (relative to url) -> size, from `aws s3 ls --recursive`."""
    out = aws("s3", "ls", "--recursive", url, check=False)
    sizes: dict[str, int] = {}
    for line in out.stdout.splitlines():
        # 2026-11-26 16:37:00       1234 main/dir/file.txt
        parts = line.split(None, 3)
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[2])
    return sizes


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "sub/b.csv": b"x,y\n1,2\n",
        "sub/deeper/c.bin": bytes(range(256)) * 10,
        "with space.txt": b"spaced",
        "plus+amp&.txt": b"odd",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_cp_file_and_directory(aws: Aws, repo: str, tmp_path: Path, s3: Any) -> None:
    single = tmp_path / "one.txt"
    single.write_bytes(b"one file\n")
    aws("s3", "cp", str(single), f"s3://{repo}/main/one.txt")
    assert s3.get_object(Bucket=repo, Key="main/one.txt")["Body"].read() == b"one file\n"

    tree = tmp_path / "tree"
    files = make_tree(tree)
    aws("s3", "cp", "--recursive", str(tree), f"s3://{repo}/main/tree/")
    sizes = listing(aws, f"s3://{repo}/main/tree/")
    assert sizes == {f"main/tree/{rel}": len(data) for rel, data in files.items()}

    back = tmp_path / "back"
    aws("s3", "cp", "--recursive", f"s3://{repo}/main/tree/", str(back))
    for rel, data in files.items():
        assert (back / rel).read_bytes() == data
    down = tmp_path / "one-back.txt"
    aws("s3", "cp", f"s3://{repo}/main/one.txt", str(down))
    assert down.read_bytes() == b"one file\n"


def test_sync_twice_uploads_nothing_the_second_time(aws: Aws, repo: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    files = make_tree(tree)
    first = aws("s3", "sync", str(tree), f"s3://{repo}/main/synced")
    assert first.stdout.count("upload:") == len(files)
    second = aws("s3", "sync", str(tree), f"s3://{repo}/main/synced")
    assert second.stdout.strip() == ""
    assert second.stderr.strip() == ""
    # a changed file is the only one uploaded again
    (tree / "a.txt").write_bytes(b"alpha changed and longer\n")
    third = aws("s3", "sync", str(tree), f"s3://{repo}/main/synced")
    assert third.stdout.count("upload:") == 1 and "a.txt" in third.stdout
    # and syncing down into an empty directory fetches everything, then nothing
    down = tmp_path / "down"
    fetched = aws("s3", "sync", f"s3://{repo}/main/synced", str(down))
    assert fetched.stdout.count("download:") == len(files)
    again = aws("s3", "sync", f"s3://{repo}/main/synced", str(down))
    assert again.stdout.strip() == ""


def test_ls_recursive_lists_keys_and_sizes(aws: Aws, repo: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    files = make_tree(tree)
    aws("s3", "cp", "--recursive", str(tree), f"s3://{repo}/main/ls/")
    sizes = listing(aws, f"s3://{repo}/main/ls/")
    assert sizes == {f"main/ls/{rel}": len(data) for rel, data in files.items()}
    # the non-recursive listing shows the first level: files and PRE lines
    top = aws("s3", "ls", f"s3://{repo}/main/ls/").stdout
    assert "PRE sub/" in top
    assert "a.txt" in top and "b.csv" not in top
    buckets = aws("s3", "ls").stdout
    assert repo in buckets


def test_rm_recursive_empties_the_prefix(aws: Aws, repo: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    files = make_tree(tree)
    aws("s3", "cp", "--recursive", str(tree), f"s3://{repo}/main/gone/")
    aws("s3", "cp", str(tree / "a.txt"), f"s3://{repo}/main/kept.txt")
    removed = aws("s3", "rm", "--recursive", f"s3://{repo}/main/gone/")
    assert removed.stdout.count("delete:") == len(files)
    assert listing(aws, f"s3://{repo}/main/gone/") == {}
    assert listing(aws, f"s3://{repo}/main/") == {"main/kept.txt": len(files["a.txt"])}


def test_multipart_round_trip(aws: Aws, repo: str, tmp_path: Path, s3: Any) -> None:
    size = 8 * 1024 * 1024 * 2 + 12345  # > 8 MiB: multipart with 8 MiB parts (3 parts)
    block = hashlib.sha256(b"cli").digest() * 2048
    data = (block * (size // len(block) + 1))[:size]
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    aws("s3", "cp", str(src), f"s3://{repo}/main/big/big.bin")
    head = s3.head_object(Bucket=repo, Key="main/big/big.bin")
    assert head["ContentLength"] == size
    assert head["ETag"].endswith('-3"')
    assert listing(aws, f"s3://{repo}/main/big/") == {"main/big/big.bin": size}
    dst = tmp_path / "big-back.bin"
    aws("s3", "cp", f"s3://{repo}/main/big/big.bin", str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert s3.list_multipart_uploads(Bucket=repo).get("Uploads", []) == []
