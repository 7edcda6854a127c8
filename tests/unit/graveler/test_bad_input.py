"""Bad input gets a clear error and changes nothing."""

from __future__ import annotations

import pytest

from lakeproxy import errors
from lakeproxy.graveler import Graveler
from tests.conftest import body, keys, put


async def snapshot(g: Graveler, repo: str) -> tuple[object, ...]:
    branches = [(b.name, b.head, b.protected) for b in await g.list_branches(repo)]
    tags = [(t.name, t.commit_id) for t in await g.list_tags(repo)]
    return branches, tags, await keys(g, repo, "main"), [r.name for r in
                                                          await g.list_repositories()]


@pytest.mark.parametrize(
    "name",
    ["", "ab", "A-repo", "repo_1", "-repo", "repo-", "a" * 64, "api", "repo.name", "répo",
     "re po", "repo/x"],
)
async def test_invalid_repository_names(graveler: Graveler, name: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="repository name"):
        await graveler.create_repository(name)
    assert await graveler.list_repositories() == []


@pytest.mark.parametrize(
    "namespace", ["local://../escape", "local://a/../../b", "local:///etc", "ftp://x",
                  "s3://Bad_Bucket/x", "nonsense"],
)
async def test_invalid_storage_namespaces(graveler: Graveler, namespace: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        await graveler.create_repository("repo2", namespace)
    assert await graveler.list_repositories() == []


@pytest.mark.parametrize("name", ["", "-x", "a b", "a~1", "a^2", "main@", "x/y", "é", "a" * 257])
async def test_invalid_branch_names(graveler: Graveler, repo: str, name: str) -> None:
    before = await snapshot(graveler, repo)
    with pytest.raises(errors.InvalidArgument, match="branch name"):
        await graveler.create_branch(repo, name, "main")
    assert await snapshot(graveler, repo) == before


@pytest.mark.parametrize("name", ["", "v1..2", "v1.", "-v1", "v 1", "v1~1", "v1@"])
async def test_invalid_tag_names(graveler: Graveler, repo: str, name: str) -> None:
    before = await snapshot(graveler, repo)
    with pytest.raises(errors.InvalidArgument, match="tag name"):
        await graveler.create_tag(repo, name, "main")
    assert await snapshot(graveler, repo) == before


@pytest.mark.parametrize(
    ("key", "match"),
    [("k" * 1025, "1024"), ("\udcff-surrogate", "UTF-8"), ("", "empty"), ("é" * 513, "1024")],
)
async def test_invalid_keys(graveler: Graveler, repo: str, key: str, match: str) -> None:
    await put(graveler, repo, "main", "existing")
    before = await snapshot(graveler, repo)
    with pytest.raises(errors.InvalidArgument, match=match):
        await graveler.put_object(repo, "main", key, body(b"x"))
    with pytest.raises(errors.InvalidArgument, match=match):
        await graveler.get_entry(repo, "main", key)
    with pytest.raises(errors.InvalidArgument, match=match):
        await graveler.delete_entry(repo, "main", key)
    assert await snapshot(graveler, repo) == before


async def test_key_of_exactly_1024_bytes_is_fine(graveler: Graveler, repo: str) -> None:
    await put(graveler, repo, "main", "k" * 1024)
    assert await keys(graveler, repo, "main") == ["k" * 1024]


@pytest.mark.parametrize("ref", ["nope", "main~100", "main^2", "0123456789abcdef", "~1", "main@@"])
async def test_missing_refs(graveler: Graveler, repo: str, ref: str) -> None:
    before = await snapshot(graveler, repo)
    with pytest.raises((errors.NotFound, errors.InvalidArgument)):
        await graveler.create_branch(repo, "new", ref)
    with pytest.raises((errors.NotFound, errors.InvalidArgument)):
        await graveler.get_entry(repo, ref, "k")
    with pytest.raises((errors.NotFound, errors.InvalidArgument)):
        await graveler.merge(repo, ref, "main")
    assert await snapshot(graveler, repo) == before


async def test_missing_repository_and_branch(graveler: Graveler, repo: str) -> None:
    with pytest.raises(errors.RepositoryNotFound, match="does not exist"):
        await graveler.commit("nothere", "main", "m")
    with pytest.raises(errors.BranchNotFound, match="does not exist"):
        await graveler.commit(repo, "nothere", "m")
    with pytest.raises(errors.RefNotFound):
        await graveler.put_object(repo, "nothere", "k", body(b"x"))
    with pytest.raises(errors.BranchNotFound):
        await graveler.delete_branch(repo, "nothere")


async def test_merge_into_itself_and_default_branch_deletion(graveler: Graveler, repo: str
                                                             ) -> None:
    await put(graveler, repo, "main", "k")
    await graveler.commit(repo, "main", "c")
    before = await snapshot(graveler, repo)
    with pytest.raises(errors.InvalidArgument, match="into itself"):
        await graveler.merge(repo, "main", "main")
    with pytest.raises(errors.InvalidArgument, match="default branch"):
        await graveler.delete_branch(repo, "main")
    with pytest.raises(errors.InvalidArgument, match="message"):
        await graveler.commit(repo, "main", "  ")
    with pytest.raises(errors.InvalidArgument, match="metadata"):
        await graveler.commit(repo, "main", "m", metadata={"k": 1})  # type: ignore[dict-item]
    assert await snapshot(graveler, repo) == before


async def test_bad_listing_arguments(graveler: Graveler, repo: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="limit"):
        await graveler.list_entries(repo, "main", limit=0)
    with pytest.raises(errors.InvalidArgument, match="limit"):
        await graveler.list_entries(repo, "main", limit=1001)
    with pytest.raises(errors.InvalidArgument, match="limit"):
        await graveler.log(repo, "main", limit=0)
