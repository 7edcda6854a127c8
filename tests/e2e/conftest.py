"""A `lake serve` subprocess shared by the end-to-end tests of a module, and S3 clients.

Every module runs twice: on the embedded SQLite store and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.conftest import fresh_schema
from tests.server import Server, lake_serve

E2E_DIR = Path(__file__).resolve().parent

# Tests of what only the embedded store does (such as files it creates in the data directory).
# Marking a test `embedded_store` does the same.
EMBEDDED_ONLY = frozenset({"test_master_key_is_generated_owner_only"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_store: an end-to-end test of the embedded (SQLite) store only"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="tests what only the embedded store does")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            callspec is not None
            and callspec.params.get("server") == "postgres"
            and E2E_DIR in item.path.parents
            and (
                item.get_closest_marker("embedded_store") is not None
                or getattr(item, "originalname", item.name) in EMBEDDED_ONLY
            )
        ):
            item.add_marker(skip)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`lake serve` on SQLite in its data directory, then on PostgreSQL in a fresh schema."""
    base = tmp_path_factory.mktemp("lake")
    if request.param == "sqlite":
        with lake_serve(base / "data") as running:
            yield running
        return
    with fresh_schema() as url, lake_serve(base / "data", metadata_url=url) as running:
        yield running


def s3_client(server: Server, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      **config),
    )


@pytest.fixture(scope="module")
def s3(server: Server) -> Any:
    return s3_client(server)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh repository (created through CreateBucket) with its default branch main."""
    name = f"repo-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
