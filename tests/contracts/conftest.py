"""Fixtures of the contract suites: an S3 endpoint (moto) and a fresh bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from lakeproxy.blockstore import S3Settings
from tests.s3server import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, REGION, moto_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server shared by the whole session."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_settings(s3_endpoint: str) -> S3Settings:
    """Settings reaching the moto server with fake credentials."""
    return S3Settings(
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=FAKE_ACCESS_KEY_ID,
        secret_access_key=FAKE_SECRET_ACCESS_KEY,
    )


@pytest.fixture(scope="session")
def s3_admin(s3_settings: S3Settings) -> Iterator[Any]:
    """A plain boto3 client of the moto server, to arrange and inspect buckets."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_settings.endpoint_url,
        region_name=s3_settings.region,
        aws_access_key_id=s3_settings.access_key_id,
        aws_secret_access_key=s3_settings.secret_access_key,
    )
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_admin: Any) -> str:
    """A new, empty bucket on the moto server."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_admin.create_bucket(Bucket=name)
    return name
