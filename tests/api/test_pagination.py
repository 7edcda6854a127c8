"""Every paged listing ends, and each page continues exactly where the last one stopped."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, upload

KEYS = ["a/1", "a/2", "a/x/1", "b", "c/1", "c/2", "d", "e/1", "f"]


def walk(api: Api, path: str, amount: int, **params: Any) -> list[str]:
    """Follow `next_offset` to the end, checking the envelope on every page."""
    names: list[str] = []
    after = ""
    for _ in range(100):
        body = api("GET", path, params={**params, "amount": amount, "after": after}).json()
        p = body["pagination"]
        assert set(p) == {"has_more", "next_offset", "results", "max_per_page"}
        assert p["results"] == len(body["results"]) <= amount
        names += [r.get("path") or r.get("id") for r in body["results"]]
        if not p["has_more"]:
            assert p["next_offset"] == ""
            return names
        assert p["next_offset"] and p["next_offset"] != after
        assert p["next_offset"] == names[-1]
        after = p["next_offset"]
    raise AssertionError("the listing did not end")


@pytest.fixture
def filled(api: Api, repo: str) -> str:
    for key in KEYS:
        upload(api, repo, "main", key)
    return repo


@pytest.mark.parametrize("amount", [1, 2, 3, 100])
def test_objects(api: Api, filled: str, amount: int) -> None:
    path = f"/repositories/{filled}/refs/main/objects/ls"
    assert walk(api, path, amount) == KEYS
    assert walk(api, path, amount, delimiter="/") == ["a/", "b", "c/", "d", "e/", "f"]
    assert walk(api, path, amount, delimiter="/", prefix="a/") == ["a/1", "a/2", "a/x/"]


@pytest.mark.parametrize("amount", [1, 2, 5])
def test_diffs(api: Api, filled: str, amount: int) -> None:
    uncommitted = f"/repositories/{filled}/branches/main/diff"
    assert walk(api, uncommitted, amount) == KEYS
    assert walk(api, uncommitted, amount, delimiter="/") == ["a/", "b", "c/", "d", "e/", "f"]
    api("POST", f"/repositories/{filled}/branches/main/commits", json={"message": "m"})
    first = api("GET", f"/repositories/{filled}/refs/main/commits").json()["results"][-1]["id"]
    refs = f"/repositories/{filled}/refs/{first}/diff/main"
    assert walk(api, refs, amount) == KEYS
    assert walk(api, refs, amount, delimiter="/", prefix="a/") == ["a/1", "a/2", "a/x/"]


def test_branches_tags_log_repositories(api: Api, repo: str) -> None:
    for i in range(7):
        api("POST", f"/repositories/{repo}/branches",
            json={"name": f"b{i}", "source": "main", "hidden": i % 3 == 0})
        api("POST", f"/repositories/{repo}/tags", json={"id": f"t{i}", "ref": "main"})
    branches = f"/repositories/{repo}/branches"
    assert walk(api, branches, 2) == ["b1", "b2", "b4", "b5", "main"]
    assert walk(api, branches, 2, show_hidden="true") == [f"b{i}" for i in range(7)] + ["main"]
    assert walk(api, f"/repositories/{repo}/tags", 3) == [f"t{i}" for i in range(7)]
    for i in range(4):
        upload(api, repo, "main", f"k{i}")
        api("POST", f"/repositories/{repo}/branches/main/commits", json={"message": f"{i}"})
    log = walk(api, f"/repositories/{repo}/refs/main/commits", 2)
    assert len(log) == len(set(log)) == 5
    mine = walk(api, "/repositories", 1, prefix=repo)
    assert mine == [repo]


def test_amount_defaults_and_limits(api: Api, filled: str) -> None:
    path = f"/repositories/{filled}/refs/main/objects/ls"
    for amount in ("0", "-1"):
        body = api("GET", path, params={"amount": amount}).json()
        assert body["pagination"]["results"] == len(KEYS)
    assert api("GET", path, params={"amount": "1000"}).status_code == 200
    assert api("GET", path, params={"amount": "1001"}).status_code == 400
