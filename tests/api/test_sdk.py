"""The generated lakeFS client (`lakefs-sdk`) against a running lakeproxy."""

from __future__ import annotations

import json
import uuid

import lakefs_sdk
import pytest
from lakefs_sdk.client import LakeFSClient
from lakefs_sdk.exceptions import ApiException

from tests.api.conftest import Api, upload


def _status(excinfo: pytest.ExceptionInfo[ApiException]) -> int:
    return int(excinfo.value.status)


def test_config_and_health(sdk: LakeFSClient) -> None:
    sdk.health_check_api.health_check()
    config = sdk.config_api.get_config()
    assert config.storage_config is not None
    assert config.storage_config.pre_sign_support is False
    assert config.storage_config.blockstore_namespace_validity_regex
    assert tuple(int(p) for p in config.version_config.version.split(".")) >= (1, 3, 1)
    assert sdk.auth_api.get_current_user().user.id


def test_repositories(sdk: LakeFSClient) -> None:
    name = "sdk-" + uuid.uuid4().hex[:8]
    created = sdk.repositories_api.create_repository(
        lakefs_sdk.RepositoryCreation(name=name, storage_namespace=f"local://{name}-ns",
                                      default_branch="trunk"))
    assert created.id == name and created.default_branch == "trunk"
    assert created.storage_namespace == f"local://{name}-ns"
    got = sdk.repositories_api.get_repository(name)
    assert got.creation_date == created.creation_date
    listed = sdk.repositories_api.list_repositories(prefix=name)
    assert [r.id for r in listed.results] == [name]
    assert sdk.repositories_api.get_repository_metadata(name) == {}
    # The default branch exists with an initial commit.
    head = sdk.branches_api.get_branch(name, "trunk")
    commit = sdk.commits_api.get_commit(name, head.commit_id)
    assert commit.message == "Repository created" and commit.parents == []
    with pytest.raises(ApiException) as e:
        sdk.repositories_api.create_repository(
            lakefs_sdk.RepositoryCreation(name=name, storage_namespace=f"local://{name}-ns"))
    assert _status(e) == 409
    sdk.repositories_api.delete_repository(name)
    with pytest.raises(ApiException) as e:
        sdk.repositories_api.get_repository(name)
    assert _status(e) == 404


def test_branches_and_hidden(sdk: LakeFSClient, repo: str) -> None:
    b = sdk.branches_api
    main = b.get_branch(repo, "main")
    commit_id = b.create_branch(repo, lakefs_sdk.BranchCreation(name="dev", source="main"))
    assert commit_id == main.commit_id
    b.create_branch(repo, lakefs_sdk.BranchCreation(name="tx-1", source="main", hidden=True))
    names = [r.id for r in b.list_branches(repo).results]
    assert names == ["dev", "main"]
    shown = [r.id for r in b.list_branches(repo, show_hidden=True).results]
    assert shown == ["dev", "main", "tx-1"]
    with pytest.raises(ApiException) as e:
        b.create_branch(repo, lakefs_sdk.BranchCreation(name="dev", source="main"))
    assert _status(e) == 409
    with pytest.raises(ApiException) as e:
        b.create_branch(repo, lakefs_sdk.BranchCreation(name="x", source="nope"))
    assert _status(e) == 404
    with pytest.raises(ApiException) as e:
        b.delete_branch(repo, "main")
    assert _status(e) == 403
    b.delete_branch(repo, "tx-1")
    b.delete_branch(repo, "dev")
    assert [r.id for r in b.list_branches(repo, show_hidden=True).results] == ["main"]
    with pytest.raises(ApiException) as e:
        b.get_branch(repo, "dev")
    assert _status(e) == 404


def test_commit_log_and_get_commit(sdk: LakeFSClient, api: Api, repo: str) -> None:
    ids = []
    for i in range(5):
        upload(api, repo, "main", f"f{i}", b"%d" % i)
        c = sdk.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(
            message=f"c{i}", metadata={"run": str(i)}))
        assert c.metadata == {"run": str(i)} and c.committer
        ids.append(c.id)
    seen, after = [], ""
    for _ in range(10):
        page = sdk.refs_api.log_commits(repo, "main", amount=2, after=after)
        seen += [c.id for c in page.results]
        if not page.pagination.has_more:
            break
        after = page.pagination.next_offset
    assert seen[:5] == ids[::-1] and len(seen) == 6  # plus "Repository created"
    assert sdk.commits_api.get_commit(repo, "main").id == ids[-1]
    assert sdk.commits_api.get_commit(repo, ids[0]).message == "c0"
    only = sdk.refs_api.log_commits(repo, "main", objects=["f1"])
    assert [c.message for c in only.results] == ["c1"]
    with pytest.raises(ApiException) as e:
        sdk.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(message="empty"))
    assert _status(e) == 400
    empty = sdk.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(
        message="empty", allow_empty=True, var_date=1_700_000_000))
    assert empty.creation_date == 1_700_000_000


def _merge_setup(sdk: LakeFSClient, api: Api, repo: str) -> None:
    upload(api, repo, "main", "shared", b"base")
    sdk.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(message="base"))
    sdk.branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="dev", source="main"))
    upload(api, repo, "dev", "shared", b"dev")
    upload(api, repo, "dev", "only-dev", b"d")
    sdk.commits_api.commit(repo, "dev", lakefs_sdk.CommitCreation(message="dev"))
    upload(api, repo, "main", "shared", b"main")
    sdk.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(message="main"))


def _read(sdk: LakeFSClient, repo: str, ref: str, path: str) -> bytes:
    return bytes(sdk.objects_api.get_object(repo, ref, path))


def test_merge_conflict_lists_keys(sdk: LakeFSClient, api: Api, repo: str) -> None:
    _merge_setup(sdk, api, repo)
    before = sdk.branches_api.get_branch(repo, "main").commit_id
    with pytest.raises(ApiException) as e:
        sdk.refs_api.merge_into_branch(repo, "dev", "main")
    assert _status(e) == 409
    body = json.loads(e.value.body)
    assert body["conflicts"] == ["shared"] and "message" in body
    assert sdk.branches_api.get_branch(repo, "main").commit_id == before


@pytest.mark.parametrize(("strategy", "expected"), [("source-wins", b"dev"),
                                                    ("dest-wins", b"main")])
def test_merge_strategies(sdk: LakeFSClient, api: Api, repo: str, strategy: str,
                          expected: bytes) -> None:
    _merge_setup(sdk, api, repo)
    base = sdk.refs_api.find_merge_base(repo, "dev", "main")
    result = sdk.refs_api.merge_into_branch(repo, "dev", "main",
                                            merge=lakefs_sdk.Merge(strategy=strategy,
                                                                   metadata={"k": "v"}))
    merged = sdk.commits_api.get_commit(repo, result.reference)
    assert merged.parents == [base.destination_commit_id, base.source_commit_id]
    assert merged.metadata == {"k": "v"}
    assert _read(sdk, repo, "main", "shared") == expected
    assert _read(sdk, repo, "main", "only-dev") == b"d"
    with pytest.raises(ApiException) as e:  # nothing left to merge
        sdk.refs_api.merge_into_branch(repo, "dev", "main")
    assert _status(e) == 400


def test_bad_merge_strategy(sdk: LakeFSClient, api: Api, repo: str) -> None:
    _merge_setup(sdk, api, repo)
    with pytest.raises(ApiException) as e:
        sdk.refs_api.merge_into_branch(repo, "dev", "main",
                                       merge=lakefs_sdk.Merge(strategy="ours"))
    assert _status(e) == 400


def test_diffs(sdk: LakeFSClient, api: Api, repo: str) -> None:
    sdk.branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="dev", source="main"))
    for path in ("a/1", "a/2", "b/1", "top"):
        upload(api, repo, "dev", path)
    uncommitted = sdk.branches_api.diff_branch(repo, "dev")
    assert [(d.path, d.type) for d in uncommitted.results] == [
        ("a/1", "added"), ("a/2", "added"), ("b/1", "added"), ("top", "added")]
    sdk.commits_api.commit(repo, "dev", lakefs_sdk.CommitCreation(message="m"))
    assert sdk.branches_api.diff_branch(repo, "dev").results == []
    rolled = sdk.refs_api.diff_refs(repo, "main", "dev", delimiter="/")
    assert [(d.path, d.path_type, d.type) for d in rolled.results] == [
        ("a/", "common_prefix", "prefix_changed"), ("b/", "common_prefix", "prefix_changed"),
        ("top", "object", "added")]
    two_dot = sdk.refs_api.diff_refs(repo, "dev", "main", type="two_dot", prefix="a/")
    assert [(d.path, d.type) for d in two_dot.results] == [("a/1", "removed"),
                                                            ("a/2", "removed")]
    with_stats = sdk.refs_api.diff_refs(repo, "main", "dev", include_right_stats=True, amount=1)
    assert with_stats.results[0].right.checksum
    assert with_stats.pagination.has_more and with_stats.pagination.next_offset == "a/1"


def test_tags(sdk: LakeFSClient, repo: str) -> None:
    head = sdk.branches_api.get_branch(repo, "main").commit_id
    tag = sdk.tags_api.create_tag(repo, lakefs_sdk.TagCreation(id="v1.0", ref="main"))
    assert tag.id == "v1.0" and tag.commit_id == head
    assert sdk.tags_api.get_tag(repo, "v1.0").commit_id == head
    assert [t.id for t in sdk.tags_api.list_tags(repo).results] == ["v1.0"]
    with pytest.raises(ApiException) as e:
        sdk.tags_api.create_tag(repo, lakefs_sdk.TagCreation(id="v1.0", ref="main"))
    assert _status(e) == 409
    assert sdk.commits_api.get_commit(repo, "v1.0").id == head
    sdk.tags_api.delete_tag(repo, "v1.0")
    with pytest.raises(ApiException) as e:
        sdk.tags_api.get_tag(repo, "v1.0")
    assert _status(e) == 404


def test_objects(sdk: LakeFSClient, api: Api, repo: str, tmp_path) -> None:
    o = sdk.objects_api
    source = tmp_path / "data.bin"
    source.write_bytes(b"0123456789")
    stats = o.upload_object(repo, "main", "dir/data.bin", content=str(source))
    assert stats.size_bytes == 10 and stats.checksum == "781e5e245d69b566979b86e28d23f2c7"
    assert stats.physical_address.startswith(f"local://{repo}/")
    assert o.stat_object(repo, "main", "dir/data.bin").checksum == stats.checksum
    assert _read(sdk, repo, "main", "dir/data.bin") == b"0123456789"
    assert bytes(o.get_object(repo, "main", "dir/data.bin", range="bytes=2-4")) == b"234"
    with pytest.raises(ApiException) as e:
        o.get_object(repo, "main", "dir/data.bin", range="bytes=10-")
    assert _status(e) == 416 and e.value.headers["Content-Range"] == "bytes */10"
    copied = o.copy_object(repo, "main", "copy.bin",
                           lakefs_sdk.ObjectCopyCreation(src_path="dir/data.bin"))
    assert copied.checksum == stats.checksum
    listing = o.list_objects(repo, "main", delimiter="/")
    assert [(s.path, s.path_type) for s in listing.results] == [
        ("copy.bin", "object"), ("dir/", "common_prefix")]
    errors = o.delete_objects(repo, "main", lakefs_sdk.PathList(paths=["copy.bin", "missing"]))
    assert errors.errors == []
    o.delete_object(repo, "main", "dir/data.bin")
    with pytest.raises(ApiException) as e:
        o.stat_object(repo, "main", "dir/data.bin")
    assert _status(e) == 404
    assert o.list_objects(repo, "main").results == []


def test_upload_conditions_and_metadata(api: Api, repo: str) -> None:
    path = f"/repositories/{repo}/branches/main/objects"
    first = api("POST", path, params={"path": "k"}, data=b"1",
                headers={"If-None-Match": "*", "x-lakefs-meta-Owner": "Ann",
                         "Content-Type": "text/csv"})
    assert first.status_code == 201 and first.json()["metadata"] == {"owner": "Ann"}
    again = api("POST", path, params={"path": "k"}, data=b"2", headers={"If-None-Match": "*"})
    assert again.status_code == 412 and again.json()["message"]
    got = api("GET", f"/repositories/{repo}/refs/main/objects", params={"path": "k"})
    assert got.content == b"1" and got.headers["Content-Type"].startswith("text/csv")
    assert got.headers["ETag"] == f'"{first.json()["checksum"]}"'
    head = api("HEAD", f"/repositories/{repo}/refs/main/objects", params={"path": "nope"})
    assert head.status_code == 404 and head.content == b""


def test_reset_revert_cherry_pick(sdk: LakeFSClient, api: Api, repo: str) -> None:
    b = sdk.branches_api
    upload(api, repo, "main", "keep")
    upload(api, repo, "main", "gone/1")
    b.reset_branch(repo, "main", lakefs_sdk.ResetCreation(type="common_prefix", path="gone/"))
    assert [d.path for d in b.diff_branch(repo, "main").results] == ["keep"]
    b.reset_branch(repo, "main", lakefs_sdk.ResetCreation(type="reset"))
    assert b.diff_branch(repo, "main").results == []
    upload(api, repo, "main", "a", b"a")
    added = sdk.commits_api.commit(repo, "main", lakefs_sdk.CommitCreation(message="add a"))
    b.revert_branch(repo, "main", lakefs_sdk.RevertCreation(ref=added.id, parent_number=0))
    assert sdk.objects_api.list_objects(repo, "main").results == []
    b.create_branch(repo, lakefs_sdk.BranchCreation(name="other", source=added.parents[0]))
    picked = b.cherry_pick(repo, "other", lakefs_sdk.CherryPickCreation(ref=added.id))
    assert picked.message == "add a"
    assert _read(sdk, repo, "other", "a") == b"a"


def test_protection_extension(api: Api, repo: str) -> None:
    base = f"/repositories/{repo}/branches/main"
    assert api("PUT", base + "/protection", json={"protected": True}).status_code == 204
    assert api("GET", base).json()["protected"] is True
    write = api("POST", base + "/objects", params={"path": "x"}, data=b"x")
    assert write.status_code == 403
    assert api("PUT", base + "/protection", json={"protected": False}).status_code == 204
    assert api("GET", base).json()["protected"] is False
