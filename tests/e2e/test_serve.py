"""`lake serve` itself: first-start credentials, several workers on one port, virtual hosts."""

from __future__ import annotations

import http.client
import os
import stat
import subprocess
import sys
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.e2e.conftest import s3_client
from tests.server import ROOT, Server, free_port, lake_serve, wait_for_port


def test_first_start_generates_and_prints_root_credentials(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_ROOT_")}
    data = tmp_path / "data"
    with subprocess.Popen(
        [sys.executable, "-m", "lakeproxy", "serve", "--data-dir", str(data), "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
    ) as proc:
        try:
            wait_for_port(port, proc)
            lines = []
            assert proc.stdout is not None
            while len(lines) < 4:
                lines.append(proc.stdout.readline().decode().strip())
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    access = next(line.split(": ", 1)[1] for line in lines if line.startswith("access key: "))
    secret = next(line.split(": ", 1)[1] for line in lines if line.startswith("secret key: "))
    creds = data / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert secret in creds.read_text()
    env2 = {**os.environ, "LAKE_ROOT_ACCESS_KEY": "", "LAKE_ROOT_SECRET_KEY": ""}
    with lake_serve(data, env=env2) as server:
        s3 = s3_client(Server(server.endpoint, data, access, secret))
        s3.create_bucket(Bucket="first-start")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["first-start"]
        log = (data.parent / f"serve-{server.endpoint.rsplit(':', 1)[1]}.log").read_text()
        assert secret not in log  # printed once, on the first start only


def test_two_workers_share_one_port_and_agree(tmp_path: Path) -> None:
    with lake_serve(tmp_path / "data", "--workers", "2") as server:
        bucket = f"w-{uuid.uuid4().hex[:8]}"
        clients: list[Any] = [s3_client(server) for _ in range(8)]
        clients[0].create_bucket(Bucket=bucket)
        time.sleep(0.5)  # the second worker starts in its own process

        def write_then_read(i: int) -> bytes:
            c = clients[i % len(clients)]
            c.put_object(Bucket=bucket, Key=f"main/k{i}", Body=str(i).encode())
            return bytes(clients[(i + 3) % len(clients)].get_object(
                Bucket=bucket, Key=f"main/k{i}")["Body"].read())

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(write_then_read, range(200)))
        assert results == [str(i).encode() for i in range(200)]
        listed = clients[5].list_objects_v2(Bucket=bucket, Prefix="main/")["KeyCount"]
        assert listed == 200


def test_virtual_host_addressing(tmp_path: Path) -> None:
    with lake_serve(tmp_path / "data", "--domain", "s3.lake.test") as server:
        path_style = s3_client(server)
        path_style.create_bucket(Bucket="vhost")
        path_style.put_object(Bucket="vhost", Key="main/file.txt", Body=b"by host")
        port = server.endpoint.rsplit(":", 1)[1]
        virtual = boto3.client(
            "s3", endpoint_url=f"http://s3.lake.test:{port}",
            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}),
        )

        def to_loopback(request: Any, **_: Any) -> None:
            # The name does not resolve here: keep the Host header, connect to 127.0.0.1.
            request.url = request.url.replace(f"vhost.s3.lake.test:{port}",
                                              f"127.0.0.1:{port}")
            request.headers["Host"] = f"vhost.s3.lake.test:{port}"

        virtual.meta.events.register_last("before-send.s3", to_loopback)
        assert virtual.get_object(Bucket="vhost", Key="main/file.txt")["Body"].read() == \
            b"by host"
        keys = [o["Key"] for o in virtual.list_objects_v2(Bucket="vhost")["Contents"]]
        assert keys == ["main/file.txt"]
        # boto3's default presigned URLs (SigV2) sign the bucket even when the host names it.
        url = virtual.generate_presigned_url(
            "get_object", Params={"Bucket": "vhost", "Key": "main/file.txt"}, ExpiresIn=60)
        parsed = urllib.parse.urlsplit(url)
        assert "Signature=" in parsed.query
        conn = http.client.HTTPConnection("127.0.0.1", int(port))
        try:
            conn.request("GET", f"{parsed.path}?{parsed.query}",
                         headers={"Host": f"vhost.s3.lake.test:{port}"})
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"by host")
        finally:
            conn.close()
