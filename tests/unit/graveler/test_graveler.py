"""The Graveler facade on every metadata store: refs, objects, commits, diff, merge."""

from __future__ import annotations

import pytest

from lakeproxy import errors
from lakeproxy.graveler import DiffType, Graveler, MergeStrategy, RefKind
from lakeproxy.graveler.refs import Partitions
from tests.conftest import body, keys, put, read


async def test_repository_lifecycle(graveler: Graveler) -> None:
    repo = await graveler.create_repository("data-lake")
    assert repo.default_branch == "main"
    assert repo.storage_namespace == "local://data-lake"
    assert [r.name for r in await graveler.list_repositories()] == ["data-lake"]
    commits, more = await graveler.log("data-lake", "main")
    assert [c.message for c in commits] == ["Repository created"] and not more
    with pytest.raises(errors.RepositoryExists):
        await graveler.create_repository("data-lake")
    with pytest.raises(errors.RepositoryExists, match="already used"):
        await graveler.create_repository("other", "local://data-lake")
    await graveler.delete_repository("data-lake")
    with pytest.raises(errors.RepositoryNotFound):
        await graveler.get_repository("data-lake")
    assert await graveler.list_repositories() == []
    await graveler.create_repository("data-lake")
    assert await keys(graveler, "data-lake", "main") == []


async def test_put_get_list_delete(graveler: Graveler, repo: str) -> None:
    entry = await graveler.put_object(
        repo, "main", "a/b.csv", body(b"he", b"llo"), content_type="text/csv",
        metadata={"owner": "ml"},
    )
    assert entry.size == 5 and entry.etag == "5d41402abc4b2a76b9719d911017c592"
    got = await graveler.get_entry(repo, "main", "a/b.csv")
    assert got == entry and got.content_type == "text/csv" and got.metadata == {"owner": "ml"}
    assert await read(graveler, repo, "main", "a/b.csv") == b"hello"
    await put(graveler, repo, "main", "a/c/d.txt")
    await put(graveler, repo, "main", "z.txt")
    page = await graveler.list_entries(repo, "main", delimiter="/")
    assert [k for k, _ in page.entries] == ["z.txt"] and page.common_prefixes == ["a/"]
    page = await graveler.list_entries(repo, "main", prefix="a/", delimiter="/")
    assert [k for k, _ in page.entries] == ["a/b.csv"] and page.common_prefixes == ["a/c/"]
    await graveler.delete_entry(repo, "main", "a/b.csv")
    with pytest.raises(errors.ObjectNotFound):
        await graveler.get_entry(repo, "main", "a/b.csv")
    with pytest.raises(errors.ObjectNotFound):
        await graveler.delete_entry(repo, "main", "a/b.csv")
    assert await keys(graveler, repo, "main") == ["a/c/d.txt", "z.txt"]


async def test_list_pagination_over_prefixes_and_keys(graveler: Graveler, repo: str) -> None:
    for name in ["a/1", "a/2", "b", "c/1", "d", "e/x/1"]:
        await put(graveler, repo, "main", name)
    await graveler.commit(repo, "main", "some")
    await put(graveler, repo, "main", "c/2")
    seen: list[str] = []
    after = ""
    while True:
        page = await graveler.list_entries(repo, "main", delimiter="/", after=after, limit=2)
        seen += [k for k, _ in page.entries] + page.common_prefixes
        if not page.has_more:
            break
        assert page.next_after is not None
        after = page.next_after
    assert sorted(seen) == ["a/", "b", "c/", "d", "e/"]
    assert len(seen) == 5


async def test_commit_log_and_metadata(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "k1")
    c1 = await graveler.commit(repo, "main", "first", metadata={"lr": "0.1"}, committer="ann")
    await put(graveler, repo, "main", "k2")
    c2 = await graveler.commit(repo, "main", "second")
    assert c2.parents == (c1.id,) and c2.generation == c1.generation + 1
    assert (await graveler.get_commit(repo, c1.id[:10])).metadata == {"lr": "0.1"}
    page, more = await graveler.log(repo, "main", limit=2)
    assert [c.id for c in page] == [c2.id, c1.id] and more
    rest, more = await graveler.log(repo, "main", after=c1.id)
    assert len(rest) == 1 and not more
    first, _ = await graveler.log(repo, "main", first_parent=True, after=c2.id, limit=1)
    assert [c.id for c in first] == [c1.id]
    with pytest.raises(errors.NoChanges):
        await graveler.commit(repo, "main", "empty")
    empty = await graveler.commit(repo, "main", "empty", allow_empty=True)
    assert empty.metarange_id == c2.metarange_id


async def test_identical_reupload_is_no_change(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "k", b"same")
    await graveler.commit(repo, "main", "c")
    await put(graveler, repo, "main", "k", b"same")
    assert (await graveler.diff_uncommitted(repo, "main"))[0] == []
    with pytest.raises(errors.NoChanges):
        await graveler.commit(repo, "main", "again")
    assert (await graveler.diff_uncommitted(repo, "main"))[0] == []


async def test_ref_expressions(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "a")
    c1 = await graveler.commit(repo, "main", "c1")
    await graveler.create_branch(repo, "dev", "main")
    await put(graveler, repo, "dev", "b")
    c2 = await graveler.commit(repo, "dev", "c2")
    await put(graveler, repo, "main", "c")
    c3 = await graveler.commit(repo, "main", "c3")
    merge = await graveler.merge(repo, "dev", "main")
    await graveler.create_tag(repo, "v1.0", "main")
    await put(graveler, repo, "main", "staged")

    async def commit_of(expr: str) -> str:
        return (await graveler.resolve_ref(repo, expr)).commit_id

    assert await commit_of("main") == merge.id
    assert await commit_of("main~1") == c3.id
    assert await commit_of("main~2") == c1.id
    assert await commit_of("main^2") == c2.id
    assert await commit_of("main^1~1") == c1.id
    assert await commit_of("v1.0") == merge.id
    assert await commit_of(c2.id[:8]) == c2.id
    assert (await graveler.resolve_ref(repo, "v1.0")).kind is RefKind.TAG
    main_at = await graveler.resolve_ref(repo, "main@")
    assert main_at.commit_id == merge.id and not main_at.include_staging
    assert await keys(graveler, repo, "main") == ["a", "b", "c", "staged"]
    assert await keys(graveler, repo, "main@") == ["a", "b", "c"]
    assert await keys(graveler, repo, "main~1") == ["a", "c"]
    for bad in ["nope", "main~9", "main^3", "deadbeefdeadbeef", "v1.0@"]:
        with pytest.raises((errors.NotFound, errors.InvalidArgument)):
            await graveler.resolve_ref(repo, bad)


async def test_branch_zero_copy_and_isolation(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "shared", b"v1")
    await graveler.commit(repo, "main", "c1")
    await graveler.create_branch(repo, "exp", "main")
    await put(graveler, repo, "exp", "shared", b"v2")
    await put(graveler, repo, "main", "main-only")
    assert await read(graveler, repo, "main", "shared") == b"v1"
    assert await read(graveler, repo, "exp", "shared") == b"v2"
    assert await keys(graveler, repo, "exp") == ["shared"]
    with pytest.raises(errors.BranchExists):
        await graveler.create_branch(repo, "exp", "main")
    names = [b.name for b in await graveler.list_branches(repo)]
    assert names == ["exp", "main"]
    await graveler.delete_branch(repo, "exp")
    with pytest.raises(errors.RefNotFound):
        await graveler.get_entry(repo, "exp", "shared")
    with pytest.raises(errors.InvalidArgument, match="default branch"):
        await graveler.delete_branch(repo, "main")


async def test_writes_to_tags_and_commits_are_refused(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "k")
    commit = await graveler.commit(repo, "main", "c")
    await graveler.create_tag(repo, "v1", "main")
    expected = {"v1": "'v1' is a tag, which is read-only",
                commit.id: "is a commit, which is read-only",
                "main@": "'main@' names a fixed commit",
                "main~1": "'main~1' is a commit, which is read-only"}
    await put(graveler, repo, "main", "k1")
    await graveler.commit(repo, "main", "c2")
    for ref, message in expected.items():
        with pytest.raises(errors.ReadOnlyRef, match=message):
            await graveler.put_object(repo, ref, "k2", body(b"x"))
    with pytest.raises(errors.TagExists):
        await graveler.create_tag(repo, "v1", "main")
    assert (await graveler.get_tag(repo, "v1")).commit_id == commit.id
    await graveler.delete_tag(repo, "v1")
    with pytest.raises(errors.TagNotFound):
        await graveler.get_tag(repo, "v1")


async def test_protected_branch_changes_only_by_merge(graveler: Graveler, repo: str) -> None:
    await graveler.create_branch(repo, "dev", "main")
    await graveler.set_branch_protection(repo, "main", True)
    with pytest.raises(errors.ProtectedBranch):
        await put(graveler, repo, "main", "k")
    with pytest.raises(errors.ProtectedBranch):
        await graveler.commit(repo, "main", "c", allow_empty=True)
    await put(graveler, repo, "dev", "k")
    await graveler.commit(repo, "dev", "c")
    await graveler.merge(repo, "dev", "main")
    assert await keys(graveler, repo, "main") == ["k"]
    await graveler.set_branch_protection(repo, "main", False)
    await put(graveler, repo, "main", "k2")


async def test_diff_between_refs_and_uncommitted(graveler: Graveler, repo: str) -> None:
    for k in ["keep", "change", "remove"]:
        await put(graveler, repo, "main", k, k.encode())
    await graveler.commit(repo, "main", "base")
    await graveler.create_branch(repo, "dev", "main")
    await put(graveler, repo, "dev", "change", b"new")
    await graveler.delete_entry(repo, "dev", "remove")
    await put(graveler, repo, "dev", "add")
    staged, _ = await graveler.diff_uncommitted(repo, "dev")
    assert [(c.key, c.type) for c in staged] == [
        ("add", DiffType.ADDED), ("change", DiffType.CHANGED), ("remove", DiffType.REMOVED)
    ]
    assert (await graveler.diff(repo, "main", "dev"))[0] == []
    await graveler.commit(repo, "dev", "work")
    changes, _ = await graveler.diff(repo, "main", "dev")
    assert [(c.key, c.type) for c in changes] == [
        ("add", DiffType.ADDED), ("change", DiffType.CHANGED), ("remove", DiffType.REMOVED)
    ]
    page, more = await graveler.diff(repo, "main", "dev", limit=2)
    assert len(page) == 2 and more
    page, more = await graveler.diff(repo, "main", "dev", after="change")
    assert [c.key for c in page] == ["remove"] and not more
    reverse, _ = await graveler.diff(repo, "dev", "main")
    assert [c.type for c in reverse] == [DiffType.REMOVED, DiffType.CHANGED, DiffType.ADDED]


async def test_merge_strategies_and_conflicts(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "both", b"base")
    await put(graveler, repo, "main", "gone", b"base")
    await graveler.commit(repo, "main", "base")
    await graveler.create_branch(repo, "dev", "main")
    await put(graveler, repo, "dev", "both", b"dev")
    await graveler.delete_entry(repo, "dev", "gone")
    await put(graveler, repo, "dev", "dev-only", b"d")
    await graveler.commit(repo, "dev", "dev work")
    await put(graveler, repo, "main", "both", b"main")
    await put(graveler, repo, "main", "gone", b"main")
    await put(graveler, repo, "main", "main-only", b"m")
    with pytest.raises(errors.UncommittedChanges):
        await graveler.merge(repo, "dev", "main")
    await graveler.commit(repo, "main", "main work")
    with pytest.raises(errors.MergeConflict) as conflict:
        await graveler.merge(repo, "dev", "main")
    assert conflict.value.conflicts == ["both", "gone"]
    before = await graveler.get_branch(repo, "main")
    assert before.head == (await graveler.get_commit(repo, "main")).id

    await graveler.create_branch(repo, "main2", "main")
    merged = await graveler.merge(repo, "dev", "main", strategy=MergeStrategy.SOURCE_WINS)
    assert len(merged.parents) == 2 and merged.parents[0] == before.head
    assert await read(graveler, repo, "main", "both") == b"dev"
    assert await keys(graveler, repo, "main") == ["both", "dev-only", "main-only"]
    await graveler.merge(repo, "dev", "main2", strategy=MergeStrategy.DEST_WINS)
    assert await read(graveler, repo, "main2", "both") == b"main"
    assert await keys(graveler, repo, "main2") == ["both", "dev-only", "gone", "main-only"]
    with pytest.raises(errors.NoChanges):
        await graveler.merge(repo, "dev", "main")
    with pytest.raises(errors.InvalidArgument, match="into itself"):
        await graveler.merge(repo, "main", "main")


async def test_same_change_on_both_sides_is_no_conflict(graveler: Graveler, repo: str) -> None:
    await graveler.create_branch(repo, "dev", "main")
    await put(graveler, repo, "dev", "k", b"same")
    await graveler.commit(repo, "dev", "d")
    await put(graveler, repo, "main", "k", b"same")
    await graveler.commit(repo, "main", "m")
    await graveler.merge(repo, "dev", "main")
    assert await read(graveler, repo, "main", "k") == b"same"


async def test_fast_forward(graveler: Graveler, repo: str) -> None:
    await graveler.create_branch(repo, "dev", "main")
    await put(graveler, repo, "dev", "k")
    tip = await graveler.commit(repo, "dev", "d")
    result = await graveler.merge(repo, "dev", "main", fast_forward=True)
    assert result.id == tip.id
    assert (await graveler.get_branch(repo, "main")).head == tip.id


async def test_revert_and_cherry_pick(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "a", b"1")
    await graveler.commit(repo, "main", "c1")
    await put(graveler, repo, "main", "a", b"2")
    await put(graveler, repo, "main", "b", b"2")
    c2 = await graveler.commit(repo, "main", "c2")
    other = await graveler.create_branch(repo, "other", "main~1")
    reverted = await graveler.revert(repo, "main", c2.id)
    assert reverted.message == f"Revert {c2.id}"
    assert await keys(graveler, repo, "main") == ["a"]
    assert await read(graveler, repo, "main", "a") == b"1"
    picked = await graveler.cherry_pick(repo, "other", c2.id)
    assert picked.message == "c2" and picked.parents == (other.head,)
    assert await read(graveler, repo, "other", "b") == b"2"
    assert await read(graveler, repo, "other", "a") == b"2"
    with pytest.raises(errors.NoChanges):
        await graveler.cherry_pick(repo, "other", c2.id)
    await put(graveler, repo, "other", "a", b"3")
    with pytest.raises(errors.UncommittedChanges):
        await graveler.revert(repo, "other", picked.id)
    await graveler.commit(repo, "other", "c3")
    with pytest.raises(errors.MergeConflict) as conflict:
        await graveler.revert(repo, "other", picked.id)
    assert conflict.value.conflicts == ["a"]


async def test_revert_merge_commit_needs_parent(graveler: Graveler, repo: str) -> None:
    await graveler.create_branch(repo, "dev", "main")
    await put(graveler, repo, "dev", "x")
    await graveler.commit(repo, "dev", "d")
    await put(graveler, repo, "main", "y")
    await graveler.commit(repo, "main", "m")
    merge = await graveler.merge(repo, "dev", "main")
    with pytest.raises(errors.InvalidArgument, match="parent"):
        await graveler.revert(repo, "main", merge.id)
    await graveler.revert(repo, "main", merge.id, parent_number=1)
    assert await keys(graveler, repo, "main") == ["y"]


async def test_reset(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "keep", b"committed")
    await graveler.commit(repo, "main", "c")
    await put(graveler, repo, "main", "keep", b"changed")
    await put(graveler, repo, "main", "dir/a")
    await put(graveler, repo, "main", "dir/b")
    await put(graveler, repo, "main", "top")
    await graveler.reset(repo, "main", key="keep")
    assert await read(graveler, repo, "main", "keep") == b"committed"
    await graveler.reset(repo, "main", prefix="dir/")
    assert await keys(graveler, repo, "main") == ["keep", "top"]
    await graveler.reset(repo, "main")
    assert await keys(graveler, repo, "main") == ["keep"]
    assert (await graveler.diff_uncommitted(repo, "main"))[0] == []


async def test_delete_of_committed_key_uses_tombstone(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "k")
    await graveler.commit(repo, "main", "c")
    await graveler.delete_entry(repo, "main", "k")
    assert await keys(graveler, repo, "main") == []
    assert await keys(graveler, repo, "main@") == ["k"]
    await graveler.commit(repo, "main", "delete")
    assert await keys(graveler, repo, "main~1") == ["k"]


async def test_conditional_writes(graveler: Graveler, repo: str) -> None:
    entry = await graveler.put_object(repo, "main", "k", body(b"v1"), if_none_match=True)
    with pytest.raises(errors.PreconditionFailed):
        await graveler.put_object(repo, "main", "k", body(b"v2"), if_none_match=True)
    with pytest.raises(errors.PreconditionFailed):
        await graveler.put_object(repo, "main", "k", body(b"v2"), if_match="0" * 32)
    await graveler.put_object(repo, "main", "k", body(b"v2"), if_match=f'"{entry.etag}"')
    assert await read(graveler, repo, "main", "k") == b"v2"


async def test_copy_entry_shares_the_physical_object(graveler: Graveler, repo: str) -> None:
    src = await graveler.put_object(repo, "main", "src", body(b"data"), metadata={"a": "1"})
    await graveler.create_branch(repo, "dev", "main")
    copied = await graveler.copy_entry(repo, "main", "src", "dev", "dst")
    assert copied.address == src.address and copied.metadata == {"a": "1"}
    replaced = await graveler.copy_entry(repo, "main", "src", "dev", "dst2", metadata={"b": "2"})
    assert replaced.metadata == {"b": "2"}
    assert await read(graveler, repo, "dev", "dst") == b"data"


async def test_upload_verification_leaves_nothing(graveler: Graveler, repo: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="announced"):
        await graveler.put_object(repo, "main", "k", body(b"abc"), expected_size=4)
    with pytest.raises(errors.InvalidArgument, match="MD5"):
        await graveler.put_object(repo, "main", "k", body(b"abc"), expected_md5=b"0" * 16)

    async def broken():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await graveler.put_object(repo, "main", "k", broken())
    assert await keys(graveler, repo, "main") == []
    blocks = await graveler.blocks.get("local://repo1")
    assert [s async for s in blocks.list()] == []


async def test_hidden_marks_go_with_their_branch(graveler: Graveler, repo: str) -> None:
    await graveler.create_branch(repo, "tx-1", "main")
    await graveler.create_branch(repo, "tx-2", "main")
    await graveler.set_branch_hidden(repo, "tx-1", True)
    await graveler.set_branch_hidden(repo, "tx-2", True)
    await graveler.set_branch_hidden(repo, "tx-2", False)
    assert await graveler.hidden_branches(repo) == {"tx-1"}
    with pytest.raises(errors.BranchNotFound):
        await graveler.set_branch_hidden(repo, "nope", True)
    await graveler.delete_branch(repo, "tx-1")
    await graveler.create_branch(repo, "tx-1", "main")
    assert await graveler.hidden_branches(repo) == set()
    await graveler.set_branch_hidden(repo, "tx-1", True)
    await graveler.delete_repository(repo)
    await graveler.create_repository(repo)
    assert await graveler.hidden_branches(repo) == set()


async def test_settle_waits_for_the_cleanup_a_commit_left_behind(
    graveler: Graveler, repo: str
) -> None:
    for i in range(50):
        await put(graveler, repo, "main", f"k/{i:03d}")
    await graveler.commit(repo, "main", "fifty")
    await graveler.settle()
    parts = Partitions.of(await graveler.get_repository(repo))
    # The committed token's rows and its record in the dropped list are gone, not pending.
    assert [k async for k, _ in graveler.store.scan(parts.staging)] == []
    assert [k async for k, _ in graveler.store.scan(parts.dropped)] == []
    assert len(await keys(graveler, repo, "main")) == 50
