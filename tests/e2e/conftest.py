"""A `lake serve` subprocess shared by the end-to-end tests of a module, and S3 clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.server import Server, lake_serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("lake")
    with lake_serve(base / "data") as running:
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
