"""Settings of a lakeproxy process, loaded once: defaults, then a TOML file, then `LAKE_*`
variables, then command-line flags (each overrides the one before).

Every field of `Settings` is a setting: its TOML key is the field name (or the part after the
first `_` inside a table named by the part before it: `[s3] endpoint` is `s3_endpoint`), its
variable is `LAKE_` + the field name in capitals. docs/configuration.md lists them all.
"""

from __future__ import annotations

import functools
import logging
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType

from lakeproxy.blockstore import S3Settings

CONFIG_VARIABLE = "LAKE_CONFIG"
ENV_PREFIX = "LAKE_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_CHOICES: dict[str, frozenset[str]] = {
    "log_format": frozenset({"text", "json"}),
    "log_level": frozenset({"debug", "info", "warning", "error", "critical"}),
    "sqlite_synchronous": frozenset({"OFF", "NORMAL", "FULL", "EXTRA"}),
}


class ConfigError(ValueError):
    """A setting has a value lakeproxy cannot use; the message names the setting and its source."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the embedded default keeps its data, how to reach the stores at scale, and how
    `lake serve` listens, logs and reports."""

    data_dir: Path = Path("./lake-data")
    metadata_url: str | None = None  # None: SQLite in the data directory
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_max_attempts: int = 5  # attempts per S3 request, retries included
    s3_connect_timeout: float = 10.0  # seconds
    s3_read_timeout: float = 60.0  # seconds without a byte of an S3 answer before a retry
    default_namespace: str | None = None  # s3://bucket/prefix for new repositories
    sqlite_synchronous: str = "FULL"
    range_cache_mb: int = 256  # encoded ranges kept in memory behind the decoded ones
    commit_workers: int = 1  # helper processes building big commits (0: in the server)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    domain: str | None = None
    region: str = "us-east-1"
    log_format: str = "text"
    log_level: str = "info"
    access_log: bool = True
    metrics_token: str | None = None  # when set, /metrics wants "Authorization: Bearer TOKEN"
    ready_timeout: float = 2.0  # seconds each /readyz probe may take
    shutdown_timeout: float = 30.0  # seconds in-flight requests get after SIGTERM
    tls_cert: Path | None = None  # PEM certificate chain: serve HTTPS instead of HTTP
    tls_key: Path | None = None  # PEM private key of tls_cert (default: inside tls_cert)
    # base64 of 32 bytes: encrypts access key secrets at rest (embedded default: master.key)
    master_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(sorted(allowed))}, not {value!r}"
                )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, not {self.port}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        if self.tls_key is not None and self.tls_cert is None:
            raise ConfigError("tls_key is set but tls_cert is not: give the certificate too")
        if self.ready_timeout <= 0 or self.shutdown_timeout < 0:
            raise ConfigError("ready_timeout must be positive and shutdown_timeout not negative")
        if self.range_cache_mb < 0:
            raise ConfigError(f"range_cache_mb must not be negative, not {self.range_cache_mb}")
        if self.commit_workers < 0:
            raise ConfigError(f"commit_workers must not be negative, not {self.commit_workers}")
        if self.s3_max_attempts < 1:
            raise ConfigError(f"s3_max_attempts must be at least 1, not {self.s3_max_attempts}")
        if self.s3_connect_timeout <= 0 or self.s3_read_timeout <= 0:
            raise ConfigError("s3_connect_timeout and s3_read_timeout must be positive")

    @classmethod
    def load(
        cls,
        config_file: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: object,
    ) -> Settings:
        """Defaults, then the TOML file, then `LAKE_*` variables, then `overrides` (flags).

        Args:
            config_file: a TOML file; None reads the one named by LAKE_CONFIG, if any.
            env: the environment (default: the process's).
            overrides: flag values; None means "not given".

        Raises:
            ConfigError: an unreadable file, an unknown key, or a value of the wrong type.
        """
        env = os.environ if env is None else env
        if config_file is None:
            config_file = env.get(CONFIG_VARIABLE) or None
        values: dict[str, object] = {}
        if config_file is not None:
            values.update(_read_toml(Path(config_file)))
        for name in _hints():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:  # an empty variable counts as unset
                values[name] = _coerce(name, raw, ENV_PREFIX + name.upper())
        for name, value in overrides.items():
            if name not in _hints():
                raise TypeError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """`load` with the file named by LAKE_CONFIG (if any)."""
        return cls.load(None, env, **overrides)

    @property
    def s3(self) -> S3Settings:
        return S3Settings(
            endpoint_url=self.s3_endpoint,
            region=self.s3_region,
            max_attempts=self.s3_max_attempts,
            connect_timeout=self.s3_connect_timeout,
            read_timeout=self.s3_read_timeout,
        )

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level.upper()]


@functools.cache
def _hints() -> dict[str, object]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings)}


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the configuration file {path} is not valid TOML: {exc}") from None
    values: dict[str, object] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                values[f"{key}_{sub}"] = inner
        else:
            values[key] = value
    known = _hints()
    for name, value in list(values.items()):
        if name not in known:
            raise ConfigError(f"{path}: unknown setting {name!r}")
        values[name] = _coerce(name, value, f"{path}: {name}")
    return values


def _coerce(name: str, value: object, source: str) -> object:
    """The value of setting `name` as its field's type; strings (variables, flags) are parsed."""
    hint = _hints()[name]
    types = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
    kind = next(t for t in types if t is not type(None))
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = value.strip().lower() if isinstance(value, str) else None
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise ValueError(value)
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(value)
            if kind is int and isinstance(value, float):
                raise ValueError(value)
            return kind(value)
        if kind is Path:
            if not isinstance(value, str | Path):
                raise ValueError(value)
            return Path(value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value.lower() if name in ("log_format", "log_level") else value
    except ValueError:
        raise ConfigError(
            f"{source}: {value!r} is not a valid {kind.__name__} for {name}"  # type: ignore[union-attr]
        ) from None
