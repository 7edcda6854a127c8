"""Authentication and grants on the REST API: a default-deny route table, per-repository
grants, and keys that stop working the moment they are deleted."""

from __future__ import annotations

import re
from typing import cast

import pytest

from lakeproxy.api import create_api_app
from lakeproxy.api.app import ROUTE_OF
from lakeproxy.api.routing import Permission, Route
from lakeproxy.gateway.context import Services
from tests.api.conftest import Api, make_key, upload
from tests.server import Server

PUBLIC = {"healthCheck", "login"}


def app_routes() -> list[Route]:
    app = create_api_app(cast(Services, object()))
    found = []
    for resource_route in app.router.routes():
        route = getattr(resource_route.handler, ROUTE_OF, None)
        assert isinstance(route, Route), f"{resource_route} has no declared permission"
        found.append(route)
    return found


def test_every_route_declares_a_permission() -> None:
    routes = app_routes()
    assert len({(r.method, r.path) for r in routes}) == len(routes) == 46
    public = {r.operation_id for r in routes if r.permission is Permission.PUBLIC}
    assert public == PUBLIC
    for route in routes:
        if "{repository}" in route.path and route.path != "/repositories":
            assert route.permission in (Permission.REPO_READ, Permission.REPO_WRITE,
                                        Permission.REPO_ADMIN), route.operation_id
        if route.method in ("POST", "PUT", "DELETE") and route.operation_id not in PUBLIC:
            assert route.permission not in (Permission.REPO_READ,
                                            Permission.AUTHENTICATED), route.operation_id


def _concrete(path: str) -> str:
    return re.sub(r"\{([a-zA-Z_]+)(:[^}]*)?\}", lambda m: "x" if m.group(2) else "main",
                  path).replace("/repositories/main", "/repositories/some-repo")


@pytest.mark.parametrize("route", app_routes(), ids=lambda r: r.operation_id)
def test_no_credentials_is_401(server: Server, route: Route) -> None:
    anonymous = Api(server, access_key="", secret_key="")
    anonymous.session.auth = None
    method = "GET" if route.method == "*" else route.method
    response = anonymous(method, _concrete(route.path), params={"path": "p", "dest_path": "q"},
                         json={} if method in ("POST", "PUT") else None)
    anonymous.close()
    if route.operation_id in PUBLIC:
        assert response.status_code != 401
    else:
        assert response.status_code == 401, response.text
        if method != "HEAD":
            assert response.json()["message"]
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_wrong_secret_is_401(server: Server, api: Api) -> None:
    bad = Api(server, access_key=server.access_key, secret_key="wrong")
    assert bad("GET", "/repositories").status_code == 401
    garbage = Api(server)
    garbage.session.auth = None
    response = garbage("GET", "/repositories", headers={"Authorization": "Basic !!!"})
    assert response.status_code == 401
    bad.close()
    garbage.close()


def test_read_only_key(server: Server, api: Api, repo: str) -> None:
    upload(api, repo, "main", "a", b"a")
    reader = Api(server, *make_key(api, {repo: "read"}))
    assert reader("GET", f"/repositories/{repo}/refs/main/objects",
                  params={"path": "a"}).content == b"a"
    assert reader("GET", f"/repositories/{repo}/branches").status_code == 200
    writes = [
        ("POST", f"/repositories/{repo}/branches/main/objects", {"params": {"path": "b"},
                                                                 "data": b"b"}),
        ("DELETE", f"/repositories/{repo}/branches/main/objects", {"params": {"path": "a"}}),
        ("POST", f"/repositories/{repo}/branches", {"json": {"name": "x", "source": "main"}}),
        ("POST", f"/repositories/{repo}/branches/main/commits", {"json": {"message": "m"}}),
        ("POST", f"/repositories/{repo}/tags", {"json": {"id": "t", "ref": "main"}}),
        ("PUT", f"/repositories/{repo}/branches/main", {"json": {"type": "reset"}}),
        ("DELETE", f"/repositories/{repo}", {}),
        ("POST", "/repositories", {"json": {"name": "new-repo-by-reader"}}),
        ("GET", "/auth/keys", {}),
    ]
    for method, path, kwargs in writes:
        response = reader(method, path, **kwargs)
        assert response.status_code == 403, (method, path, response.text)
    changes = api("GET", f"/repositories/{repo}/branches/main/diff").json()["results"]
    assert [c["path"] for c in changes] == ["a"]  # the reader changed nothing
    reader.close()


def test_key_for_one_repository_sees_nothing_of_another(server: Server, api: Api,
                                                        repo: str) -> None:
    other = "other-" + repo
    assert api("POST", "/repositories", json={"name": other}).status_code == 201
    writer = Api(server, *make_key(api, {repo: "write"}))
    listed = writer("GET", "/repositories").json()["results"]
    assert [r["id"] for r in listed] == [repo]
    for path in (f"/repositories/{other}", f"/repositories/{other}/branches",
                 f"/repositories/{other}/refs/main/objects/ls",
                 "/repositories/does-not-exist"):
        assert writer("GET", path).status_code == 403, path
    assert writer("POST", f"/repositories/{repo}/branches/main/objects", params={"path": "k"},
                  data=b"k").status_code == 201
    writer.close()


def test_revoked_key_stops_at_once(server: Server, api: Api, repo: str) -> None:
    key_id, secret = make_key(api, {repo: "admin"})
    user = Api(server, key_id, secret)
    assert user("GET", f"/repositories/{repo}").status_code == 200
    info = api("GET", f"/auth/keys/{key_id}").json()
    assert info["grants"] == {repo: "admin"} and "secret_access_key" not in info
    assert key_id in [k["access_key_id"] for k in api("GET", "/auth/keys").json()["results"]]
    assert api("DELETE", f"/auth/keys/{key_id}").status_code == 204
    assert user("GET", f"/repositories/{repo}").status_code == 401
    assert api("GET", f"/auth/keys/{key_id}").status_code == 404
    user.close()


def test_login_token(server: Server, api: Api) -> None:
    response = api("POST", "/auth/login", json={"access_key_id": server.access_key,
                                                "secret_access_key": server.secret_key})
    assert response.status_code == 200
    token = response.json()["token"]
    bearer = Api(server)
    bearer.session.auth = None
    assert bearer("GET", "/user", headers={"Authorization": f"Bearer {token}"}).json()[
        "user"]["id"] == server.access_key
    assert bearer("GET", "/user", headers={"Authorization": "Bearer x.1.y"}).status_code == 401
    wrong = api("POST", "/auth/login", json={"access_key_id": server.access_key,
                                             "secret_access_key": "nope"})
    assert wrong.status_code == 401
    bearer.close()
