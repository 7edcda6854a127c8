"""The high-level `lakefs` package against a running lakeproxy."""

from __future__ import annotations

import lakefs
import pytest
from lakefs.exceptions import ConflictException, NotFoundException, ObjectExistsException

from tests.server import Server


@pytest.fixture(scope="module")
def client(server: Server) -> lakefs.Client:
    return lakefs.Client(host=server.endpoint, username=server.access_key,
                         password=server.secret_key)


@pytest.fixture
def repository(client: lakefs.Client, repo: str) -> lakefs.Repository:
    return lakefs.Repository(repo, client=client)


def test_repository_create_exist_ok(client: lakefs.Client, repo: str) -> None:
    again = lakefs.Repository(repo, client=client).create(storage_namespace="local://x",
                                                          exist_ok=True)
    assert again.properties.default_branch == "main"
    with pytest.raises(ConflictException):
        lakefs.Repository(repo, client=client).create(storage_namespace="local://x")
    assert client.storage_config.pre_sign_support is False


def test_upload_read_commit_merge(repository: lakefs.Repository) -> None:
    dev = repository.branch("dev").create("main")
    obj = dev.object("data/hello.txt").upload(b"hello world", content_type="text/plain",
                                             metadata={"Owner": "ann"})
    assert obj.exists()
    stat = obj.stat()
    assert stat.size_bytes == 11 and stat.content_type == "text/plain"
    assert stat.metadata == {"owner": "ann"}
    with obj.reader() as f:
        assert f.read(5) == b"hello"
        assert f.read() == b" world"
        assert f.read() == b""
    with pytest.raises(ObjectExistsException):
        dev.object("data/hello.txt").upload(b"again", mode="xb")
    assert [c.path for c in dev.uncommitted()] == ["data/hello.txt"]
    ref = dev.commit("add hello", metadata={"run": "1"})
    assert ref.get_commit().metadata == {"run": "1"}
    assert [d.path for d in repository.ref("main").diff(dev)] == ["data/hello.txt"]
    merged = dev.merge_into(repository.branch("main"))
    assert repository.branch("main").head.id == merged
    assert [c.message for c in repository.branch("main").log(max_amount=2)][1] == "add hello"
    assert [o.path for o in repository.ref("main").objects(prefix="data/")] == [
        "data/hello.txt"]
    assert not dev.object("missing").exists()


def test_tags_reset_revert_delete(repository: lakefs.Repository) -> None:
    main = repository.branch("main")
    for i in range(3):
        main.object(f"f{i}").upload(b"%d" % i)
    main.delete_objects(["f0", "f1"])
    assert [o.path for o in main.objects()] == ["f2"]
    main.reset_changes()
    assert list(main.uncommitted()) == []
    main.object("kept").upload(b"k")
    added = main.commit("kept")
    tag = repository.tag("v1").create(added)
    assert tag.get_commit().id == added.get_commit().id
    main.revert(added)
    assert [o.path for o in main.objects()] == []
    with tag.object("kept").reader() as f:
        assert f.read() == b"k"
    tag.delete()
    with pytest.raises(NotFoundException):
        repository.tag("v1").get_commit()


def test_transact(repository: lakefs.Repository) -> None:
    main = repository.branch("main")
    with main.transact(commit_message="in a transaction", tag="tx-done") as tx:
        tx.object("t/1").upload(b"1")
        tx.object("t/2").upload(b"2")
        hidden = [b.id for b in repository.branches()]
        assert hidden == ["main"]  # the transaction's branch is hidden
    assert sorted(o.path for o in main.objects()) == ["t/1", "t/2"]
    assert [b.id for b in repository.branches()] == ["main"]
    assert repository.tag("tx-done").get_commit().id == main.head.id
