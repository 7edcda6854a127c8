"""`lake serve --tls-cert/--tls-key`: boto3 over HTTPS with what it sends there by default.

Over HTTPS, current boto3 streams a PutObject body as `aws-chunked` with an unsigned payload
and a CRC trailer (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`); the tests check that this is what
went over the wire, that the trailer was verified and kept, and that everything else (multipart,
ranged reads, listings, the REST API) works on the TLS port as on plain HTTP.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
import subprocess
import sys
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server import ACCESS_KEY, ROOT, SECRET_KEY, Server, free_port, lake_serve


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as two PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder)
    with lake_serve(folder / "data", "--tls-cert", str(cert), "--tls-key", str(key)) as server:
        yield Server(server.endpoint.replace("http://", "https://"), server.data_dir,
                     process=server.process), cert


@pytest.fixture(scope="module")
def s3(tls_server: tuple[Server, Path]) -> Any:
    server, cert = tls_server
    client = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1", verify=str(cert),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    client.create_bucket(Bucket="tls-repo")
    return client


def test_put_streams_aws_chunked_with_a_verified_crc_trailer(s3: Any) -> None:
    sent: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append(dict(request.headers))

    s3.meta.events.register("before-send.s3.PutObject", record)
    try:
        body = bytes(range(256)) * 4096  # 1 MiB
        s3.put_object(Bucket="tls-repo", Key="main/data/blob.bin", Body=body)
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", record)
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v
               for k, v in sent[-1].items()}
    # What boto3 chooses over HTTPS: the trailer form, unsigned payload, CRC32 by default.
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "aws-chunked" in headers["content-encoding"]
    assert headers["x-amz-trailer"].lower().startswith("x-amz-checksum-")
    head = s3.head_object(Bucket="tls-repo", Key="main/data/blob.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    if headers["x-amz-trailer"].lower() == "x-amz-checksum-crc32":
        crc = zlib.crc32(body).to_bytes(4, "big")
        assert head["ChecksumCRC32"] == base64.b64encode(crc).decode()
    got = s3.get_object(Bucket="tls-repo", Key="main/data/blob.bin")["Body"].read()
    assert got == body


def test_multipart_ranges_and_listing_over_tls(s3: Any, tmp_path: Path) -> None:
    data = hashlib.sha256(b"seed").digest() * (12 * 1024 * 1024 // 32)  # 12 MiB
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024,
                            multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(source), "tls-repo", "main/big.bin", Config=config)
    head = s3.head_object(Bucket="tls-repo", Key="main/big.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    part = s3.get_object(Bucket="tls-repo", Key="main/big.bin", Range="bytes=100-199")
    assert part["Body"].read() == data[100:200]
    target = tmp_path / "back.bin"
    s3.download_file("tls-repo", "main/big.bin", str(target))
    assert target.read_bytes() == data
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tls-repo", Prefix="main/")["Contents"]]
    assert "main/big.bin" in keys


def test_the_rest_api_and_health_share_the_tls_port(tls_server: tuple[Server, Path]) -> None:
    server, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(server.endpoint + "/healthz", context=context) as response:
        assert response.status == 200
    request = urllib.request.Request(server.endpoint + "/api/v1/repositories")
    token = base64.b64encode(f"{ACCESS_KEY}:{SECRET_KEY}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, context=context) as response:
        assert response.status == 200
    # Plain HTTP on the TLS port gets no answer from the application.
    plain = server.endpoint.replace("https://", "http://") + "/healthz"
    with pytest.raises(OSError):
        urllib.request.urlopen(plain, timeout=5)


def test_an_unusable_certificate_stops_the_start_with_one_message(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    result = subprocess.run(
        [sys.executable, "-m", "lakeproxy", "serve", "--data-dir", str(tmp_path / "data"),
         "--port", str(free_port()), "--tls-cert", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LAKE_ROOT_ACCESS_KEY": ACCESS_KEY,
             "LAKE_ROOT_SECRET_KEY": SECRET_KEY},
    )
    assert result.returncode == 1
    assert "cannot use the TLS certificate" in result.stderr
    assert "Traceback" not in result.stderr
