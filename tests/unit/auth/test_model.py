"""Grant levels and what a principal may do."""

from __future__ import annotations

import pytest

from lakeproxy.auth import Level, Principal
from lakeproxy.errors import AccessDenied, InvalidArgument
from lakeproxy.wire_errors import wire_of


@pytest.mark.parametrize(("text", "level"), [
    ("read", Level.READ), ("WRITE", Level.WRITE), (" admin ", Level.ADMIN),
])
def test_parse_levels(text: str, level: Level) -> None:
    assert Level.parse(text) is level


@pytest.mark.parametrize("text", ["", "owner", "1", "readwrite"])
def test_parse_rejects_unknown_levels(text: str) -> None:
    with pytest.raises(InvalidArgument, match="read, write or admin"):
        Level.parse(text)


def test_levels_are_ordered() -> None:
    assert Level.READ < Level.WRITE < Level.ADMIN


READER = Principal("AKREADER", grants={"data": Level.READ})
WRITER = Principal("AKWRITER", grants={"data": Level.WRITE, "other": Level.READ})
OWNER = Principal("AKOWNER", grants={"data": Level.ADMIN})
ADMIN = Principal("AKADMIN", admin=True)
NOBODY = Principal("AKNOBODY")

CASES = [
    (READER, "data", {Level.READ}),
    (READER, "other", set()),
    (WRITER, "data", {Level.READ, Level.WRITE}),
    (WRITER, "other", {Level.READ}),
    (OWNER, "data", {Level.READ, Level.WRITE, Level.ADMIN}),
    (ADMIN, "anything", {Level.READ, Level.WRITE, Level.ADMIN}),
    (ADMIN, None, {Level.READ, Level.WRITE, Level.ADMIN}),
    (OWNER, None, set()),
    (NOBODY, "data", set()),
]


@pytest.mark.parametrize(("principal", "repository", "allowed"), CASES)
def test_allows_and_require(principal: Principal, repository: str | None,
                            allowed: set[Level]) -> None:
    for level in Level:
        assert principal.allows(repository, level) is (level in allowed)
        if level in allowed:
            principal.require(repository, level)
        else:
            with pytest.raises(AccessDenied) as info:
                principal.require(repository, level)
            assert principal.access_key_id in str(info.value)
            assert wire_of(info.value).status == 403
            assert wire_of(info.value).s3_code == "AccessDenied"


def test_sees() -> None:
    assert READER.sees("data") and not READER.sees("other")
    assert ADMIN.sees("whatever")
    assert not NOBODY.sees("data")


def test_principals_are_values() -> None:
    same = Principal("AKREADER", grants={"data": Level.READ})
    assert same == READER and hash(same) == hash(READER)
    assert len({READER, same, WRITER}) == 2
