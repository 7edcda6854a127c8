"""The served OpenAPI document describes the routes, and the server honours it: for inputs
generated from the document (a bounded number per operation), no 5xx, and every documented
response conforms to its schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from lakeproxy.api.openapi import build_openapi
from lakeproxy.api.routes import ROUTES
from tests.api.conftest import Api
from tests.server import Server

DOCUMENT = build_openapi(ROUTES)
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_served_document_is_valid_and_complete(api: Api) -> None:
    served = api("GET", "/openapi.json").json()
    validate(served)
    assert served == DOCUMENT
    operations = {(m.upper(), p) for p, ops in served["paths"].items() for m in ops}
    assert operations == {(r.method, r.path) for r in ROUTES}


@pytest.fixture(scope="module")
def session(server: Server) -> Iterator[requests.Session]:
    s = requests.Session()
    s.auth = (server.access_key, server.secret_key)
    yield s
    s.close()


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_conforms(case: schemathesis.Case, server: Server, session: requests.Session) -> None:
    case.call_and_validate(
        base_url=server.endpoint + "/api/v1", session=session, timeout=30,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
