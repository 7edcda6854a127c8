"""A real `lake serve` per test module, and the lakeFS clients pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import lakefs_sdk
import pytest
import requests
from lakefs_sdk.client import LakeFSClient

from tests.server import Server, lake_serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with lake_serve(tmp_path_factory.mktemp("api") / "data") as running:
        yield running


def sdk_client(server: Server, access_key: str | None = None,
               secret_key: str | None = None) -> LakeFSClient:
    conf = lakefs_sdk.Configuration(host=server.endpoint,
                                    username=access_key or server.access_key,
                                    password=secret_key or server.secret_key)
    return LakeFSClient(conf)


@pytest.fixture(scope="module")
def sdk(server: Server) -> LakeFSClient:
    return sdk_client(server)


class Api:
    """Plain HTTP calls to /api/v1 with a key (root by default), for what clients can't send."""

    def __init__(self, server: Server, access_key: str | None = None,
                 secret_key: str | None = None) -> None:
        self.base = server.endpoint + "/api/v1"
        self.session = requests.Session()
        if access_key is not None or secret_key is not None:
            self.session.auth = (access_key or "", secret_key or "")
        else:
            self.session.auth = (server.access_key, server.secret_key)

    def __call__(self, method: str, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base + path, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.session.close()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.close()


@pytest.fixture
def repo(api: Api) -> str:
    """A fresh repository (default branch main) on the module's server."""
    name = "r-" + uuid.uuid4().hex[:12]
    response = api("POST", "/repositories", json={"name": name})
    assert response.status_code == 201, response.text
    return name


def make_key(api: Api, grants: dict[str, str] | None = None,
             admin: bool = False) -> tuple[str, str]:
    response = api("POST", "/auth/keys", json={"grants": grants or {}, "admin": admin})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["access_key_id"], body["secret_access_key"]


def upload(api: Api, repo: str, branch: str, path: str, data: bytes = b"x") -> None:
    response = api("POST", f"/repositories/{repo}/branches/{branch}/objects",
                   params={"path": path}, data=data)
    assert response.status_code == 201, response.text


def log_file(server: Server) -> Path:
    port = server.endpoint.rsplit(":", 1)[1]
    return server.data_dir.parent / f"serve-{port}.log"
