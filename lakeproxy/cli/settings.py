"""Where the CLI's endpoint and credentials come from.

Precedence, highest first: command-line flags, `LAKE_ENDPOINT` / `LAKE_ACCESS_KEY` /
`LAKE_SECRET_KEY`, the config file written by `lake config`, and last a local `lake serve` data
directory (its `server.json` and `credentials.json`), so a quick start needs no configuration.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import tomli_w

FIELDS = ("endpoint", "access_key", "secret_key")
ENV_VARS = {"endpoint": "LAKE_ENDPOINT", "access_key": "LAKE_ACCESS_KEY",
            "secret_key": "LAKE_SECRET_KEY"}
FLAGS = {"endpoint": "--endpoint", "access_key": "--access-key", "secret_key": "--secret-key"}

# Files `lake serve` keeps in its data directory.
SERVER_FILE = "server.json"
CREDENTIALS_FILE = "credentials.json"


class ConfigError(Exception):
    """The configuration is missing or unreadable; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Value:
    value: str | None
    source: str  # "flag --endpoint", "env LAKE_ENDPOINT", "file PATH", "server DIR", "unset"


@dataclass(frozen=True, slots=True)
class Resolved:
    endpoint: Value
    access_key: Value
    secret_key: Value
    config_file: Path

    def require(self) -> tuple[str, str, str]:
        """Endpoint, access key and secret, or a ConfigError saying what to set."""
        if not self.endpoint.value:
            raise ConfigError(
                "no lakeproxy endpoint configured: pass --endpoint, set LAKE_ENDPOINT, run "
                "`lake config`, or run this from the folder where `lake serve` keeps lake-data")
        if not self.access_key.value or not self.secret_key.value:
            raise ConfigError(
                "no credentials configured: pass --access-key/--secret-key, set LAKE_ACCESS_KEY "
                "and LAKE_SECRET_KEY, or run `lake config`")
        return self.endpoint.value, self.access_key.value, self.secret_key.value


def config_file_path(env: Mapping[str, str] | None = None) -> Path:
    """LAKE_CONFIG_FILE, else config.toml in the platform's user config folder for `lake`."""
    env = os.environ if env is None else env
    given = env.get("LAKE_CONFIG_FILE")
    if given:
        return Path(given).expanduser()
    return Path(platformdirs.user_config_dir("lake", appauthor=False)) / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    """The known string fields of the config file; an absent file is empty."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}; fix it or run `lake config`"
                          ) from e
    return {k: v for k, v in data.items() if k in FIELDS and isinstance(v, str) and v}


def write_config_file(path: Path, values: Mapping[str, str]) -> None:
    """Write the config file atomically, readable and writable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump({k: values[k] for k in FIELDS if values.get(k)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def local_server(env: Mapping[str, str], cwd: Path | None = None) -> tuple[Path, dict[str, str]]:
    """The data directory of a local `lake serve` and what it offers (endpoint, keys)."""
    data_dir = Path(env.get("LAKE_DATA_DIR") or "lake-data")
    if not data_dir.is_absolute():
        data_dir = (cwd or Path.cwd()) / data_dir
    found: dict[str, str] = {}
    for name, fields in ((SERVER_FILE, {"endpoint": "endpoint"}),
                         (CREDENTIALS_FILE, {"access_key_id": "access_key",
                                             "secret_access_key": "secret_key"})):
        try:
            data = json.loads((data_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.update({ours: str(data[theirs]) for theirs, ours in fields.items()
                          if isinstance(data.get(theirs), str) and data[theirs]})
    return data_dir, found


def resolve(flags: Mapping[str, str | None], env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> Resolved:
    """Pick each value from the first source that has it: flag, env, file, local server.

    The local server's root credentials are offered only to that same server: they are never
    sent to an endpoint configured elsewhere.
    """
    env = os.environ if env is None else env
    path = config_file_path(env)
    from_file = read_config_file(path)
    data_dir, discovered = local_server(env, cwd)
    picked: dict[str, Value] = {}
    for field in FIELDS:
        if flags.get(field):
            picked[field] = Value(flags[field], f"flag {FLAGS[field]}")
        elif env.get(ENV_VARS[field]):
            picked[field] = Value(env[ENV_VARS[field]], f"env {ENV_VARS[field]}")
        elif field in from_file:
            picked[field] = Value(from_file[field], f"file {path}")
        else:
            picked[field] = Value(None, "unset")
    local_endpoint = discovered.get("endpoint")
    if picked["endpoint"].value is None and local_endpoint:
        picked["endpoint"] = Value(local_endpoint, f"server {data_dir}")
    same_server = (local_endpoint is not None
                   and _same_endpoint(picked["endpoint"].value, local_endpoint))
    if same_server:
        for field in ("access_key", "secret_key"):
            if picked[field].value is None and field in discovered:
                picked[field] = Value(discovered[field], f"server {data_dir}")
    return Resolved(picked["endpoint"], picked["access_key"], picked["secret_key"], path)


def _same_endpoint(a: str | None, b: str) -> bool:
    return a is not None and a.rstrip("/") == b.rstrip("/")


def mask(secret: str | None) -> str | None:
    """A secret shown as asterisks and its last four characters."""
    if not secret:
        return secret
    return "*" * 8 + secret[-4:] if len(secret) > 8 else "*" * 8
