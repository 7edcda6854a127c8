"""The master key: configured, or generated once into the embedded default's data directory."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from lakeproxy.auth.master import (
    MASTER_KEY_FILE,
    MasterKeyError,
    load_master_key,
    new_master_key,
    parse_master_key,
)


def test_generated_once_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = load_master_key(data, None, embedded=True)
    assert len(first) == 32
    path = data / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(data, None, embedded=True) == first
    assert [p.name for p in data.iterdir()] == [MASTER_KEY_FILE]  # no temporary file left


def test_configured_key_wins(tmp_path: Path) -> None:
    raw = os.urandom(32)
    for text in (base64.urlsafe_b64encode(raw).decode(), base64.b64encode(raw).decode(),
                 base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert load_master_key(tmp_path, text, embedded=True) == raw
    assert not (tmp_path / MASTER_KEY_FILE).exists()


def test_shared_store_needs_a_configured_key(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="LAKE_MASTER_KEY"):
        load_master_key(tmp_path, None, embedded=False)
    assert not (tmp_path / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"x" * 16).decode(),
                                  base64.b64encode(b"x" * 33).decode()])
def test_malformed_keys_are_refused(text: str) -> None:
    with pytest.raises(MasterKeyError, match="32 random bytes"):
        parse_master_key(text)


def test_malformed_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / MASTER_KEY_FILE).write_text("garbage")
    with pytest.raises(MasterKeyError, match=MASTER_KEY_FILE):
        load_master_key(tmp_path, None, embedded=True)


def test_new_master_key_round_trips() -> None:
    assert len(parse_master_key(new_master_key())) == 32
