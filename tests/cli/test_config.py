"""Configuration: precedence flag > env > file > local server, the 0600 file, `config show`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lakeproxy.cli.settings import mask, resolve, write_config_file
from lakeproxy.cli.uri import LakeURI, parse_uri
from tests.cli.conftest import Lake


@pytest.mark.parametrize(("text", "expected"), [
    ("lake://repo", LakeURI("repo")),
    ("lake://repo/", LakeURI("repo")),
    ("lake://repo/main", LakeURI("repo", "main")),
    ("lake://repo/main/", LakeURI("repo", "main", "")),
    ("lakefs://repo/main/a/b.csv", LakeURI("repo", "main", "a/b.csv")),
    ("LAKE://repo/v1.0/dir/", LakeURI("repo", "v1.0", "dir/")),
    ("lake://repo/main~2/x", LakeURI("repo", "main~2", "x")),
])
def test_parse_uri(text: str, expected: LakeURI) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize("text", ["repo/main", "s3://repo/main", "lake://", "lake:///main",
                                  "lake://repo//x", "lake://re\x00po/main"])
def test_parse_uri_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="lake"):
        parse_uri(text)


def write(path: Path, **values: str) -> Path:
    write_config_file(path, values)
    return path


def local_server_dir(root: Path, endpoint: str, access: str, secret: str) -> Path:
    data = root / "lake-data"
    data.mkdir()
    (data / "server.json").write_text(json.dumps({"endpoint": endpoint, "pid": 1}))
    (data / "credentials.json").write_text(
        json.dumps({"access_key_id": access, "secret_access_key": secret}))
    return data


def test_precedence_flag_then_env_then_file_then_local_server(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", endpoint="http://file:1", access_key="AKFILE",
                secret_key="file-secret")
    local_server_dir(tmp_path, "http://local:2", "AKLOCAL", "local-secret")
    env = {"LAKE_CONFIG_FILE": str(cfg), "LAKE_ENDPOINT": "http://env:3"}
    r = resolve({"access_key": "AKFLAG"}, env, cwd=tmp_path)
    assert (r.endpoint.value, r.endpoint.source) == ("http://env:3", "env LAKE_ENDPOINT")
    assert (r.access_key.value, r.access_key.source) == ("AKFLAG", "flag --access-key")
    assert (r.secret_key.value, r.secret_key.source) == ("file-secret", f"file {cfg}")
    r = resolve({"endpoint": "http://flag:4"}, env, cwd=tmp_path)
    assert r.endpoint.value == "http://flag:4"
    # Nothing configured at all: the local server and its root credentials.
    r = resolve({}, {"LAKE_CONFIG_FILE": str(tmp_path / "absent.toml")}, cwd=tmp_path)
    assert r.require() == ("http://local:2", "AKLOCAL", "local-secret")
    assert r.endpoint.source.startswith("server ")


def test_local_root_credentials_never_go_to_another_endpoint(tmp_path: Path) -> None:
    local_server_dir(tmp_path, "http://local:2", "AKLOCAL", "local-secret")
    env = {"LAKE_CONFIG_FILE": str(tmp_path / "absent.toml"), "LAKE_ENDPOINT": "http://far:9"}
    r = resolve({}, env, cwd=tmp_path)
    assert r.access_key.value is None and r.secret_key.value is None
    with pytest.raises(Exception, match="no credentials configured"):
        r.require()
    # The same server named explicitly still gets them.
    r = resolve({"endpoint": "http://local:2/"}, env, cwd=tmp_path)
    assert r.require()[1:] == ("AKLOCAL", "local-secret")


def test_config_command_writes_an_owner_only_file(offline: Lake, tmp_path: Path) -> None:
    cfg = tmp_path / "sub" / "config.toml"
    env = {"LAKE_CONFIG_FILE": str(cfg)}
    offline.ok("config", "--endpoint", "http://127.0.0.1:9", "--access-key", "AKCONFIG",
               "--secret-key", "config-secret-123456", env=env)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    shown = offline.json("config", "show", env=env)
    assert shown["endpoint"] == {"value": "http://127.0.0.1:9", "source": f"file {cfg}"}
    assert shown["access_key"]["value"] == "AKCONFIG"
    assert shown["secret_key"]["value"] == mask("config-secret-123456")
    assert "config-secret-123456" not in json.dumps(shown)
    assert shown["config_file"] == str(cfg)
    # Rewriting keeps 0600 even if someone loosened it.
    cfg.chmod(0o644)
    offline.ok("config", input="\nAKOTHER\n\n", env=env)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    shown = offline.json("config", "show", env=env)
    assert shown["access_key"]["value"] == "AKOTHER"
    assert shown["secret_key"]["value"] == mask("config-secret-123456")
    # env beats the file, a flag beats env.
    shown = offline.json("config", "show", env={**env, "LAKE_ACCESS_KEY": "AKENV"})
    assert shown["access_key"] == {"value": "AKENV", "source": "env LAKE_ACCESS_KEY"}
    shown = offline.json("--access-key", "AKFLAG", "config", "show",
                         env={**env, "LAKE_ACCESS_KEY": "AKENV"})
    assert shown["access_key"] == {"value": "AKFLAG", "source": "flag --access-key"}
    human = offline.ok("config", "show", env=env).stdout
    assert "AKCONFIG" not in human and "AKOTHER" in human and "config-secret" not in human


def test_config_rejects_a_bad_endpoint(offline: Lake, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    offline.fails(2, "config", "--endpoint", "ftp://x", "--access-key", "a", "--secret-key", "b",
                  env={"LAKE_CONFIG_FILE": str(cfg)})
    assert not cfg.exists()


def test_unreadable_config_file_says_how_to_fix_it(offline: Lake, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("endpoint = [broken")
    result = offline.fails(1, "repo", "list", env={"LAKE_CONFIG_FILE": str(cfg)})
    assert "cannot read config file" in result.stderr and "lake config" in result.stderr


def test_nothing_configured_is_a_clear_failure(offline: Lake) -> None:
    result = offline.fails(1, "repo", "list")
    assert "no lakeproxy endpoint configured" in result.stderr
    assert "LAKE_ENDPOINT" in result.stderr
    data = offline.fails(1, "repo", "list", "--json")
    assert "no lakeproxy endpoint configured" in json.loads(data.stdout)["error"]


def test_unreachable_server_says_what_to_check(offline: Lake) -> None:
    result = offline.fails(1, "--endpoint", "http://127.0.0.1:9", "--access-key", "a",
                           "--secret-key", "b", "repo", "list")
    assert "cannot reach lakeproxy" in result.stderr and "lake serve" in result.stderr


@pytest.mark.parametrize("args", [
    ["branch", "list", "s3://repo"],
    ["commit", "lake://repo", "-m", "x"],
    ["commit", "lake://repo/main/path", "-m", "x"],
    ["commit", "lake://repo/main", "-m", "x", "--meta", "novalue"],
    ["merge", "lake://a/main", "lake://b/main"],
    ["merge", "lake://a/dev", "lake://a/main", "--strategy", "both-win"],
    ["cat", "lake://repo/main"],
    ["stat", "lake://repo/main/"],
    ["rm", "lake://repo"],
    ["keys", "create", "--grant", "repo:owner"],
    ["keys", "create", "--grant", "nolevel"],
    ["log", "lake://repo/main", "-n", "0"],
    ["tag", "create", "lake://repo/v1", "lake://other/main"],
    ["repo", "create", "lake://repo/main"],
    ["branch", "reset", "lake://repo/main", "--prefix"],
    ["no-such-command"],
])
def test_usage_errors_exit_with_2_before_any_request(offline: Lake, args: list[str]) -> None:
    offline.fails(2, *args)


def test_upload_usage_errors(offline: Lake, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    offline.fails(2, "upload", str(folder), "lake://repo/main/")
    offline.fails(2, "upload", str(tmp_path / "missing"), "lake://repo/main/")
    (folder / "f").write_text("x")
    offline.fails(2, "upload", str(folder / "f"), "lake://repo/main/", "--recursive")


def all_commands() -> list[tuple[str, object]]:
    import typer.main

    from lakeproxy.cli import app

    found: list[tuple[str, object]] = []

    def walk(prefix: str, command: object) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(f"{prefix} {name}".strip(), sub)
        else:
            found.append((prefix, command))

    walk("", typer.main.get_command(app))
    return found


SERVER_SIDE = {"serve", "demo", "version"}


def test_every_command_has_help_and_a_json_option(offline: Lake) -> None:
    commands = dict(all_commands())
    expected = {"repo create", "repo list", "repo delete", "branch create", "branch list",
                "branch delete", "branch reset", "branch revert", "branch protect",
                "branch unprotect", "commit", "log", "diff", "merge", "cherry-pick",
                "tag create", "tag list", "tag delete", "ls", "cat", "stat", "rm", "upload",
                "download", "keys create", "keys list", "keys delete", "config show"}
    assert expected <= set(commands)
    for name, command in commands.items():
        assert getattr(command, "help", None), f"`lake {name}` has no help text"
        help_text = offline.ok(*name.split(), "--help").stdout
        if name not in SERVER_SIDE:
            assert "--json" in help_text, f"`lake {name}` has no --json"
