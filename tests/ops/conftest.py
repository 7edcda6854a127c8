"""An in-process server (the real app and runner on a loopback port) for the ops tests."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config

from lakeproxy.config import Settings
from lakeproxy.gateway.app import SERVICES
from lakeproxy.graveler import Graveler
from lakeproxy.logs import configure_logging
from lakeproxy.ops import access_log_options
from lakeproxy.server import RootCredentials, ServeOptions, build_app
from tests.server import ACCESS_KEY, SECRET_KEY


@dataclass
class Running:
    endpoint: str
    app: web.Application
    settings: Settings
    logs: io.StringIO
    clients: list[Any] = field(default_factory=list)

    @property
    def graveler(self) -> Graveler:
        return self.app[SERVICES].graveler

    def s3(self) -> Any:
        """A boto3 client of the server (closed when the test ends)."""
        s3 = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        self.clients.append(s3)
        return s3

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking client call off the event loop the server lives on."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def log_lines(self) -> list[str]:
        return [line for line in self.logs.getvalue().splitlines() if line]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """The server of `lake serve` (app, access observer, JSON logs) on a free port."""
    settings = Settings(data_dir=tmp_path / "data", log_format="json", log_level="info",
                        ready_timeout=2.0)
    logs = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("json", "info", stream=logs)
    app = await build_app(settings, ServeOptions(), RootCredentials(ACCESS_KEY, SECRET_KEY, False))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5, **access_log_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    running = Running(f"http://{host}:{port}", app, settings, logs)
    try:
        yield running
    finally:
        for s3 in running.clients:
            s3.close()
        await runner.cleanup()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
