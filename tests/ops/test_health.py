"""/healthz and /readyz on the real app: readiness follows real failures of the stores."""

from __future__ import annotations

import json
import shutil

import aiohttp

from tests.ops.conftest import Running


async def fetch(running: Running, path: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(running.endpoint + path) as r:
        return r.status, await r.json()


async def test_healthz_and_readyz_answer_without_credentials(running: Running) -> None:
    assert await fetch(running, "/healthz") == (200, {"status": "ok"})
    status, body = await fetch(running, "/readyz")
    assert status == 200
    assert body == {"status": "ready", "checks": {"metadata": "ok", "blocks": "ok"}}


async def test_readyz_is_503_while_the_block_store_directory_is_unusable(
    running: Running,
) -> None:
    s3 = running.s3()
    await running.run(s3.create_bucket, Bucket="ready")
    await running.run(s3.put_object, Bucket="ready", Key="main/a", Body=b"a")
    blocks = running.settings.data_dir / "blocks"
    moved = blocks.with_name("blocks.away")
    blocks.rename(moved)
    blocks.write_bytes(b"not a directory")  # e.g. a volume that is no longer mounted
    try:
        status, body = await fetch(running, "/readyz")
        assert status == 503
        assert body["status"] == "unavailable"
        checks = body["checks"]
        assert isinstance(checks, dict)
        assert checks["metadata"] == "ok"
        assert checks["blocks"] != "ok" and "Error" in checks["blocks"]
        assert (await fetch(running, "/healthz"))[0] == 200  # alive, only not ready
    finally:
        blocks.unlink()
        moved.rename(blocks)
    assert (await fetch(running, "/readyz"))[0] == 200
    assert not list(blocks.glob(".readyz-*"))  # the probe leaves nothing behind
    got = await running.run(s3.get_object, Bucket="ready", Key="main/a")
    assert got["Body"].read() == b"a"


async def test_readyz_is_503_once_the_metadata_store_is_closed(running: Running) -> None:
    await running.graveler.store.close()
    status, body = await fetch(running, "/readyz")
    assert status == 503
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert "closed" in checks["metadata"]
    assert checks["blocks"] == "ok"
    warning = [json.loads(line) for line in running.log_lines()
               if '"not ready' in line]
    assert warning and warning[0]["level"] == "WARNING"


async def test_readyz_recreates_a_missing_blocks_directory(running: Running) -> None:
    shutil.rmtree(running.settings.data_dir / "blocks", ignore_errors=True)
    # A missing folder is created again by the probe: the store can still write.
    assert (await fetch(running, "/readyz"))[0] == 200
