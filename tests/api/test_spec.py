"""`lakefs-spec` (fsspec) against a running lakeproxy."""

from __future__ import annotations

import hashlib

import pytest
from lakefs_spec import LakeFSFileSystem

from tests.api.conftest import Api
from tests.server import Server


@pytest.fixture
def fs(server: Server) -> LakeFSFileSystem:
    return LakeFSFileSystem(host=server.endpoint, username=server.access_key,
                            password=server.secret_key, skip_instance_cache=True)


def test_write_read_ls_info_rm(fs: LakeFSFileSystem, repo: str) -> None:
    base = f"{repo}/main"
    with fs.open(f"{base}/dir/a.txt", "wb") as f:
        f.write(b"alpha")
    fs.pipe(f"{base}/dir/sub/b.txt", b"beta")
    with fs.open(f"{base}/dir/a.txt", "rb") as f:
        assert f.read() == b"alpha"
    assert fs.cat(f"{base}/dir/sub/b.txt") == b"beta"
    names = sorted(fs.ls(f"{base}/dir", detail=False))
    assert names == [f"{base}/dir/a.txt", f"{base}/dir/sub/"]
    info = fs.info(f"{base}/dir/a.txt")
    assert info["size"] == 5 and info["type"] == "file"
    assert fs.info(f"{base}/dir/sub")["type"] == "directory"
    assert fs.exists(f"{base}/")
    fs.cp_file(f"{base}/dir/a.txt", f"{base}/copy.txt")
    assert fs.cat(f"{base}/copy.txt") == b"alpha"
    fs.rm(f"{base}/dir", recursive=True)
    assert not fs.exists(f"{base}/dir/a.txt")
    assert fs.ls(f"{base}/", detail=False) == [f"{base}/copy.txt"]


def test_put_and_get_file(fs: LakeFSFileSystem, repo: str, tmp_path) -> None:
    local = tmp_path / "in.bin"
    local.write_bytes(b"payload" * 1000)
    fs.put_file(str(local), f"{repo}/main/in.bin")
    assert fs.info(f"{repo}/main/in.bin")["checksum"] == hashlib.md5(
        local.read_bytes()).hexdigest()
    out = tmp_path / "out.bin"
    fs.get_file(f"{repo}/main/in.bin", str(out))
    assert out.read_bytes() == local.read_bytes()
    fs.put_file(str(local), f"{repo}/main/in.bin")  # identical: skipped by the precheck


def test_write_to_new_branch(fs: LakeFSFileSystem, repo: str) -> None:
    fs.pipe(f"{repo}/feature/x.txt", b"x")  # creates `feature` from main
    fs.pipe(f"{repo}/feature/y.txt", b"y")  # the branch exists: 409 is taken as success
    assert sorted(fs.ls(f"{repo}/feature/", detail=False)) == [
        f"{repo}/feature/x.txt", f"{repo}/feature/y.txt"]


def test_transaction_commits_and_merges(fs: LakeFSFileSystem, repo: str, api: Api) -> None:
    with fs.transaction(repo, base_branch="main") as tx:
        fs.pipe(f"{repo}/{tx.branch.id}/t.txt", b"in tx")
        tx.commit(message="from a transaction")
    assert fs.cat(f"{repo}/main/t.txt") == b"in tx"
    listed = api("GET", f"/repositories/{repo}/branches", params={"show_hidden": "true"})
    assert [b["id"] for b in listed.json()["results"]] == ["main"]
    log = api("GET", f"/repositories/{repo}/refs/main/commits").json()["results"]
    assert len(log[0]["parents"]) == 2 and log[1]["message"] == "from a transaction"
