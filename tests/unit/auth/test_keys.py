"""The key store on every metadata store: create, look up, verify, list, revoke, encrypt."""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lakeproxy.auth import Level
from lakeproxy.auth import keys as keys_module
from lakeproxy.auth.keys import KEYS, KeyStore
from lakeproxy.auth.master import MasterKeyError
from lakeproxy.errors import Conflict, InvalidArgument, KeyNotFound, NotFound
from lakeproxy.metastore.base import MetadataStore
from lakeproxy.wire_errors import wire_of

ROOT_ID = "AKLPROOTKEY000000001"
ROOT_SECRET = "root/secret+key/0123456789abcdefghijklmn"


@pytest.fixture
def master() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
async def keys(metastore: MetadataStore, master: bytes) -> AsyncIterator[KeyStore]:
    yield await KeyStore.open(metastore, master)


async def all_raw(store: MetadataStore) -> bytes:
    rows = [k + b"=" + v async for k, v in store.scan(KEYS)]
    rows += [k + b"=" + v async for k, v in store.scan("auth/meta")]
    return b"\n".join(rows)


async def test_create_returns_a_secret_that_signs(keys: KeyStore) -> None:
    info, secret = await keys.create(grants={"data": Level.READ}, description="etl job")
    assert re.fullmatch(r"AKLP[A-Z0-9]{16}", info.access_key_id)
    assert len(secret) == 40
    assert info.grants == {"data": Level.READ}
    assert not info.admin and info.description == "etl job" and info.creation_date > 0
    found = await keys.secret_of(info.access_key_id)
    assert found is not None
    got_secret, principal = found
    assert got_secret == secret
    assert principal.access_key_id == info.access_key_id
    assert principal.allows("data", Level.READ) and not principal.allows("data", Level.WRITE)


async def test_grant_levels_accept_text(keys: KeyStore) -> None:
    info, _ = await keys.create(grants={"data": "write", "logs": "admin"})  # type: ignore[dict-item]
    assert info.grants == {"data": Level.WRITE, "logs": Level.ADMIN}


async def test_verify_is_exact(keys: KeyStore) -> None:
    info, secret = await keys.create(admin=True)
    principal = await keys.verify(info.access_key_id, secret)
    assert principal is not None and principal.admin
    assert await keys.verify(info.access_key_id, secret[:-1]) is None
    assert await keys.verify(info.access_key_id, secret + "x") is None
    assert await keys.verify(info.access_key_id, "") is None
    assert await keys.verify("AKLPNOSUCHKEY0000000", secret) is None


async def test_verify_compares_in_constant_time(keys: KeyStore,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", spy)
    info, secret = await keys.create()
    assert await keys.verify(info.access_key_id, secret) is not None
    assert await keys.verify("AKLPUNKNOWN000000000", secret) is None  # compared too
    assert len(calls) == 2


async def test_list_get_and_delete(keys: KeyStore) -> None:
    a, _ = await keys.create(grants={"data": Level.READ})
    b, _ = await keys.create(admin=True, description="ops")
    listed = await keys.list()
    assert [k.access_key_id for k in listed] == sorted([a.access_key_id, b.access_key_id])
    assert await keys.get(b.access_key_id) == b
    await keys.delete(a.access_key_id)
    assert await keys.secret_of(a.access_key_id) is None
    assert await keys.verify(a.access_key_id, "anything") is None
    with pytest.raises(KeyNotFound):
        await keys.get(a.access_key_id)
    with pytest.raises(KeyNotFound) as info:
        await keys.delete(a.access_key_id)
    assert isinstance(info.value, NotFound)
    assert wire_of(info.value).status == 404
    assert [k.access_key_id for k in await keys.list()] == [b.access_key_id]


@pytest.mark.parametrize("bad_id", ["", " AKLP", "AK\x00LP", "A" * 129, "AK\nLP"])
async def test_malformed_ids_are_unknown(keys: KeyStore, bad_id: str) -> None:
    assert await keys.secret_of(bad_id) is None
    assert await keys.verify(bad_id, "x") is None
    with pytest.raises(KeyNotFound):
        await keys.get(bad_id)
    with pytest.raises(KeyNotFound):
        await keys.delete(bad_id)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"grants": {"Bad_Name": Level.READ}}, "invalid repository name"),
    ({"grants": {"api": Level.READ}}, "reserved"),
    ({"grants": {"data": "owner"}}, "read, write or admin"),
    ({"grants": {"data": 7}}, "read, write or admin"),
    ({"grants": ["data"]}, "grants must map"),
    ({"admin": "yes"}, "admin must be"),
    ({"description": "x" * 1025}, "description"),
])
async def test_bad_input_creates_nothing(keys: KeyStore, kwargs: dict[str, object],
                                         message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await keys.create(**kwargs)  # type: ignore[arg-type]
    assert await keys.list() == []


async def test_secrets_are_encrypted_at_rest(keys: KeyStore, metastore: MetadataStore) -> None:
    info, secret = await keys.create(grants={"data": Level.WRITE})
    await keys.ensure_root(ROOT_ID, ROOT_SECRET)
    raw = await all_raw(metastore)
    assert info.access_key_id.encode() in raw
    for plain in (secret, ROOT_SECRET):
        assert plain.encode() not in raw
        assert plain.replace("/", "\\/").encode() not in raw  # not even JSON-escaped
    assert secret not in repr(keys) and secret not in repr(await keys.get(info.access_key_id))


async def test_wrong_master_key_fails_to_open(metastore: MetadataStore, master: bytes) -> None:
    first = await KeyStore.open(metastore, master)
    await first.create()
    with pytest.raises(MasterKeyError, match="master key"):
        await KeyStore.open(metastore, secrets.token_bytes(32))
    again = await KeyStore.open(metastore, master)  # the right key still opens it
    assert len(await again.list()) == 1


async def test_wrong_master_key_fails_without_the_check_value(
    metastore: MetadataStore, master: bytes
) -> None:
    first = await KeyStore.open(metastore, master)
    await first.create()
    await metastore.delete("auth/meta", b"master-key-check")
    with pytest.raises(MasterKeyError):
        await KeyStore.open(metastore, secrets.token_bytes(32))


def test_master_key_must_be_32_bytes(metastore: MetadataStore) -> None:
    with pytest.raises(MasterKeyError):
        KeyStore(metastore, b"short")


async def test_edited_rights_do_not_open(keys: KeyStore, metastore: MetadataStore) -> None:
    info, secret = await keys.create(grants={"data": Level.READ})
    raw = await metastore.get(KEYS, info.access_key_id.encode())
    assert raw is not None
    record = json.loads(raw)
    record["admin"] = True
    await metastore.set(KEYS, info.access_key_id.encode(), json.dumps(record).encode())
    assert await keys.secret_of(info.access_key_id) is None
    assert await keys.verify(info.access_key_id, secret) is None


async def test_a_record_moved_to_another_id_does_not_open(keys: KeyStore,
                                                          metastore: MetadataStore) -> None:
    info, secret = await keys.create(admin=True)
    raw = await metastore.get(KEYS, info.access_key_id.encode())
    assert raw is not None
    await metastore.set(KEYS, b"AKLPSTOLEN0000000000", raw)
    assert await keys.verify("AKLPSTOLEN0000000000", secret) is None


async def test_garbage_records_are_unknown_keys(keys: KeyStore, metastore: MetadataStore) -> None:
    await metastore.set(KEYS, b"AKLPGARBAGE000000000", b"\xff not json")
    assert await keys.secret_of("AKLPGARBAGE000000000") is None
    assert await keys.list() == []
    await keys.delete("AKLPGARBAGE000000000")  # an unreadable record can still be removed
    assert await metastore.get(KEYS, b"AKLPGARBAGE000000000") is None


async def test_ensure_root(keys: KeyStore) -> None:
    await keys.ensure_root(ROOT_ID, ROOT_SECRET)
    await keys.ensure_root(ROOT_ID, ROOT_SECRET)  # idempotent
    principal = await keys.verify(ROOT_ID, ROOT_SECRET)
    assert principal is not None and principal.admin
    assert [k.access_key_id for k in await keys.list()] == [ROOT_ID]
    with pytest.raises(Conflict, match="root key cannot be deleted"):
        await keys.delete(ROOT_ID)


async def test_ensure_root_updates_the_secret(keys: KeyStore) -> None:
    await keys.ensure_root(ROOT_ID, ROOT_SECRET)
    assert await keys.verify(ROOT_ID, ROOT_SECRET) is not None  # remembered decryption
    await keys.ensure_root(ROOT_ID, "new-secret")
    assert await keys.verify(ROOT_ID, ROOT_SECRET) is None
    assert await keys.verify(ROOT_ID, "new-secret") is not None


async def test_rotating_the_root_id_revokes_the_old_root(keys: KeyStore) -> None:
    other, other_secret = await keys.create(grants={"data": Level.READ})
    await keys.ensure_root(ROOT_ID, ROOT_SECRET)
    await keys.ensure_root("AKLPROOTKEY000000002", "second")
    assert await keys.verify(ROOT_ID, ROOT_SECRET) is None
    assert await keys.verify("AKLPROOTKEY000000002", "second") is not None
    assert await keys.verify(other.access_key_id, other_secret) is not None


async def test_root_cannot_take_over_another_key(keys: KeyStore) -> None:
    info, secret = await keys.create(grants={"data": Level.READ})
    with pytest.raises(Conflict, match="already names another access key"):
        await keys.ensure_root(info.access_key_id, "x")
    principal = await keys.verify(info.access_key_id, secret)
    assert principal is not None and not principal.admin


@pytest.mark.parametrize(("root_id", "root_secret"), [("", "x"), ("AKLP", ""), ("A\x00", "x")])
async def test_ensure_root_rejects_empty_credentials(keys: KeyStore, root_id: str,
                                                    root_secret: str) -> None:
    with pytest.raises(InvalidArgument):
        await keys.ensure_root(root_id, root_secret)
    assert await keys.list() == []


async def test_two_stores_on_one_database_see_each_others_writes(
    tmp_path: Path, master: bytes
) -> None:
    from lakeproxy.metastore.sqlite import SqliteMetadataStore

    one = await SqliteMetadataStore.open(tmp_path / "shared.db", synchronous="NORMAL")
    two = await SqliteMetadataStore.open(tmp_path / "shared.db", synchronous="NORMAL")
    try:
        a, b = await KeyStore.open(one, master), await KeyStore.open(two, master)
        info, secret = await a.create(grants={"data": Level.READ})
        assert await b.verify(info.access_key_id, secret) is not None
        await a.delete(info.access_key_id)
        assert await b.verify(info.access_key_id, secret) is None  # no cache outlives it
    finally:
        await one.close()
        await two.close()
