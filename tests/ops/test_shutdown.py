"""Graceful shutdown of a real `lake serve`: SIGTERM lets an upload in flight finish."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from pathlib import Path

import boto3
from botocore.config import Config

from tests.e2e.rawhttp import sign
from tests.server import Server, lake_serve

CHUNK = 64 * 1024
CHUNKS = 8


def client(server: Server) -> object:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def read_status_line(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 30
    while b"\r\n" not in data and time.monotonic() < deadline:
        more = sock.recv(4096)
        if not more:
            break
        data += more
    return data.split(b"\r\n", 1)[0]


def test_sigterm_finishes_the_upload_in_flight_and_refuses_new_connections(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    payload = bytes(range(256)) * (CHUNK * CHUNKS // 256)
    with lake_serve(data_dir) as server:
        with contextlib.closing(client(server)) as s3:  # type: ignore[type-var]
            s3.create_bucket(Bucket="grace")  # type: ignore[attr-defined]
        port = int(server.endpoint.rsplit(":", 1)[1])
        target = "/grace/main/slow.bin"
        headers = sign(server, "PUT", target, headers={"Content-Length": str(len(payload))},
                       unsigned_payload=True)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as upload:
            upload.sendall(f"PUT {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1"))
            upload.sendall(payload[:CHUNK])
            time.sleep(0.3)  # the handler is now reading the body
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            for _ in range(50):
                if refused(port):
                    break
                time.sleep(0.1)
            assert refused(port), "still accepting connections after SIGTERM"
            for i in range(1, CHUNKS):  # the rest, over a couple of seconds
                upload.sendall(payload[i * CHUNK:(i + 1) * CHUNK])
                time.sleep(0.25)
            status = read_status_line(upload)
        assert status.startswith(b"HTTP/1.1 200"), status
        assert server.process.wait(timeout=30) == 0
    with lake_serve(data_dir) as again, contextlib.closing(client(again)) as s3:  # type: ignore[type-var]
        got = s3.get_object(Bucket="grace", Key="main/slow.bin")  # type: ignore[attr-defined]
        assert got["Body"].read() == payload
