"""A real S3 endpoint for tests: moto's server on a free port of 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3-compatible server in a thread; yields its endpoint URL.

    The server keeps its state in memory until it stops; give each test its own bucket.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
