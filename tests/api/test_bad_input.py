"""Bad input gets a clear 4xx JSON error and changes nothing; never a 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, upload


def _state(api: Api, repo: str) -> tuple[object, ...]:
    branches = api("GET", f"/repositories/{repo}/branches", params={"show_hidden": "true"})
    objects = api("GET", f"/repositories/{repo}/refs/main/objects/ls")
    tags = api("GET", f"/repositories/{repo}/tags")
    return branches.json(), objects.json(), tags.json()


BAD = [
    ("POST", "/repositories", {"data": b"{not json", "headers": {
        "Content-Type": "application/json"}}, "malformed JSON"),
    ("POST", "/repositories", {"data": b"\xff\xfe", "headers": {
        "Content-Type": "application/json"}}, "UTF-8"),
    ("POST", "/repositories", {"json": ["a list"]}, "must be an object"),
    ("POST", "/repositories", {"json": {"name": "Bad_Name"}}, "invalid repository name"),
    ("POST", "/repositories", {"json": {"name": "api"}}, "reserved"),
    ("POST", "/repositories", {"json": {"name": "okname", "colour": "red"}}, "unknown field"),
    ("POST", "{r}/branches", {"json": {"name": "-bad", "source": "main"}}, "branch name"),
    ("POST", "{r}/branches", {"json": {"name": "x"}}, "'source' is required"),
    ("POST", "{r}/branches", {"json": {"name": 5, "source": "main"}}, "name"),
    ("POST", "{r}/tags", {"json": {"id": "bad..tag", "ref": "main"}}, "tag name"),
    ("POST", "{r}/branches/main/commits", {"json": {"message": "m", "metadata": {"a": 1}}},
     "metadata"),
    ("GET", "{r}/refs/main/objects/ls", {"params": {"amount": "1001"}}, "at most 1000"),
    ("GET", "{r}/refs/main/objects/ls", {"params": {"amount": "-2"}}, "at least -1"),
    ("GET", "{r}/refs/main/objects/ls", {"params": {"amount": "ten"}}, "integer"),
    ("GET", "/repositories", {"params": {"amount": "99999999999999999999"}}, "at most"),
    ("POST", "{r}/branches/main/objects", {"params": {"path": "a/../b"}, "data": b"x"}, ".."),
    ("POST", "{r}/branches/main/objects", {"params": {"path": "a\x00b"}, "data": b"x"}, "NUL"),
    ("POST", "{r}/branches/main/objects", {"params": {"path": ""}, "data": b"x"}, "empty"),
    ("POST", "{r}/branches/main/objects", {"params": {"path": "x" * 1025}, "data": b"x"},
     "1024"),
    ("POST", "{r}/branches/main/objects", {"data": b"x"}, "'path' is required"),
    ("GET", "{r}/refs/main/objects", {"params": {"path": "../etc/passwd"}}, ".."),
    ("GET", "{r}/refs/main~~x/objects/stat", {"params": {"path": "k"}}, "ref"),
    ("PUT", "{r}/branches/main", {"json": {"type": "everything"}}, "reset type"),
    ("POST", "{r}/branches/main/objects/delete", {"json": {"paths": ["k"] * 1001}}, "1000"),
    ("POST", "{r}/refs/main/merge/main", {"json": {}}, "itself"),
    ("POST", "{r}/branches/main/revert", {"json": {"ref": "main", "parent_number": -1}},
     "parent_number"),
    ("GET", "{r}/refs/main/diff/main", {"params": {"type": "four_dot"}}, "type"),
    ("POST", "/auth/keys", {"json": {"grants": {"x": "root"}}}, "grant level"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "hint"), BAD,
                         ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_input_is_4xx_and_changes_nothing(api: Api, repo: str, method: str, path: str,
                                              kwargs: dict[str, object], hint: str) -> None:
    upload(api, repo, "main", "k")
    before = _state(api, repo)
    response = api(method, path.replace("{r}", f"/repositories/{repo}"), **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert hint.lower() in response.json()["message"].lower()
    assert _state(api, repo) == before


def test_non_utf8_query_is_400(api: Api, repo: str) -> None:
    response = api("GET", f"/repositories/{repo}/refs/main/objects/stat?path=%ff%fe")
    assert response.status_code == 400 and "UTF-8" in response.json()["message"]


def test_unknown_route_and_method(api: Api) -> None:
    assert api("GET", "/no/such/route").status_code == 404
    response = api("PATCH", "/repositories")
    assert response.status_code == 405 and "GET" in response.json()["message"]
