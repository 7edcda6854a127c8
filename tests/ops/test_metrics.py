"""/metrics after real boto3 traffic and real commits and merges: the series and their values."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import botocore.exceptions
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lakeproxy.errors import NoChanges
from tests.conftest import body
from tests.ops.conftest import Running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(running: Running, headers: dict[str, str] | None = None) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(
        running.endpoint + "/metrics", headers=headers
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        text = await r.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def traffic(running: Running) -> AsyncIterator[Running]:
    """Three PUTs, two GETs, one missing HEAD, a commit, a failed commit and a merge."""
    s3 = running.s3()
    await running.run(s3.create_bucket, Bucket="metrics-repo")
    for i, size in enumerate((100, 2000, 30_000)):
        await running.run(s3.put_object, Bucket="metrics-repo", Key=f"main/data/{i}.bin",
                          Body=b"x" * size)
    for _ in range(2):
        got = await running.run(s3.get_object, Bucket="metrics-repo", Key="main/data/1.bin")
        assert len(got["Body"].read()) == 2000
    with pytest.raises(botocore.exceptions.ClientError):
        await running.run(s3.head_object, Bucket="metrics-repo", Key="main/nothing")
    g = running.graveler
    await g.commit("metrics-repo", "main", "three objects")
    with pytest.raises(NoChanges):
        await g.commit("metrics-repo", "main", "nothing new")
    await g.create_branch("metrics-repo", "dev", "main")
    await g.put_object("metrics-repo", "dev", "data/3.bin", body(b"y" * 10))
    await g.commit("metrics-repo", "dev", "one more")
    await g.merge("metrics-repo", "dev", "main")
    got = await running.run(s3.get_object, Bucket="metrics-repo", Key="main/data/3.bin")
    assert got["Body"].read() == b"y" * 10
    yield running


async def test_s3_requests_are_counted_by_operation_and_status(traffic: Running) -> None:
    m = await scrape(traffic)
    assert value(m, "lakeproxy_s3_requests_total", operation="PutObject", status="200") == 3
    assert value(m, "lakeproxy_s3_requests_total", operation="GetObject", status="200") == 3
    assert value(m, "lakeproxy_s3_requests_total", operation="HeadObject", status="404") == 1
    assert value(m, "lakeproxy_s3_requests_total", operation="CreateBucket", status="200") == 1
    count = value(m, "lakeproxy_s3_request_duration_seconds_count",
                  operation="PutObject", status="200")
    total = value(m, "lakeproxy_s3_request_duration_seconds_sum",
                  operation="PutObject", status="200")
    inf = value(m, "lakeproxy_s3_request_duration_seconds_bucket",
                operation="PutObject", status="200", le="+Inf")
    assert count == inf == 3
    assert 0 < total < 60


async def test_bytes_in_and_out_are_the_bodies(traffic: Running) -> None:
    m = await scrape(traffic)
    assert value(m, "lakeproxy_s3_received_bytes_total", operation="PutObject") == 32_100
    assert value(m, "lakeproxy_s3_sent_bytes_total", operation="GetObject") == 2 * 2000 + 10
    assert value(m, "lakeproxy_s3_sent_bytes_total", operation="HeadObject") == 0


async def test_commit_and_merge_durations_by_outcome(traffic: Running) -> None:
    m = await scrape(traffic)
    name = "lakeproxy_core_operation_duration_seconds_count"
    assert value(m, name, operation="commit", outcome="ok") == 2
    assert value(m, name, operation="commit", outcome="NoChanges") == 1
    assert value(m, name, operation="merge", outcome="ok") == 1
    assert 0 < value(m, "lakeproxy_core_operation_duration_seconds_sum",
                     operation="merge", outcome="ok") < 60


async def test_node_cache_series_are_consistent(traffic: Running) -> None:
    m = await scrape(traffic)
    hits = value(m, "lakeproxy_node_cache_hits_total")
    misses = value(m, "lakeproxy_node_cache_misses_total")
    assert hits + misses > 0  # the commits and the read after the merge walked ranges
    assert value(m, "lakeproxy_node_cache_hit_ratio") == pytest.approx(hits / (hits + misses))
    assert 0 < value(m, "lakeproxy_node_cache_bytes") <= value(m, "lakeproxy_node_cache_max_bytes")


async def test_labels_name_operations_and_routes_never_paths(traffic: Running) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(traffic.endpoint + path) as r:
                assert r.status == 200
        # The REST API, without credentials: refused, and counted under its route.
        async with session.get(traffic.endpoint + "/api/v1/repositories/metrics-repo/branches"
                               ) as r:
            assert r.status == 401
    m = await scrape(traffic)
    api = {dict(labels)["route"]: v for (name, labels), v in m.items()
           if name == "lakeproxy_http_requests_total" and dict(labels)["status"] == "401"}
    assert len(api) == 1
    (route, count), = api.items()
    assert route == "listBranches" and count == 1
    assert value(m, "lakeproxy_http_requests_total",
                 route="healthz", method="GET", status="200") == 1
    label_values = {v for _, labels in m for _, v in labels}
    assert not any("data/" in v or "metrics-repo" in v for v in label_values)
    assert value(m, "process_resident_memory_bytes") > 0
    assert value(m, "lakeproxy_requests_in_flight") == 1  # the scrape itself


async def test_metrics_can_require_a_bearer_token(running: Running) -> None:
    from lakeproxy.ops import OPS

    running.app[OPS].metrics_token = "s3cr3t-token"
    async with aiohttp.ClientSession() as session:
        async with session.get(running.endpoint + "/metrics") as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with session.get(running.endpoint + "/metrics",
                               headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
    m = await scrape(running, {"Authorization": "Bearer s3cr3t-token"})
    assert value(m, "lakeproxy_http_requests_total",
                 route="metrics", method="GET", status="401") == 2


async def test_access_lines_are_json_with_the_gateway_request_id(traffic: Running) -> None:
    lines = [json.loads(line) for line in traffic.log_lines()]
    access = [line for line in lines if line["logger"] == "lakeproxy.access"]
    puts = [line for line in access if line["operation"] == "PutObject"]
    assert len(puts) == 3
    for line in puts:
        assert {"time", "level", "logger", "message", "request_id"} <= line.keys()
        assert line["method"] == "PUT" and line["status"] == 200
        assert line["path"].startswith("/metrics-repo/main/data/")
        assert line["duration_ms"] >= 0
    assert {line["bytes_in"] for line in puts} == {100, 2000, 30_000}
    ids = [line["request_id"] for line in access]
    assert all(ids) and len(set(ids)) == len(ids)
