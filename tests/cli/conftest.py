"""A real `lake serve` for the CLI tests, and a runner that invokes `lake` in-process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from lakeproxy.cli import app
from tests.server import Server, lake_serve

# Variables that would leak the caller's own configuration into a test.
ISOLATE = ("LAKE_ENDPOINT", "LAKE_ACCESS_KEY", "LAKE_SECRET_KEY", "LAKE_CONFIG_FILE",
           "LAKE_DATA_DIR")


@dataclass
class Lake:
    """Runs `lake ARGS` through typer's CliRunner with a given environment."""

    env: dict[str, str | None]

    def __call__(self, *args: str, input: str | None = None,
                 env: Mapping[str, str | None] | None = None) -> Result:
        result = CliRunner().invoke(app, list(args), input=input, env={**self.env, **(env or {})})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a crash, not a reported failure
        return result

    def ok(self, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--json", **kwargs).stdout)

    def fails(self, code: int, *args: str, **kwargs: Any) -> Result:
        result = self(*args, **kwargs)
        assert result.exit_code == code, result.output
        return result


def isolated_env(tmp: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = dict.fromkeys(ISOLATE)
    env["LAKE_CONFIG_FILE"] = str(tmp / "no-config.toml")
    env["LAKE_DATA_DIR"] = str(tmp / "no-data-dir")
    return env


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with lake_serve(tmp_path_factory.mktemp("cli-server") / "data") as s:
        yield s


@pytest.fixture
def lake(server: Server, tmp_path: Path) -> Lake:
    """`lake` configured through the environment for the shared server."""
    env = isolated_env(tmp_path)
    env.update(LAKE_ENDPOINT=server.endpoint, LAKE_ACCESS_KEY=server.access_key,
               LAKE_SECRET_KEY=server.secret_key)
    return Lake(env)


@pytest.fixture
def offline(tmp_path: Path) -> Lake:
    """`lake` with nothing configured (no server needed)."""
    return Lake(isolated_env(tmp_path))


@pytest.fixture
def repo(lake: Lake) -> str:
    """A fresh repository on the shared server (default branch main)."""
    name = f"cli-{uuid.uuid4().hex[:10]}"
    lake.ok("repo", "create", f"lake://{name}")
    return name
