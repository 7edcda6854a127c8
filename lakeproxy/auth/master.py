"""The server master key: the AES-256 key that encrypts access key secrets at rest.

It comes from `LAKE_MASTER_KEY` (32 random bytes in base64, URL-safe or standard, padding
optional). Without it, the embedded default (SQLite in the data directory) generates one on
its first start into `DATA_DIR/master.key`, readable by the owner only. A server whose metadata
store lives elsewhere (PostgreSQL) must be given the key, so every process sharing the store
uses the same one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

from lakeproxy.errors import LakeproxyError

MASTER_KEY_FILE = "master.key"
MASTER_KEY_BYTES = 32
MASTER_KEY_ENV = "LAKE_MASTER_KEY"


class MasterKeyError(LakeproxyError):
    """The master key is missing, malformed, or not the one the key store was created with."""


def new_master_key() -> str:
    """A fresh master key, as the text `LAKE_MASTER_KEY` and `master.key` hold."""
    return base64.urlsafe_b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")


def parse_master_key(text: str, *, source: str = MASTER_KEY_ENV) -> bytes:
    """The 32 key bytes of a base64 text (URL-safe or standard alphabet, padding optional).

    Raises:
        MasterKeyError: when the text is not base64 of exactly 32 bytes.
    """
    cleaned = "".join(text.split())
    cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"{source} must be {MASTER_KEY_BYTES} random bytes in base64 (generate one with "
            "`python -c \"import base64, os; print(base64.urlsafe_b64encode(os.urandom(32))"
            ".decode())\"`)"
        )
    return raw


def load_master_key(data_dir: Path, configured: str | None, *, embedded: bool) -> bytes:
    """The master key: the configured one, else (embedded default only) the data directory's.

    Args:
        data_dir: where the embedded default keeps `master.key`.
        configured: the value of `LAKE_MASTER_KEY`, if set.
        embedded: whether the metadata store is the embedded SQLite of `data_dir`.

    Raises:
        MasterKeyError: when the key is malformed, or missing on a shared metadata store.
    """
    if configured:
        return parse_master_key(configured)
    if not embedded:
        raise MasterKeyError(
            f"set {MASTER_KEY_ENV} (32 random bytes in base64): every server sharing this "
            "metadata store needs the same master key to read the access keys"
        )
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        _create_exclusively(path, new_master_key())
    return parse_master_key(path.read_text(), source=str(path))


def _create_exclusively(path: Path, text: str) -> None:
    """Write `path` whole, owner-only, unless it exists (then keep the existing one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # a concurrent start won: keep its key
            os.link(tmp, path)  # atomic: the file appears whole or not at all
    finally:
        tmp.unlink(missing_ok=True)
