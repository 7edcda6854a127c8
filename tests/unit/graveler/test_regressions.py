"""Regressions found by the stateful test, kept as plain tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeproxy.blockstore.provider import BlockStores
from lakeproxy.errors import NoChanges, UncommittedChanges
from lakeproxy.graveler import Graveler
from lakeproxy.metastore.memory import MemoryMetadataStore
from tests.conftest import body

# Four ranges of eight keys that fill exactly one index range (the 8th key of each range
# matches the range mask, the 32nd also the index mask), then "d/33" alone after them.
LEFT = [f"d/{i:02d}" for i in range(1, 33)]
for i, suffix in ((8, 53), (16, 287), (24, 51), (32, 316)):
    LEFT[i - 1] = f"d/{i:02d}-{suffix}"


async def test_reupload_after_a_big_delete_is_no_change(tmp_path: Path) -> None:
    """Deleting all but the last range left a root index with one child; equal contents
    must still get equal metarange ids, so re-uploading identical bytes commits nothing."""
    g = Graveler(MemoryMetadataStore(), BlockStores(tmp_path))
    await g.create_repository("repo1")
    for key in [*LEFT, "d/33"]:
        await g.put_object("repo1", "main", key, body(b"x"))
    await g.commit("repo1", "main", "33 keys")
    for key in LEFT:
        await g.delete_entry("repo1", "main", key)
    await g.commit("repo1", "main", "keep d/33")
    await g.put_object("repo1", "main", "d/33", body(b"x"))
    assert (await g.diff_uncommitted("repo1", "main"))[0] == []
    with pytest.raises(NoChanges):
        await g.commit("repo1", "main", "nothing to commit")


async def test_identical_reupload_does_not_block_a_merge_or_hide_its_result(
    graveler: Graveler, repo: str
) -> None:
    """Re-uploading identical bytes leaves a staged row with an empty uncommitted diff: a merge
    into the branch goes ahead, and the row cannot hide what the merge brought."""
    await graveler.put_object(repo, "main", "k", body(b"v1"))
    await graveler.put_object(repo, "main", "other", body(b"o"))
    await graveler.commit(repo, "main", "v1")
    await graveler.create_branch(repo, "dev", "main")
    await graveler.put_object(repo, "dev", "k", body(b"v2"))
    await graveler.commit(repo, "dev", "v2")
    await graveler.put_object(repo, "main", "k", body(b"v1"))  # same bytes again
    await graveler.delete_entry(repo, "main", "other")
    await graveler.put_object(repo, "main", "other", body(b"o"))  # and back
    assert (await graveler.diff_uncommitted(repo, "main"))[0] == []
    await graveler.merge(repo, "dev", "main")
    entry = await graveler.get_entry(repo, "main", "k")
    assert b"".join([c async for c in graveler.open_object(repo, entry)]) == b"v2"
    assert (await graveler.diff_uncommitted(repo, "main"))[0] == []


async def test_a_real_uncommitted_change_still_blocks_merge_and_revert(
    graveler: Graveler, repo: str
) -> None:
    await graveler.put_object(repo, "main", "k", body(b"v1"))
    first = await graveler.commit(repo, "main", "v1")
    await graveler.create_branch(repo, "dev", "main")
    await graveler.put_object(repo, "dev", "k", body(b"v2"))
    await graveler.commit(repo, "dev", "v2")
    await graveler.put_object(repo, "main", "k", body(b"v1"))  # void
    await graveler.put_object(repo, "main", "new", body(b"n"))  # real
    with pytest.raises(UncommittedChanges):
        await graveler.merge(repo, "dev", "main")
    with pytest.raises(UncommittedChanges):
        await graveler.revert(repo, "main", first.id)
    # Nothing was dropped by the refused attempts.
    assert [c.key for c in (await graveler.diff_uncommitted(repo, "main"))[0]] == ["new"]


async def test_picking_a_merge_that_changed_nothing_but_addresses_is_no_change(
    graveler: Graveler, repo: str
) -> None:
    """Both sides uploaded the same bytes (two addresses, one identity). Cherry-picking the
    merge commit onto the side it merged from brings no change: the destination is the base,
    and the source differs from it by addresses only."""
    await graveler.put_object(repo, "main", "a/1", body(b"one"))
    await graveler.commit(repo, "main", "c1")
    await graveler.create_branch(repo, "b1", "main")
    await graveler.put_object(repo, "main", "a/1", body(b""))
    await graveler.commit(repo, "main", "c2")
    await graveler.put_object(repo, "b1", "a/1", body(b""))
    await graveler.commit(repo, "b1", "c3")
    merged = await graveler.merge(repo, "main", "b1")
    head = (await graveler.get_branch(repo, "main")).head
    with pytest.raises(NoChanges):
        await graveler.cherry_pick(repo, "main", merged.id, parent_number=2)
    assert (await graveler.get_branch(repo, "main")).head == head
