"""Settings: defaults < TOML file < LAKE_* variables < flags, and clear errors for bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from lakeproxy.config import ConfigError, Settings
from lakeproxy.core import open_graveler
from tests.server import ROOT

TOML = """
data_dir = "/srv/lake"
port = 9001
workers = 4
access_log = false

[s3]
endpoint = "http://minio:9000"
region = "eu-west-1"

[log]
format = "json"
level = "warning"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lake.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file_and_no_variable() -> None:
    settings = Settings.load(env={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.log_format) == ("127.0.0.1", 8000, "text")


def test_file_then_variables_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, TOML)
    from_file = Settings.load(path, env={})
    assert from_file.data_dir == Path("/srv/lake")
    assert (from_file.port, from_file.workers, from_file.access_log) == (9001, 4, False)
    assert (from_file.s3_endpoint, from_file.s3_region) == ("http://minio:9000", "eu-west-1")
    assert (from_file.log_format, from_file.log_level) == ("json", "warning")
    env = {"LAKE_PORT": "9002", "LAKE_LOG_LEVEL": "DEBUG", "LAKE_ACCESS_LOG": "yes",
           "LAKE_S3_REGION": ""}  # an empty variable counts as unset
    from_env = Settings.load(path, env=env)
    assert (from_env.port, from_env.log_level, from_env.access_log) == (9002, "debug", True)
    assert from_env.s3_region == "eu-west-1"
    flagged = Settings.load(path, env=env, port=9003, workers=None, log_level="error")
    assert (flagged.port, flagged.workers, flagged.log_level) == (9003, 4, "error")


def test_lake_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'metadata_url = "postgresql://db/lake"\n')
    settings = Settings.from_env({"LAKE_CONFIG": str(path)})
    assert settings.metadata_url == "postgresql://db/lake"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("prot = 1\n", {}, "unknown setting 'prot'"),
        ("[s3]\nendpont = 'x'\n", {}, "unknown setting 's3_endpont'"),
        ('port = "eighty"\n', {}, "not a valid int for port"),
        ("port = 80.5\n", {}, "not a valid int for port"),
        ("access_log = 1\n", {}, "not a valid bool"),
        ("workers = 0\n", {}, "workers must be at least 1"),
        ("port = [\n", {}, "not valid TOML"),
        ("", {"LAKE_PORT": "70000"}, "port must be between 0 and 65535"),
        ("", {"LAKE_LOG_FORMAT": "xml"}, "log_format must be one of json, text"),
        ("", {"LAKE_ACCESS_LOG": "maybe"}, "LAKE_ACCESS_LOG"),
        ("", {"LAKE_READY_TIMEOUT": "-1"}, "ready_timeout must be positive"),
        ("", {"LAKE_RANGE_CACHE_MB": "-1"}, "range_cache_mb must not be negative"),
        ("", {"LAKE_COMMIT_WORKERS": "-1"}, "commit_workers must not be negative"),
    ],
)
def test_bad_settings_are_refused_with_their_source(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.load(write(tmp_path, text), env=env)


async def test_range_cache_size_reaches_the_core(tmp_path: Path) -> None:
    settings = Settings.load(None, {"LAKE_RANGE_CACHE_MB": "3"}, data_dir=tmp_path)
    g = await open_graveler(settings)
    try:
        assert g.node_cache.encoded_max_bytes == 3 * 1024 * 1024
        assert g.workers is not None and g.workers.cache[1] == 3 * 1024 * 1024
    finally:
        await g.close()


async def test_commit_workers_reach_the_core(tmp_path: Path) -> None:
    settings = Settings.load(None, {"LAKE_COMMIT_WORKERS": "0"}, data_dir=tmp_path)
    g = await open_graveler(settings)
    try:
        assert g.workers is None
    finally:
        await g.close()


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        Settings.load(tmp_path / "nope.toml", env={})


def test_serve_refuses_a_bad_configuration_before_starting(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = -2\n")
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "lakeproxy", "serve", "--config", str(path), "--data-dir",
         str(data)], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2
    assert "workers must be at least 1" in result.stderr
    assert not data.exists()  # nothing was created


def test_every_setting_and_variable_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for f in fields(Settings):
        assert f"`{f.name}`" in doc, f.name
        assert f"LAKE_{f.name.upper()}" in doc, f.name
    used = set()
    for source in (ROOT / "lakeproxy").rglob("*.py"):
        used |= set(re.findall(r"\bLAKE_[A-Z0-9_]*[A-Z0-9]\b", source.read_text()))
    missing = sorted(v for v in used if v not in doc)
    assert not missing, f"undocumented variables: {missing}"
