"""Listings follow the server's pages to the end, and refuse a server that never advances."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.cli.conftest import Lake, isolated_env
from tests.cli.test_commands import put


def test_every_listing_reads_all_pages(lake: Lake, repo: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lakeproxy.cli.client.PAGE_SIZE", 2)
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        put(lake, tmp_path, f"lake://{repo}/main/{key}", key.encode())
    assert [d["path"] for d in lake.json("diff", f"lake://{repo}/main")] == keys
    assert [o["path"] for o in lake.json("ls", f"lake://{repo}/main", "-r")] == keys
    for i in range(4):
        lake.ok("branch", "create", f"lake://{repo}/b{i}", "-s", f"lake://{repo}/main")
        lake.ok("commit", f"lake://{repo}/main", "-m", f"c{i}", "--allow-empty")
    assert len(lake.json("branch", "list", f"lake://{repo}")) == 5
    assert len(lake.json("log", f"lake://{repo}/main")) == 5
    assert len(lake.json("log", f"lake://{repo}/main", "-n", "3")) == 3
    for i in range(3):
        lake.ok("tag", "create", f"lake://{repo}/t{i}", f"lake://{repo}/main")
    assert [t["id"] for t in lake.json("tag", "list", f"lake://{repo}")] == ["t0", "t1", "t2"]


class StuckPager(BaseHTTPRequestHandler):
    """Answers every listing with has_more and the same next_offset."""

    def do_GET(self) -> None:
        body = json.dumps({"pagination": {"has_more": True, "next_offset": "same", "results": 1,
                                          "max_per_page": 1000},
                           "results": [{"id": "same", "default_branch": "main"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stuck_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StuckPager)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_a_pager_that_does_not_advance_is_an_error_not_a_loop(stuck_server: str,
                                                              tmp_path: Path) -> None:
    lake = Lake({**isolated_env(tmp_path), "LAKE_ENDPOINT": stuck_server,
                 "LAKE_ACCESS_KEY": "a", "LAKE_SECRET_KEY": "b"})
    result = lake.fails(1, "repo", "list")
    assert "does not advance" in result.stderr
