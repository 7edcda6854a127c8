"""The gateway's access table: a rule for every routed operation, each the intended one."""

from __future__ import annotations

import pytest

from lakeproxy.auth import Level, Principal
from lakeproxy.errors import AccessDenied
from lakeproxy.gateway.operations import (
    ACCESS,
    ANY_KEY,
    OPERATIONS,
    READ,
    REPOSITORY_ADMIN,
    SERVER_ADMIN,
    WRITE,
    authorize,
)
from lakeproxy.gateway.routing import ROUTES

ROUTED = sorted({route.operation for route in ROUTES})


def base(operation: str) -> str:
    return operation.split(":", 1)[0]


@pytest.mark.parametrize("operation", ROUTED)
def test_every_routed_operation_has_a_rule(operation: str) -> None:
    assert base(operation) in ACCESS


def test_every_handler_has_a_rule_and_every_rule_a_route() -> None:
    assert set(OPERATIONS) <= set(ACCESS)
    assert set(ACCESS) == {base(op) for op in ROUTED}


def intended(operation: str) -> object:
    """The rule an operation should have, from its S3 name alone."""
    if operation == "ListBuckets":
        return ANY_KEY
    if operation == "CreateBucket":
        return SERVER_ADMIN
    if operation == "DeleteBucket":
        return REPOSITORY_ADMIN
    if operation.startswith(("Get", "Head", "List", "UnsetBucketConfig", "NotImplemented")):
        return READ
    if operation.startswith(("Put", "Delete", "Create", "Upload", "Complete", "Abort", "Copy")):
        return WRITE
    raise AssertionError(f"no intended rule for {operation}")


@pytest.mark.parametrize("operation", ROUTED)
def test_rules_are_the_intended_ones(operation: str) -> None:
    assert ACCESS[base(operation)] == intended(base(operation))


READER = Principal("AKREADER", grants={"data": Level.READ})
WRITER = Principal("AKWRITER", grants={"data": Level.WRITE})
OWNER = Principal("AKOWNER", grants={"data": Level.ADMIN})
ADMIN = Principal("AKADMIN", admin=True)
STRANGER = Principal("AKSTRANGER", grants={"elsewhere": Level.ADMIN})

ALLOWED: dict[str, set[str]] = {
    "GetObject": {"AKREADER", "AKWRITER", "AKOWNER", "AKADMIN"},
    "UnsetBucketConfig:cors": {"AKREADER", "AKWRITER", "AKOWNER", "AKADMIN"},
    "PutObject": {"AKWRITER", "AKOWNER", "AKADMIN"},
    "DeleteObjects": {"AKWRITER", "AKOWNER", "AKADMIN"},
    "UploadPartCopy": {"AKWRITER", "AKOWNER", "AKADMIN"},
    "DeleteBucket": {"AKOWNER", "AKADMIN"},
    "CreateBucket": {"AKADMIN"},
    "ListBuckets": {"AKREADER", "AKWRITER", "AKOWNER", "AKADMIN", "AKSTRANGER"},
}


@pytest.mark.parametrize("operation", sorted(ALLOWED))
@pytest.mark.parametrize("principal", [READER, WRITER, OWNER, ADMIN, STRANGER],
                         ids=lambda p: p.access_key_id)
def test_authorize(operation: str, principal: Principal) -> None:
    bucket = "" if operation == "ListBuckets" else "data"
    if principal.access_key_id in ALLOWED[operation]:
        authorize(principal, operation, bucket)
    else:
        with pytest.raises(AccessDenied):
            authorize(principal, operation, bucket)


def test_unknown_operations_are_refused() -> None:
    with pytest.raises(AccessDenied, match="no access rule"):
        authorize(ADMIN, "SomethingNew", "data")
