"""Access keys in the metadata store, their secrets encrypted with the server master key.

Records live in the partition `auth/keys` (access key id -> JSON record), next to the core's
`repos` and `r/<uid>/...` partitions; `auth/meta` holds a check value that tells a wrong master
key apart from a right one. Each secret is sealed with AES-256-GCM under a fresh nonce; the
associated data binds it to its access key id and to the key's rights (admin flag, grants), so
a record copied to another id, or whose rights were edited in the database, no longer opens.

Records are not cached: every lookup reads the record, so a deleted key stops working at the
next request in every process that shares the metadata store. Only the decryption of a record
is remembered, keyed by the record's exact stored bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lakeproxy.auth.master import MASTER_KEY_BYTES, MasterKeyError, load_master_key
from lakeproxy.auth.model import Level, Principal
from lakeproxy.config import Settings
from lakeproxy.errors import Conflict, InvalidArgument, KeyNotFound, PreconditionFailed
from lakeproxy.graveler.ids import validate_repository_id
from lakeproxy.metastore.base import ABSENT, MetadataStore

log = logging.getLogger("lakeproxy.auth")

KEYS = "auth/keys"
META = "auth/meta"
_CHECK_KEY = b"master-key-check"
_CHECK_PLAINTEXT = b"lakeproxy access keys"
_CHECK_AAD = b"lakeproxy:master-key-check:v1"
_NONCE_BYTES = 12
MAX_ACCESS_KEY_ID = 128
MAX_DESCRIPTION = 1024
_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
_CREATE_ATTEMPTS = 5
_NO_GRANTS: Mapping[str, Level] = MappingProxyType({})
_OPENED_MAX = 1024


def new_access_key_id() -> str:
    """An id like the root key's: `AKLP` and 16 upper-case letters or digits."""
    return "AKLP" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    """40 random characters of letters, digits, `+` and `/`, as AWS secrets look."""
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about an access key: everything but its secret."""

    access_key_id: str
    admin: bool
    grants: Mapping[str, Level]
    creation_date: int  # epoch seconds
    description: str


@dataclass(frozen=True, slots=True)
class _Record:
    admin: bool
    grants: Mapping[str, Level]
    created: int
    description: str
    root: bool
    sealed: bytes = field(repr=False)

    def info(self, access_key_id: str) -> KeyInfo:
        return KeyInfo(access_key_id, self.admin, self.grants, self.created, self.description)

    def principal(self, access_key_id: str) -> Principal:
        return Principal(access_key_id, admin=self.admin, grants=self.grants)

    def encode(self) -> bytes:
        return json.dumps({
            "admin": self.admin,
            "grants": {repo: level.label for repo, level in sorted(self.grants.items())},
            "created": self.created,
            "description": self.description,
            "root": self.root,
            "secret": base64.b64encode(self.sealed).decode("ascii"),
        }, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> _Record:
        data = json.loads(raw)
        return cls(
            admin=bool(data["admin"]),
            grants=MappingProxyType(
                {repo: Level.parse(level) for repo, level in data["grants"].items()}
            ),
            created=int(data["created"]),
            description=str(data["description"]),
            root=bool(data.get("root", False)),
            sealed=base64.b64decode(data["secret"], validate=True),
        )


def _aad(access_key_id: str, admin: bool, grants: Mapping[str, Level], root: bool) -> bytes:
    rights = json.dumps({"admin": admin, "root": root,
                         "grants": {r: int(v) for r, v in sorted(grants.items())}},
                        sort_keys=True, separators=(",", ":"))
    return b"lakeproxy:key:v1\0" + access_key_id.encode() + b"\0" + rights.encode()


def _id_bytes(access_key_id: str) -> bytes | None:
    """The store key of an access key id, or None for an id no key can have."""
    if (not isinstance(access_key_id, str) or not 0 < len(access_key_id) <= MAX_ACCESS_KEY_ID
            or not access_key_id.isprintable() or access_key_id.strip() != access_key_id):
        return None
    return access_key_id.encode()


def _normalize_grants(grants: Mapping[str, Any]) -> Mapping[str, Level]:
    if not isinstance(grants, Mapping):
        raise InvalidArgument("grants must map repository names to read, write or admin")
    out: dict[str, Level] = {}
    for repo, level in grants.items():
        validate_repository_id(repo)
        if isinstance(level, Level):
            out[repo] = level
        elif isinstance(level, str):
            out[repo] = Level.parse(level)
        else:
            raise InvalidArgument(
                f"grant level of {repo!r} must be read, write or admin, got {level!r}"
            )
    return MappingProxyType(dict(sorted(out.items())))


class KeyStore:
    """Access keys, kept in the metadata store the core uses; open with `KeyStore.open`."""

    def __init__(self, store: MetadataStore, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"the master key must be {MASTER_KEY_BYTES} bytes")
        self._store = store
        self._aead = AESGCM(master_key)
        # Compared against when a key is unknown, so verify() takes the same path either way.
        self._decoy = new_secret_access_key()
        # Decrypted records, keyed by their exact stored bytes. The record is still read on
        # every lookup, so this saves only the decryption: it can never outlive a delete or a
        # change of the record.
        self._opened: dict[tuple[bytes, bytes], tuple[str, Principal]] = {}

    def __repr__(self) -> str:
        return "KeyStore(<master key hidden>)"

    @classmethod
    async def open(cls, store: MetadataStore, master_key: bytes) -> KeyStore:
        """A key store over `store`, after checking `master_key` is the one it was made with.

        Raises:
            MasterKeyError: when the store's keys were encrypted with another master key.
        """
        keys = cls(store, master_key)
        await keys._check_master_key()
        return keys

    async def _check_master_key(self) -> None:
        sealed = await self._store.get(META, _CHECK_KEY)
        if sealed is None:
            await self._check_existing_records()
            with contextlib.suppress(PreconditionFailed):
                await self._store.set_if(
                    META, _CHECK_KEY, self._seal(_CHECK_PLAINTEXT, _CHECK_AAD), expect=ABSENT
                )
            sealed = await self._store.get(META, _CHECK_KEY)
        if sealed is None or self._open_sealed(sealed, _CHECK_AAD) != _CHECK_PLAINTEXT:
            raise MasterKeyError(
                "the master key does not match the one the stored access keys were encrypted "
                "with: start the server with the LAKE_MASTER_KEY (or the data directory's "
                "master.key) it was first started with"
            )

    async def _check_existing_records(self) -> None:
        """Without a check value, the first stored record (if any) must open."""
        async for raw_id, raw in self._store.scan(KEYS, limit=1):
            access_key_id = raw_id.decode()
            if self._secret_from(access_key_id, raw) is None:
                raise MasterKeyError(
                    "the master key does not open the stored access keys: start the server "
                    "with the master key they were created with"
                )

    def _seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def _open_sealed(self, sealed: bytes, aad: bytes) -> bytes | None:
        if len(sealed) <= _NONCE_BYTES:
            return None
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
        except InvalidTag:
            return None

    async def _read(self, access_key_id: str) -> _Record | None:
        key = _id_bytes(access_key_id)
        if key is None:
            return None
        raw = await self._store.get(KEYS, key)
        return None if raw is None else self._parse(access_key_id, raw)

    def _parse(self, access_key_id: str, raw: bytes) -> _Record | None:
        try:
            return _Record.decode(raw)
        except (ValueError, KeyError, TypeError, InvalidArgument, binascii.Error):
            log.warning("access key %s has an unreadable record; treating it as unknown",
                        access_key_id)
            return None

    def _secret_from(self, access_key_id: str, raw: bytes) -> tuple[str, _Record] | None:
        record = self._parse(access_key_id, raw)
        if record is None:
            return None
        plain = self._open_sealed(
            record.sealed, _aad(access_key_id, record.admin, record.grants, record.root)
        )
        if plain is None:
            log.warning("the secret of access key %s does not open with the master key (record "
                        "altered or sealed with another key); treating the key as unknown",
                        access_key_id)
            return None
        return plain.decode(), record

    async def secret_of(self, access_key_id: str) -> tuple[str, Principal] | None:
        """The secret and principal of a key, for signature checks; None for an unknown key."""
        key = _id_bytes(access_key_id)
        if key is None:
            return None
        raw = await self._store.get(KEYS, key)
        if raw is None:
            return None
        opened = self._opened.get((key, raw))
        if opened is not None:
            return opened
        found = self._secret_from(access_key_id, raw)
        if found is None:
            return None
        secret, record = found
        opened = secret, record.principal(access_key_id)
        if len(self._opened) >= _OPENED_MAX:
            self._opened.pop(next(iter(self._opened)))
        self._opened[(key, raw)] = opened
        return opened

    async def verify(self, access_key_id: str, secret: str) -> Principal | None:
        """The principal of a key whose secret is `secret`, else None (constant-time compare)."""
        found = await self.secret_of(access_key_id)
        expected = found[0] if found is not None else self._decoy
        given = secret.encode("utf-8", "surrogateescape") if isinstance(secret, str) else b""
        matches = hmac.compare_digest(expected.encode(), given)
        return found[1] if found is not None and matches else None

    async def create(self, *, admin: bool = False, grants: Mapping[str, Level] = _NO_GRANTS,
                     description: str = "") -> tuple[KeyInfo, str]:
        """Create a key with a fresh id and secret; the secret is returned only here.

        Raises:
            InvalidArgument: for a bad repository name, grant level or description.
        """
        if not isinstance(admin, bool):
            raise InvalidArgument("admin must be true or false")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"description must be text of at most {MAX_DESCRIPTION} "
                                  "characters")
        normalized = _normalize_grants(grants)
        secret = new_secret_access_key()
        for _ in range(_CREATE_ATTEMPTS):
            access_key_id = new_access_key_id()
            record = self._record(access_key_id, secret, admin=admin, grants=normalized,
                                  description=description, root=False)
            try:
                await self._store.set_if(KEYS, access_key_id.encode(), record.encode(),
                                         expect=ABSENT)
            except PreconditionFailed:
                continue
            return record.info(access_key_id), secret
        raise Conflict("could not pick an unused access key id; try again")

    def _record(self, access_key_id: str, secret: str, *, admin: bool,
                grants: Mapping[str, Level], description: str, root: bool) -> _Record:
        sealed = self._seal(secret.encode(), _aad(access_key_id, admin, grants, root))
        return _Record(admin, grants, int(time.time()), description, root, sealed)

    async def ensure_root(self, access_key_id: str, secret: str) -> None:
        """Make `access_key_id` the root key (global admin) with `secret`.

        A previous root key under another id is removed, so rotating the root credentials
        revokes the old ones.

        Raises:
            InvalidArgument: for an empty or malformed id or secret.
            Conflict: when the id belongs to a key that is not the root key.
        """
        key = _id_bytes(access_key_id)
        if key is None or not secret:
            raise InvalidArgument("the root access key id and secret must be non-empty text")
        raw = await self._store.get(KEYS, key)
        if raw is not None:
            current = self._parse(access_key_id, raw)
            if current is not None and not current.root:
                raise Conflict(
                    f"the root access key id {access_key_id} already names another access key; "
                    "choose another LAKE_ROOT_ACCESS_KEY"
                )
            found = self._secret_from(access_key_id, raw)
            if found is not None and hmac.compare_digest(found[0].encode(), secret.encode()):
                await self._drop_other_roots(access_key_id)
                return
        record = self._record(access_key_id, secret, admin=True, grants=_NO_GRANTS,
                              description="root key of lake serve", root=True)
        await self._store.set(KEYS, key, record.encode())
        await self._drop_other_roots(access_key_id)

    async def _drop_other_roots(self, access_key_id: str) -> None:
        stale = []
        async for raw_id, raw in self._store.scan(KEYS):
            record = self._parse(raw_id.decode(), raw)
            if record is not None and record.root and raw_id != access_key_id.encode():
                stale.append(raw_id)
        for raw_id in stale:
            log.info("removing the previous root access key %s", raw_id.decode())
            await self._store.delete(KEYS, raw_id)

    async def list(self) -> list[KeyInfo]:
        """Every key, ordered by access key id (no secrets)."""
        out = []
        async for raw_id, raw in self._store.scan(KEYS):
            access_key_id = raw_id.decode()
            record = self._parse(access_key_id, raw)
            if record is not None:
                out.append(record.info(access_key_id))
        return out

    async def get(self, access_key_id: str) -> KeyInfo:
        """The key's description and rights. Raises KeyNotFound."""
        record = await self._read(access_key_id)
        if record is None:
            raise _not_found(access_key_id)
        return record.info(access_key_id)

    async def delete(self, access_key_id: str) -> None:
        """Revoke a key at once. Raises KeyNotFound, or Conflict for the root key."""
        key = _id_bytes(access_key_id)
        raw = None if key is None else await self._store.get(KEYS, key)
        if key is None or raw is None:
            raise _not_found(access_key_id)
        record = self._parse(access_key_id, raw)
        if record is not None and record.root:
            raise Conflict(
                "the root key cannot be deleted here: change LAKE_ROOT_ACCESS_KEY / "
                "LAKE_ROOT_SECRET_KEY and restart the server to replace it"
            )
        await self._store.delete(KEYS, key)


def _not_found(access_key_id: str) -> KeyNotFound:
    shown = access_key_id if _id_bytes(access_key_id) is not None else "(malformed id)"
    return KeyNotFound(f"no access key {shown}", access_key_id=shown)


async def open_key_store(store: MetadataStore, settings: Settings) -> KeyStore:
    """The key store of a server: on `store`, with the master key `settings` lead to.

    Raises:
        MasterKeyError: no usable master key, or not the one the stored keys were sealed with.
    """
    master = await asyncio.to_thread(
        load_master_key, settings.data_dir, settings.master_key,
        embedded=settings.metadata_url is None,
    )
    return await KeyStore.open(store, master)
