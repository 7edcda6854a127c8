"""The batched core operations the REST API's hot paths use give exactly what the per-key
operations give: `list_raw` pages equal `list_entries` pages, `delete_entries` leaves a branch
as `delete_entry` per key does, and `listed_fields` reads what `Entry.decode` reads."""

from __future__ import annotations

import contextlib
import random

import pytest

from lakeproxy.errors import ObjectNotFound, ProtectedBranch
from lakeproxy.graveler import Branch, Entry, Graveler
from lakeproxy.graveler.objects import listed_fields
from lakeproxy.graveler.staging import new_token
from tests.api.conftest import Api, upload

REPO = "fast1"


def entry(i: int, tag: str = "") -> Entry:
    digest = f"{i:032x}"
    return Entry(f"data/0000000001/{digest}", i, digest, digest, 1.7e9 + i,
                 metadata={"tag": tag} if tag else {})


def key_of(i: int) -> str:
    return f"{'ab'[i % 2]}/{i % 7}/k{i:03d}" if i % 5 else f"top{i:03d}"


async def seal(g: Graveler, branch: str) -> None:
    """Seal the branch's staging token, as a commit in progress does."""
    repo = await g.refs.get_repository(REPO)

    async def update(b: Branch) -> Branch:
        return Branch(b.name, b.head, new_token(), b.tokens, b.protected)

    await g.refs.update_branch(repo, branch, update)


async def layered(g: Graveler) -> None:
    """Committed keys, then a sealed token and a current token that add, change and delete."""
    await g.create_repository(REPO)
    await g.stage_many(REPO, "main", [(key_of(i), entry(i)) for i in range(0, 120, 2)])
    await g.commit(REPO, "main", "base")
    rng = random.Random(7)
    for i in rng.sample(range(120), 30):
        await g.set_entry(REPO, "main", key_of(i), entry(i, "sealed"))
    for i in rng.sample(range(0, 120, 2), 10):
        with contextlib.suppress(ObjectNotFound):
            await g.delete_entry(REPO, "main", key_of(i))
    await seal(g, "main")
    for i in rng.sample(range(120), 30):
        await g.set_entry(REPO, "main", key_of(i), entry(i, "current"))
    for i in rng.sample(range(120), 20):
        with contextlib.suppress(ObjectNotFound):
            await g.delete_entry(REPO, "main", key_of(i))


def as_rows(page) -> list[tuple[str, Entry | None]]:  # type: ignore[no-untyped-def]
    rows = [(k, e) for k, e in page.entries] + [(p, None) for p in page.common_prefixes]
    return sorted(rows, key=lambda row: row[0])


@pytest.mark.parametrize("ref", ["main", "main@"])
async def test_list_raw_pages_equal_list_entries(graveler: Graveler, ref: str) -> None:
    await layered(graveler)
    cases = [(p, d) for p in ("", "a/", "a/3", "b/", "top", "zzz") for d in ("", "/")]
    for prefix, delimiter in cases:
        for limit in (1, 3, 7, 1000):
            after, pages = "", 0
            while pages < 500:
                pages += 1
                want = await graveler.list_entries(REPO, ref, prefix=prefix, after=after,
                                                   delimiter=delimiter, limit=limit)
                got = await graveler.list_raw(REPO, ref, prefix=prefix, after=after,
                                              delimiter=delimiter, limit=limit)
                rows = [(k, None if v is None else Entry.decode(v))
                        for k, v in zip(got.keys, got.values, strict=True)]
                assert rows == as_rows(want), (prefix, delimiter, limit, after)
                assert got.has_more == want.has_more
                if not got.has_more:
                    break
                after = got.keys[-1]
            assert pages < 500


async def test_listed_fields_read_what_decode_reads() -> None:
    samples = [
        entry(5),
        Entry("s3://elsewhere/x/y", 0, "d41d8cd98f00b204e9800998ecf8427e-3", "abc", 12.5,
              "text/plain", {"a": "1", "ü": "ß"}, {"crc32": "AAAA"}),
        Entry("data/0000000000/" + "f" * 32, 2**40, "0" * 32, "1" * 32),
    ]
    for sample in samples:
        e = Entry.decode(sample.encode())
        assert listed_fields(sample.encode()) == (
            e.address, e.size, e.etag, e.last_modified, e.content_type, dict(e.metadata))


async def visible(g: Graveler, ref: str) -> list[tuple[str, bytes]]:
    return [(k, e.identity) async for k, e in g.iter_entries(REPO, ref)]


async def test_delete_entries_equals_deleting_one_by_one(graveler: Graveler) -> None:
    await layered(graveler)
    await graveler.create_branch(REPO, "one", "main")
    await graveler.create_branch(REPO, "many", "main")
    for branch in ("one", "many"):
        await graveler.stage_many(REPO, branch, [(key_of(i), entry(i, "s")) for i in
                                                 range(1, 120, 6)])
        await graveler.delete_entry(REPO, branch, key_of(1))
        await seal(graveler, branch)
        await graveler.set_entry(REPO, branch, key_of(3), entry(3, "now"))
    targets = [key_of(i) for i in range(0, 120, 3)] + ["no/such/key", key_of(1), key_of(0)]
    missing_one, seen = set(), set()
    for key in targets:
        try:
            await graveler.delete_entry(REPO, "one", key)
        except ObjectNotFound:
            if key not in seen:  # a repeated key is gone by its second turn
                missing_one.add(key)
        seen.add(key)
    missing_many = await graveler.delete_entries(REPO, "many", targets)
    assert sorted(missing_many) == sorted(missing_one)
    assert "no/such/key" in missing_many
    assert await visible(graveler, "one") == await visible(graveler, "many")
    one, _ = await graveler.diff_uncommitted(REPO, "one")
    many, _ = await graveler.diff_uncommitted(REPO, "many")
    assert [(c.key, c.type) for c in one] == [(c.key, c.type) for c in many]
    # Tombstones only where something committed or sealed must stay hidden: a commit of
    # either branch gives the same tree.
    a = await graveler.commit(REPO, "one", "x")
    b = await graveler.commit(REPO, "many", "x")
    assert a.metarange_id == b.metarange_id


async def test_delete_entries_on_a_protected_branch_changes_nothing(graveler: Graveler) -> None:
    await graveler.create_repository(REPO)
    await graveler.stage_many(REPO, "main", [("a", entry(1)), ("b", entry(2))])
    await graveler.create_branch(REPO, "p", "main")
    await graveler.set_branch_protection(REPO, "p", True)
    before = await visible(graveler, "p")
    with pytest.raises(ProtectedBranch):
        await graveler.delete_entries(REPO, "p", ["a", "b"])
    assert await visible(graveler, "p") == before
    assert await graveler.delete_entries(REPO, "main", ["a", "zz"]) == ["zz"]
    assert [k for k, _ in await visible(graveler, "main")] == ["b"]


async def reference_touches(g: Graveler, c, keys: list[str],  # type: ignore[no-untyped-def]
                            prefixes: list[str]) -> bool:
    """What the log filter means, computed the long way: a full diff with the first parent."""
    if c.parents:
        changed, _ = await g.diff(REPO, c.parents[0], c.id, limit=10_000)
        paths = [ch.key for ch in changed]
    else:
        paths = [k async for k, _ in g.iter_entries(REPO, c.id)]
    return any(p in keys for p in paths) or any(p.startswith(x) for p in paths
                                                 for x in prefixes)


async def test_touches_agrees_with_a_full_diff(graveler: Graveler) -> None:
    g = graveler
    await g.create_repository(REPO)
    await g.stage_many(REPO, "main", [(key_of(i), entry(i)) for i in range(40)])
    await g.commit(REPO, "main", "c1")
    await g.set_entry(REPO, "main", "a/1/k001", entry(1, "x"))
    await g.commit(REPO, "main", "c2")
    await g.set_entry(REPO, "main", "a/1/k001", entry(1, "x"))  # same identity: no change
    await g.set_entry(REPO, "main", "new/key", entry(99))
    await g.commit(REPO, "main", "c3")
    await g.create_branch(REPO, "dev", "main")
    await g.delete_entry(REPO, "dev", "top005")
    await g.commit(REPO, "dev", "c4")
    await g.set_entry(REPO, "main", "b/2/k002", entry(2, "y"))
    await g.commit(REPO, "main", "c5")
    await g.merge(REPO, "dev", "main")
    commits, _ = await g.log(REPO, "main", limit=100)
    assert len(commits) >= 6
    probes = [(["a/1/k001"], []), (["new/key"], []), (["top005"], []), ([], ["a/"]),
              ([], ["b/2"]), ([], ["top"]), (["zzz"], ["nothing/"]), (["a/1"], []),
              ([], [""])]
    for c in commits:
        for keys, prefixes in probes:
            want = await reference_touches(g, c, keys, prefixes)
            assert await g.touches(REPO, c, keys=keys, prefixes=prefixes) == want, (
                c.message, keys, prefixes)


# Through the REST API (a real `lake serve`, see tests/api/conftest.py)


def put(api: Api, repo: str, path: str, **meta: str) -> None:
    headers = {f"x-lakefs-meta-{k}": v for k, v in meta.items()}
    response = api("POST", f"/repositories/{repo}/branches/main/objects",
                   params={"path": path}, data=path.encode(), headers=headers)
    assert response.status_code == 201, response.text


def ls(api: Api, repo: str, ref: str = "main", **params: object) -> list[dict[str, object]]:
    response = api("GET", f"/repositories/{repo}/refs/{ref}/objects/ls",
                   params={"amount": 1000, **params})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["results"]


@pytest.mark.parametrize("user_metadata", [True, False])
def test_listed_objects_are_what_stat_answers(api: Api, repo: str,
                                              user_metadata: bool) -> None:
    put(api, repo, "d/one", color="blue", owner="o y")
    put(api, repo, "d/two")
    put(api, repo, "top")
    assert api("POST", f"/repositories/{repo}/branches/main/commits",
               json={"message": "m"}).status_code == 201
    put(api, repo, "d/three", staged="yes")  # one uncommitted
    items = ls(api, repo, user_metadata=str(user_metadata).lower())
    assert [i["path"] for i in items] == ["d/one", "d/three", "d/two", "top"]
    for item in items:
        stat = api("GET", f"/repositories/{repo}/refs/main/objects/stat",
                   params={"path": item["path"],
                           "user_metadata": str(user_metadata).lower()}).json()
        assert item == stat
    assert items[0]["metadata"] == ({"color": "blue", "owner": "o y"} if user_metadata else {})
    rolled = ls(api, repo, delimiter="/")
    assert rolled[0] == {"path": "d/", "path_type": "common_prefix", "physical_address": "",
                         "checksum": "", "mtime": 0}
    assert [i["path"] for i in rolled] == ["d/", "top"]


def test_bulk_delete_reports_bad_paths_and_deletes_the_rest(api: Api, repo: str) -> None:
    for path in ("a", "b", "c/d"):
        upload(api, repo, "main", path)
    paths = ["a", "missing", "a/../b", "c/d", "a", "x\x00y"]
    response = api("POST", f"/repositories/{repo}/branches/main/objects/delete",
                   json={"paths": paths})
    assert response.status_code == 200, response.text
    errors = response.json()["errors"]
    assert [(e["path"], e["status_code"]) for e in errors] == [("a/../b", 400), ("x\x00y", 400)]
    assert [i["path"] for i in ls(api, repo)] == ["b"]


def test_bulk_delete_on_a_protected_branch_changes_nothing(api: Api, repo: str) -> None:
    for path in ("a", "b"):
        upload(api, repo, "main", path)
    assert api("POST", f"/repositories/{repo}/branches/main/commits",
               json={"message": "m"}).status_code == 201
    assert api("PUT", f"/repositories/{repo}/branches/main/protection",
               json={"protected": True}).status_code == 204
    response = api("POST", f"/repositories/{repo}/branches/main/objects/delete",
                   json={"paths": ["a", "../x", "b", "nope"]})
    assert response.status_code == 403, response.text
    assert "protected" in response.json()["message"]
    assert [i["path"] for i in ls(api, repo)] == ["a", "b"]


def test_log_filters_by_objects_and_prefixes(api: Api, repo: str) -> None:
    def commit(message: str) -> str:
        response = api("POST", f"/repositories/{repo}/branches/main/commits",
                       json={"message": message})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    upload(api, repo, "main", "x/1")
    first = commit("x1")
    upload(api, repo, "main", "y/1")
    second = commit("y1")
    upload(api, repo, "main", "x/2")
    third = commit("x2")

    def log(**params: object) -> list[str]:
        response = api("GET", f"/repositories/{repo}/refs/main/commits", params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["results"]]

    assert log(prefixes="x/") == [third, first]
    assert log(objects="y/1") == [second]
    assert log(objects=["x/1", "y/1"]) == [second, first]
    assert log(prefixes="x/", amount=1) == [third]
    assert log(objects="x") == []
