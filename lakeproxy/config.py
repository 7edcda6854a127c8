"""Settings of a lakeproxy process, loaded once: defaults, then `LAKE_*` variables, then flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from lakeproxy.blockstore import S3Settings


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the embedded default keeps its data, and how to reach the stores at scale."""

    data_dir: Path = Path("./lake-data")
    metadata_url: str | None = None  # None: SQLite in the data directory
    s3_endpoint: str | None = None
    s3_region: str | None = None
    default_namespace: str | None = None  # s3://bucket/prefix for new repositories
    sqlite_synchronous: str = "FULL"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        settings = cls(
            data_dir=Path(env.get("LAKE_DATA_DIR", "./lake-data")),
            metadata_url=env.get("LAKE_METADATA_URL") or None,
            s3_endpoint=env.get("LAKE_S3_ENDPOINT") or None,
            s3_region=env.get("LAKE_S3_REGION") or None,
            default_namespace=env.get("LAKE_DEFAULT_NAMESPACE") or None,
            sqlite_synchronous=env.get("LAKE_SQLITE_SYNCHRONOUS", "FULL"),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given)  # type: ignore[arg-type]

    @property
    def s3(self) -> S3Settings:
        return S3Settings(endpoint_url=self.s3_endpoint, region=self.s3_region)
