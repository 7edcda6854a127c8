"""Start a real `lake serve` subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCESS_KEY = "AKLPTESTACCESSKEY001"
SECRET_KEY = "test/secret+key/0123456789abcdefghijklmn"
# Servers sharing a PostgreSQL metadata store must share the master key that encrypts the
# access keys kept there.
MASTER_KEY = "bGFrZXByb3h5LXRlc3QtbWFzdGVyLWtleS0zMmJ5dGU="


@dataclass(frozen=True)
class Server:
    endpoint: str
    data_dir: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    process: subprocess.Popen[bytes] | None = None
    metadata_url: str | None = None  # None: SQLite in the data directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lake serve exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError("lake serve did not start listening")


@contextlib.contextmanager
def lake_serve(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    metadata_url: str | None = None,
) -> Iterator[Server]:
    """Run `lake serve` until the block ends; SIGTERM, then SIGKILL if it lingers.

    `metadata_url` (LAKE_METADATA_URL) selects a PostgreSQL metadata store; without it the
    server keeps SQLite in `data_dir`, whatever the calling environment says.
    """
    port = free_port()
    full_env = {**os.environ, "LAKE_ROOT_ACCESS_KEY": ACCESS_KEY,
                "LAKE_ROOT_SECRET_KEY": SECRET_KEY, "LAKE_METADATA_URL": metadata_url or "",
                **({"LAKE_MASTER_KEY": MASTER_KEY} if metadata_url else {}), **(env or {})}
    log = (data_dir.parent / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakeproxy", "serve", "--data-dir", str(data_dir),
         "--port", str(port), *args],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=full_env,
    )
    try:
        wait_for_port(port, proc)
        yield Server(f"http://127.0.0.1:{port}", data_dir, process=proc,
                     metadata_url=metadata_url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
