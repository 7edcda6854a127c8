"""The quick start with nothing configured, and the real `lake` console script's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Lake, isolated_env
from tests.server import Server, lake_serve

LAKE = Path(sys.executable).parent / "lake"


def run_lake(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAKE), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def quick_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """`lake serve` started in tmp_path with its default ./lake-data and generated root keys."""
    monkeypatch.chdir(tmp_path)
    no_root = {"LAKE_ROOT_ACCESS_KEY": "", "LAKE_ROOT_SECRET_KEY": ""}
    with lake_serve(tmp_path / "lake-data", env=no_root) as server:
        yield server
    assert not (tmp_path / "lake-data" / "server.json").exists()  # removed on shutdown


def test_quick_start_finds_the_local_server_by_itself(quick_server: Server,
                                                      tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["LAKE_DATA_DIR"] = None  # the default: ./lake-data in the current folder
    lake = Lake(env)
    shown = lake.json("config", "show")
    assert shown["endpoint"]["value"] == quick_server.endpoint
    assert shown["endpoint"]["source"].startswith("server ")
    creds = json.loads((tmp_path / "lake-data" / "credentials.json").read_text())
    assert shown["access_key"]["value"] == creds["access_key_id"]
    assert creds["secret_access_key"] not in json.dumps(shown)

    lake.ok("repo", "create", "lake://quickstart")
    data = tmp_path / "hello.csv"
    data.write_text("a,b\n1,2\n")
    lake.ok("branch", "create", "lake://quickstart/experiment", "-s", "lake://quickstart/main")
    lake.ok("upload", str(data), "lake://quickstart/experiment/data/")
    lake.ok("commit", "lake://quickstart/experiment", "-m", "add data", "--meta", "source=cli")
    lake.ok("merge", "lake://quickstart/experiment", "lake://quickstart/main")
    assert lake.ok("cat", "lake://quickstart/main/data/hello.csv").stdout == "a,b\n1,2\n"
    assert [c["message"] for c in lake.json("log", "lake://quickstart/main", "-n", "2")][1] == \
        "add data"


def test_console_script_exit_codes(quick_server: Server, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    env["LAKE_CONFIG_FILE"] = str(tmp_path / "none.toml")
    ok = run_lake("repo", "create", "lake://subproc", "--json", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["id"] == "subproc"
    listed = run_lake("repo", "list", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and [r["id"] for r in json.loads(listed.stdout)] == ["subproc"]
    missing = run_lake("branch", "list", "lake://no-such-repo", cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "error:" in missing.stderr and "hint:" in missing.stderr
    bad_uri = run_lake("branch", "list", "s3://subproc", cwd=tmp_path, env=env)
    assert bad_uri.returncode == 2 and "lake://" in bad_uri.stderr
    bad_option = run_lake("log", "lake://subproc/main", "--nope", cwd=tmp_path, env=env)
    assert bad_option.returncode == 2
    wrong = run_lake("--secret-key", "wrong", "repo", "list", cwd=tmp_path, env=env)
    assert wrong.returncode == 1 and "lake config" in wrong.stderr
    # Somewhere else, with nothing configured: a failure that says what to do.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nothing = run_lake("repo", "list", cwd=elsewhere, env=env)
    assert nothing.returncode == 1 and "LAKE_ENDPOINT" in nothing.stderr
    assert run_lake("version", cwd=elsewhere, env=env).returncode == 0
