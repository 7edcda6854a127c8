"""Structured logs of a real `lake serve`: JSON lines with request ids, and no secrets."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from lakeproxy.logs import bind_request_id, configure_logging, unbind_request_id
from tests.e2e.rawhttp import call, presign
from tests.server import Server, lake_serve


def client(server: Server, **config: Any) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def serve_log(server: Server) -> str:
    port = server.endpoint.rsplit(":", 1)[1]
    return (server.data_dir.parent / f"serve-{port}.log").read_text()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_json_access_lines_carry_the_request_id_the_client_got(tmp_path: Path) -> None:
    with lake_serve(tmp_path / "data", "--log-format", "json") as server:
        s3 = client(server)
        s3.create_bucket(Bucket="logs")
        put = s3.put_object(Bucket="logs", Key="main/k.txt", Body=b"12345")
        request_id = put["ResponseMetadata"]["RequestId"]
        with pytest.raises(s3.exceptions.ClientError):
            s3.get_object(Bucket="logs", Key="main/missing")
        s3.close()
        server.process.send_signal(15)  # type: ignore[union-attr]
        server.process.wait(timeout=30)  # type: ignore[union-attr]
        lines = json_lines(serve_log(server))
    access = {line["request_id"]: line for line in lines if line["logger"] == "lakeproxy.access"}
    line = access[request_id]
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    assert (line["method"], line["path"], line["status"], line["operation"]) == (
        "PUT", "/logs/main/k.txt", 200, "PutObject")
    assert line["bytes_in"] == 5
    missing = [x for x in access.values() if x["path"] == "/logs/main/missing"]
    assert missing and missing[0]["status"] == 404 and missing[0]["operation"] == "GetObject"
    assert any(x["logger"] == "lakeproxy.server" and "stopping" in x["message"] for x in lines)


def test_no_signature_or_secret_reaches_the_logs(tmp_path: Path) -> None:
    with lake_serve(tmp_path / "data", "--log-format", "json", "--log-level", "debug") as server:
        s3 = client(server)
        s3.create_bucket(Bucket="secrets")
        s3.put_object(Bucket="secrets", Key="main/k", Body=b"v")
        v2 = s3.generate_presigned_url(  # SigV2 query form: ?Signature=
            "get_object", Params={"Bucket": "secrets", "Key": "main/k"}, ExpiresIn=300)
        with contextlib.closing(client(server, signature_version="s3v4")) as signer:
            v4 = signer.generate_presigned_url(
                "get_object", Params={"Bucket": "secrets", "Key": "main/k"}, ExpiresIn=300)
        signatures = [v2.split("Signature=")[1].split("&")[0],
                      v4.split("X-Amz-Signature=")[1].split("&")[0]]
        for url in (v2, v4):
            with urllib.request.urlopen(url, timeout=10) as r:
                assert r.read() == b"v"
        v4_sig = signatures[1]
        tampered = v4.replace(v4_sig, v4_sig[:-1] + ("0" if v4_sig[-1] != "0" else "1"))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(tampered, timeout=10)
        assert refused.value.code == 403
        refused.value.close()
        target = presign(server, "GET", "/secrets/main/k")
        signatures.append(target.split("X-Amz-Signature=")[1])
        with urllib.request.urlopen(server.endpoint + target, timeout=10) as r:
            assert r.read() == b"v"
        wrong = call(server, "GET", "/secrets/main/k", secret_key="not-the-secret-key-at-all")
        assert wrong.status == 403
        s3.close()
        text = serve_log(server)
    lines = json_lines(text)
    assert any(x["logger"] == "lakeproxy.access" and x["path"] == "/secrets/main/k"
               and x["status"] == 403 for x in lines)
    for secret in (server.secret_key, *signatures, "X-Amz-Signature", "X-Amz-Credential",
                   "Signature=", "Authorization", "AWSAccessKeyId", "not-the-secret-key-at-all"):
        assert secret not in text


def test_lines_written_during_a_request_carry_its_id_also_from_threads() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("json", "info", stream=stream)
    try:
        token = bind_request_id(lambda: "REQ-1")
        logging.getLogger("lakeproxy.test").info("in the request")
        import contextvars

        ctx = contextvars.copy_context()
        worker = threading.Thread(
            target=ctx.run, args=(logging.getLogger("lakeproxy.test").info, "in a thread"))
        worker.start()
        worker.join(10)
        unbind_request_id(token)
        logging.getLogger("lakeproxy.test").info("after it")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["message"], x["request_id"]) for x in lines] == [
        ("in the request", "REQ-1"), ("in a thread", "REQ-1"), ("after it", None)]


def test_text_format_names_the_request_id(tmp_path: Path) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("text", "warning", stream=stream)
    try:
        token = bind_request_id(lambda: "REQ-2")
        logging.getLogger("lakeproxy.test").warning("careful")
        logging.getLogger("lakeproxy.test").info("hidden by the level")
        unbind_request_id(token)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING lakeproxy.test [REQ-2] careful")
