"""Every `lake` command against a real `lake serve`, human and --json output, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cli.conftest import Lake


def put(lake: Lake, tmp_path: Path, uri: str, data: bytes) -> dict[str, object]:
    local = tmp_path / f"upload-{os.urandom(4).hex()}"
    local.write_bytes(data)
    [stats] = lake.json("upload", str(local), uri)
    return stats


def cat(lake: Lake, uri: str) -> bytes:
    return lake.ok("cat", uri).stdout_bytes


def test_repositories(lake: Lake) -> None:
    name = f"cli-repo-{os.urandom(4).hex()}"
    created = lake.json("repo", "create", f"lake://{name}")
    assert created["id"] == name and created["default_branch"] == "main"
    assert created["storage_namespace"]  # the server picked its default
    assert name in [r["id"] for r in lake.json("repo", "list")]
    assert name in lake.ok("repo", "list").stdout
    assert lake.json("repo", "list", "--prefix", name) == [
        r for r in lake.json("repo", "list") if r["id"].startswith(name)]
    result = lake.fails(1, "repo", "create", f"lake://{name}")
    assert "hint:" in result.stderr
    lake.fails(1, "repo", "delete", f"lake://{name}", input="n\n")
    assert name in [r["id"] for r in lake.json("repo", "list")]
    assert lake.json("repo", "delete", f"lake://{name}", "--yes") == {"id": name, "deleted": True}
    assert name not in [r["id"] for r in lake.json("repo", "list")]
    missing = lake.fails(1, "branch", "list", f"lake://{name}")
    assert "lake repo list" in missing.stderr  # the next step for a 404


def test_repository_with_namespace_and_default_branch(lake: Lake, tmp_path: Path) -> None:
    name = f"cli-ns-{os.urandom(4).hex()}"
    created = lake.json("repo", "create", f"lake://{name}", "--storage-namespace",
                        f"local://{name}-elsewhere", "--default-branch", "trunk")
    assert created["default_branch"] == "trunk"
    assert created["storage_namespace"] == f"local://{name}-elsewhere"
    assert [b["id"] for b in lake.json("branch", "list", f"lake://{name}")] == ["trunk"]
    lake.ok("repo", "delete", f"lake://{name}", "-y")


def test_branches_create_list_show_delete(lake: Lake, repo: str) -> None:
    made = lake.json("branch", "create", f"lake://{repo}/dev", "--source", f"lake://{repo}/main")
    main = lake.json("branch", "show", f"lake://{repo}/main")
    assert made["commit_id"] == main["commit_id"]
    assert "created from dev" in lake.ok(
        "branch", "create", f"lake://{repo}/dev2", "-s", f"lake://{repo}/dev").stdout
    assert [b["id"] for b in lake.json("branch", "list", f"lake://{repo}")] == \
        ["dev", "dev2", "main"]
    assert "dev2" in lake.ok("branch", "list", f"lake://{repo}").stdout
    lake.fails(1, "branch", "create", f"lake://{repo}/dev", "-s", f"lake://{repo}/main")
    lake.fails(1, "branch", "create", f"lake://{repo}/x", "-s", f"lake://{repo}/nope")
    lake.ok("branch", "delete", f"lake://{repo}/dev2", "--yes")
    assert [b["id"] for b in lake.json("branch", "list", f"lake://{repo}")] == ["dev", "main"]
    lake.fails(1, "branch", "delete", f"lake://{repo}/dev2", "--yes")


def test_protect_and_unprotect(lake: Lake, repo: str, tmp_path: Path) -> None:
    assert lake.json("branch", "protect", f"lake://{repo}/main") == \
        {"id": "main", "protected": True}
    local = tmp_path / "f"
    local.write_bytes(b"x")
    refused = lake.fails(1, "upload", str(local), f"lake://{repo}/main/f")
    assert "protected" in refused.stderr and "lake branch unprotect" in refused.stderr
    lake.ok("branch", "unprotect", f"lake://{repo}/main")
    lake.ok("upload", str(local), f"lake://{repo}/main/f")


def test_commit_log_and_metadata(lake: Lake, repo: str, tmp_path: Path) -> None:
    put(lake, tmp_path, f"lake://{repo}/main/a.txt", b"a")
    c = lake.json("commit", f"lake://{repo}/main", "-m", "add a", "--meta", "run=7",
                  "--meta", "lr=0.1")
    assert c["message"] == "add a" and c["metadata"] == {"run": "7", "lr": "0.1"}
    nothing = lake.fails(1, "commit", f"lake://{repo}/main", "-m", "nothing")
    assert "error:" in nothing.stderr
    empty = lake.json("commit", f"lake://{repo}/main", "-m", "empty", "--allow-empty")
    assert empty["parents"] == [c["id"]]
    log = lake.json("log", f"lake://{repo}/main")
    assert [x["message"] for x in log] == ["empty", "add a", "Repository created"]
    assert [x["id"] for x in lake.json("log", f"lake://{repo}/main", "-n", "2")] == \
        [empty["id"], c["id"]]
    human = lake.ok("log", f"lake://{repo}/main", "-n", "2").stdout
    assert c["id"] in human and "run = 7" in human and "Repository created" not in human
    # log of a tag and of an ancestor expression
    assert lake.json("log", f"lake://{repo}/main~1", "-n", "1")[0]["id"] == c["id"]


def test_diff_uncommitted_and_between_refs(lake: Lake, repo: str, tmp_path: Path) -> None:
    put(lake, tmp_path, f"lake://{repo}/main/keep.txt", b"k")
    put(lake, tmp_path, f"lake://{repo}/main/old.txt", b"o")
    lake.ok("commit", f"lake://{repo}/main", "-m", "base")
    lake.ok("branch", "create", f"lake://{repo}/dev", "-s", f"lake://{repo}/main")
    put(lake, tmp_path, f"lake://{repo}/dev/new.txt", b"n")
    put(lake, tmp_path, f"lake://{repo}/dev/keep.txt", b"changed")
    lake.ok("rm", f"lake://{repo}/dev/old.txt")
    changes = {d["path"]: d["type"] for d in lake.json("diff", f"lake://{repo}/dev")}
    assert changes == {"new.txt": "added", "keep.txt": "changed", "old.txt": "removed"}
    human = lake.ok("diff", f"lake://{repo}/dev").stdout
    assert "+ added    new.txt" in human and "- removed  old.txt" in human
    lake.ok("commit", f"lake://{repo}/dev", "-m", "edit")
    assert lake.json("diff", f"lake://{repo}/dev") == []
    between = {d["path"]: d["type"]
               for d in lake.json("diff", f"lake://{repo}/main", f"lake://{repo}/dev")}
    assert between == changes
    two_way = lake.json("diff", f"lake://{repo}/main", f"lake://{repo}/dev", "--two-way")
    assert {d["path"] for d in two_way} == set(changes)
    assert "no changes" in lake.ok("diff", f"lake://{repo}/main", f"lake://{repo}/main").output


def test_merge_conflict_lists_every_key_then_strategies(lake: Lake, repo: str,
                                                         tmp_path: Path) -> None:
    for key in ("c1", "c2", "dir/c3", "same"):
        put(lake, tmp_path, f"lake://{repo}/main/{key}", b"base")
    lake.ok("commit", f"lake://{repo}/main", "-m", "base")
    lake.ok("branch", "create", f"lake://{repo}/dev", "-s", f"lake://{repo}/main")
    for key in ("c1", "c2", "dir/c3"):
        put(lake, tmp_path, f"lake://{repo}/dev/{key}", b"dev")
        put(lake, tmp_path, f"lake://{repo}/main/{key}", b"main")
    put(lake, tmp_path, f"lake://{repo}/dev/only-dev", b"dev")
    lake.ok("commit", f"lake://{repo}/dev", "-m", "dev side")
    lake.ok("commit", f"lake://{repo}/main", "-m", "main side")
    head = lake.json("branch", "show", f"lake://{repo}/main")["commit_id"]
    failed = lake.fails(1, "merge", f"lake://{repo}/dev", f"lake://{repo}/main")
    listed = [line.strip() for line in failed.stderr.splitlines() if line.startswith("  ")]
    assert sorted(listed) == ["c1", "c2", "dir/c3"]
    assert "--strategy" in failed.stderr
    as_json = json.loads(lake.fails(1, "merge", f"lake://{repo}/dev", f"lake://{repo}/main",
                                    "--json").stdout)
    assert as_json["status"] == 409 and sorted(as_json["details"]) == ["c1", "c2", "dir/c3"]
    assert lake.json("branch", "show", f"lake://{repo}/main")["commit_id"] == head
    merged = lake.json("merge", f"lake://{repo}/dev", f"lake://{repo}/main",
                       "--strategy", "dest-wins", "-m", "keep main", "--meta", "why=test")
    assert cat(lake, f"lake://{repo}/main/c1") == b"main"
    assert cat(lake, f"lake://{repo}/main/only-dev") == b"dev"
    top = lake.json("log", f"lake://{repo}/main", "-n", "1")[0]
    assert top["id"] == merged["reference"] and top["message"] == "keep main"
    assert len(top["parents"]) == 2 and top["metadata"].get("why") == "test"
    put(lake, tmp_path, f"lake://{repo}/dev/c1", b"dev again")
    lake.ok("commit", f"lake://{repo}/dev", "-m", "dev again")
    put(lake, tmp_path, f"lake://{repo}/main/c1", b"main again")
    lake.ok("commit", f"lake://{repo}/main", "-m", "main again")
    out = lake.ok("merge", f"lake://{repo}/dev", f"lake://{repo}/main", "--strategy",
                  "source-wins").stdout
    assert "Merged dev into main" in out
    assert cat(lake, f"lake://{repo}/main/c1") == b"dev again"


def test_cherry_pick_and_revert(lake: Lake, repo: str, tmp_path: Path) -> None:
    lake.ok("branch", "create", f"lake://{repo}/dev", "-s", f"lake://{repo}/main")
    put(lake, tmp_path, f"lake://{repo}/dev/picked.txt", b"p")
    picked = lake.json("commit", f"lake://{repo}/dev", "-m", "to pick")
    c = lake.json("cherry-pick", f"lake://{repo}/{picked['id']}", f"lake://{repo}/main")
    assert c["id"] != picked["id"]
    assert cat(lake, f"lake://{repo}/main/picked.txt") == b"p"
    head = lake.json("branch", "revert", f"lake://{repo}/main", c["id"], "--yes")
    assert head["id"] != c["id"]
    lake.fails(1, "cat", f"lake://{repo}/main/picked.txt")
    assert cat(lake, f"lake://{repo}/dev/picked.txt") == b"p"


def test_reset_all_object_and_prefix(lake: Lake, repo: str, tmp_path: Path) -> None:
    for key in ("a", "d/b", "d/c", "e"):
        put(lake, tmp_path, f"lake://{repo}/main/{key}", b"x")

    def pending() -> set[str]:
        return {d["path"] for d in lake.json("diff", f"lake://{repo}/main")}

    lake.ok("branch", "reset", f"lake://{repo}/main/a", "--yes")
    assert pending() == {"d/b", "d/c", "e"}
    lake.ok("branch", "reset", f"lake://{repo}/main/d/", "--prefix", "--yes")
    assert pending() == {"e"}
    lake.fails(1, "branch", "reset", f"lake://{repo}/main", input="n\n")
    assert pending() == {"e"}
    lake.ok("branch", "reset", f"lake://{repo}/main", input="y\n")
    assert pending() == set()


def test_tags(lake: Lake, repo: str, tmp_path: Path) -> None:
    put(lake, tmp_path, f"lake://{repo}/main/t.txt", b"v1")
    c = lake.json("commit", f"lake://{repo}/main", "-m", "v1")
    tag = lake.json("tag", "create", f"lake://{repo}/v1.0", f"lake://{repo}/main")
    assert tag == {"id": "v1.0", "commit_id": c["id"]}
    put(lake, tmp_path, f"lake://{repo}/main/t.txt", b"v2")
    lake.ok("commit", f"lake://{repo}/main", "-m", "v2")
    assert cat(lake, f"lake://{repo}/v1.0/t.txt") == b"v1"
    assert lake.json("tag", "list", f"lake://{repo}") == [tag]
    assert "v1.0" in lake.ok("tag", "list", f"lake://{repo}").stdout
    lake.fails(1, "tag", "create", f"lake://{repo}/v1.0", f"lake://{repo}/main")
    lake.ok("tag", "delete", f"lake://{repo}/v1.0", "--yes")
    assert lake.json("tag", "list", f"lake://{repo}") == []


def test_ls_cat_stat_rm(lake: Lake, repo: str, tmp_path: Path) -> None:
    blob = os.urandom(3000) + b"\x00\xff"
    put(lake, tmp_path, f"lake://{repo}/main/top.bin", blob)
    for key in ("dir/a.csv", "dir/sub/b.csv", "dir/sub/c.csv", "other/d.csv"):
        put(lake, tmp_path, f"lake://{repo}/main/{key}", key.encode())
    top = lake.json("ls", f"lake://{repo}/main")
    assert [(x["path"], x["path_type"]) for x in top] == [
        ("dir/", "common_prefix"), ("other/", "common_prefix"), ("top.bin", "object")]
    assert [x["path"] for x in lake.json("ls", f"lake://{repo}/main/dir")] == \
        ["dir/a.csv", "dir/sub/"]
    assert [x["path"] for x in lake.json("ls", f"lake://{repo}/main/dir/", "-r")] == \
        ["dir/a.csv", "dir/sub/b.csv", "dir/sub/c.csv"]
    human = lake.ok("ls", f"lake://{repo}/main").stdout
    assert "folder" in human and "top.bin" in human
    assert cat(lake, f"lake://{repo}/main/top.bin") == blob
    info = lake.json("stat", f"lake://{repo}/main/dir/a.csv")
    assert info["path"] == "dir/a.csv" and info["size_bytes"] == len(b"dir/a.csv")
    assert "dir/a.csv" in lake.ok("stat", f"lake://{repo}/main/dir/a.csv").stdout
    missing = lake.fails(1, "stat", f"lake://{repo}/main/nope")
    assert "hint:" in missing.stderr
    assert lake.json("rm", f"lake://{repo}/main/top.bin") == {"deleted": ["top.bin"]}
    removed = lake.json("rm", f"lake://{repo}/main/dir", "--recursive")
    assert sorted(removed["deleted"]) == ["dir/a.csv", "dir/sub/b.csv", "dir/sub/c.csv"]
    assert [x["path"] for x in lake.json("ls", f"lake://{repo}/main", "-r")] == ["other/d.csv"]
    assert "nothing under" in lake.ok("ls", f"lake://{repo}/main/dir").output


def test_upload_download_tree_round_trips_byte_for_byte(lake: Lake, repo: str,
                                                         tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {
        "big.bin": os.urandom(3 * 1024 * 1024 + 17),  # several upload chunks
        "empty": b"",
        "a/b/c/deep.txt": b"deep\n",
        "a/notes é ü.md": "unicode näme".encode(),
        "a/b/data.csv": b"x,y\n1,2\n",
    }
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    uploaded = lake.json("upload", str(src), f"lake://{repo}/main/tree", "--recursive")
    assert sorted(u["path"] for u in uploaded) == sorted(f"tree/{k}" for k in files)
    lake.ok("commit", f"lake://{repo}/main", "-m", "tree")
    dest = tmp_path / "dest"
    got = lake.json("download", f"lake://{repo}/main/tree/", str(dest), "--recursive",
                    "--parallelism", "3")
    assert len(got) == len(files)
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data, rel
    on_disk = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert on_disk == set(files)
    # single files: into a folder, and to a file name
    lake.ok("download", f"lake://{repo}/main/tree/a/b/data.csv", str(tmp_path) + "/single/")
    assert (tmp_path / "single" / "data.csv").read_bytes() == files["a/b/data.csv"]
    lake.ok("download", f"lake://{repo}/main/tree/big.bin", str(tmp_path / "big.copy"))
    assert (tmp_path / "big.copy").read_bytes() == files["big.bin"]
    human = lake.ok("upload", str(src / "empty"), f"lake://{repo}/main/x/")
    assert "Uploaded 1 file(s)" in human.stdout
    assert cat(lake, f"lake://{repo}/main/x/empty") == b""
    lake.fails(1, "download", f"lake://{repo}/main/nope.bin", str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()


def test_access_keys_with_grants(lake: Lake, repo: str, tmp_path: Path) -> None:
    put(lake, tmp_path, f"lake://{repo}/main/r.txt", b"readable")
    key = lake.json("keys", "create", "--grant", f"{repo}:read", "--description", "reader")
    assert set(key) == {"access_key_id", "secret_access_key"}
    listed = {k["access_key_id"]: k for k in lake.json("keys", "list")}
    assert listed[key["access_key_id"]]["grants"] == {repo: "read"}
    assert "secret_access_key" not in listed[key["access_key_id"]]
    assert key["access_key_id"] in lake.ok("keys", "list").stdout
    reader = {"LAKE_ACCESS_KEY": key["access_key_id"],
              "LAKE_SECRET_KEY": key["secret_access_key"]}
    assert lake.ok("cat", f"lake://{repo}/main/r.txt", env=reader).stdout_bytes == b"readable"
    assert [r["id"] for r in lake.json("repo", "list", env=reader)] == [repo]
    local = tmp_path / "w.txt"
    local.write_bytes(b"w")
    refused = lake.fails(1, "upload", str(local), f"lake://{repo}/main/w.txt", env=reader)
    assert "lake keys create" in refused.stderr
    lake.fails(1, "keys", "list", env=reader)
    admin = lake.json("keys", "create", "--admin", "--grant", f"{repo}:write",
                      "--grant", f"{repo}:admin")
    assert {k["access_key_id"]: k for k in lake.json("keys", "list")}[
        admin["access_key_id"]]["admin"] is True
    lake.ok("keys", "delete", key["access_key_id"], "--yes")
    lake.ok("keys", "delete", admin["access_key_id"], "--yes")
    revoked = lake.fails(1, "repo", "list", env=reader)
    assert "LAKE_ACCESS_KEY" in revoked.stderr and "lake config" in revoked.stderr
    lake.fails(1, "keys", "delete", key["access_key_id"], "--yes")


def test_global_json_flag_and_lakefs_scheme(lake: Lake, repo: str) -> None:
    result = lake.ok("--json", "branch", "list", f"lakefs://{repo}")
    assert [b["id"] for b in json.loads(result.stdout)] == ["main"]
