"""Hand-made S3 requests: SigV4-signed by botocore's signer, sent byte for byte by http.client.

Lets a test send what no SDK would (a wrong Content-Length, a hostile XML body, a missing
header) while still passing authentication, so the gateway's handling of the input itself is
what gets tested.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from unittest import mock
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.server import Server

REGION = "us-east-1"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes = field(repr=False)

    @property
    def code(self) -> str | None:
        """The S3 error code of an XML error body."""
        found = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return found.group(1).decode() if found else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def is_s3_error(self, code: str) -> bool:
        return (self.body.startswith(b"<?xml") and b"<Error>" in self.body
                and self.code == code)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@contextlib.contextmanager
def clock(at: dt.datetime | None) -> Iterator[None]:
    """Make botocore's signer believe the time is `at` (naive UTC), when given."""
    if at is None:
        yield
        return
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        yield


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def sign(
    server: Server,
    method: str,
    target: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    unsigned_payload: bool = False,
    at: dt.datetime | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    content_sha256: str | None = None,
) -> dict[str, str]:
    """The headers (Host, X-Amz-Date, X-Amz-Content-SHA256, Authorization + `headers`) of a
    SigV4 header-signed request for `target` (the raw, already %-encoded path and query)."""
    url = server.endpoint + target
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if unsigned_payload:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    creds = Credentials(access_key or server.access_key, secret_key or server.secret_key)
    signer = S3SigV4Auth(creds, "s3", REGION)
    if content_sha256 is not None:  # sign this x-amz-content-sha256 value, whatever it is
        signer.payload = lambda _request: content_sha256  # type: ignore[method-assign]
    with clock(at):
        signer.add_auth(request)
    out = {"Host": urlsplit(url).netloc}
    out.update({k: v for k, v in request.headers.items()})
    return out


def presign(
    server: Server,
    method: str,
    target: str,
    *,
    expires: int = 300,
    at: dt.datetime | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A SigV4 presigned URL path+query for `target` (relative to the endpoint)."""
    url = server.endpoint + target
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    creds = Credentials(server.access_key, server.secret_key)
    with clock(at):
        S3SigV4QueryAuth(creds, "s3", REGION, expires=expires).add_auth(request)
    parts = urlsplit(request.url)
    return f"{parts.path}?{parts.query}"


def send(
    server: Server,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes = b"",
    *,
    timeout: float = 30,
) -> Reply:
    """Send exactly these headers and body (no Host, Content-Length or encoding added)."""
    parts = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if body:
            conn.send(body)
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, response.headers, data)
    finally:
        conn.close()


def call(
    server: Server,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    headers: Mapping[str, str] | None = None,
    content_length: bool = True,
    **signing: object,
) -> Reply:
    """Sign and send in one go; Content-Length is the body's unless content_length=False."""
    extra = dict(headers or {})
    if content_length and (body or method in ("PUT", "POST")):
        extra.setdefault("Content-Length", str(len(body)))
    signed = sign(server, method, target, body=body, headers=extra, **signing)  # type: ignore[arg-type]
    return send(server, method, target, signed, body)


def send_then_disconnect(server: Server, method: str, target: str,
                         headers: Mapping[str, str], partial_body: bytes) -> None:
    """Send the head and part of the body of a request, then drop the connection."""
    parts = urlsplit(server.endpoint)
    head = [f"{method} {target} HTTP/1.1"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + partial_body
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
