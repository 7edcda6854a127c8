"""Staged changes as a commit reads them: sorted batches, each a bounded slice of work."""

from __future__ import annotations

from lakeproxy.graveler.staging import StagingManager, new_token
from lakeproxy.metastore.base import MetadataStore


async def _batches(
    staging: StagingManager, tokens: list[bytes]
) -> list[tuple[list[bytes], list[bytes | None]]]:
    return [batch async for batch in staging.change_batches("stg", tokens)]


async def test_a_big_commit_reads_its_changes_in_bounded_sorted_batches(
    metastore: MetadataStore,
) -> None:
    # Each batch is turned into changes in one step of the event loop: a batch of a few
    # thousand rows took 4-5 ms of it, so batches stay at about a thousand.
    staging = StagingManager(metastore)
    older, newer = new_token(), new_token()
    count = 3000
    await staging.put_many("stg", older, [(b"k%06d" % i, b"old") for i in range(count)])
    # The newer token deletes every third key and replaces every fifth.
    await staging.put_many("stg", newer, [
        (b"k%06d" % i, b"" if i % 3 == 0 else b"new") for i in range(0, count, 3)
    ] + [(b"k%06d" % i, b"new") for i in range(1, count, 5) if i % 3])

    for tokens, expected in (
        ([older], {b"k%06d" % i: b"old" for i in range(count)}),
        ([newer, older], {
            b"k%06d" % i: None if i % 3 == 0 else b"new" if i % 5 == 1 else b"old"
            for i in range(count)
        }),
    ):
        batches = await _batches(staging, tokens)
        assert all(0 < len(keys) <= 1024 for keys, _ in batches)
        assert all(len(keys) == len(values) for keys, values in batches)
        keys = [k for batch_keys, _ in batches for k in batch_keys]
        values = [v for _, batch_values in batches for v in batch_values]
        assert keys == sorted(expected)
        assert dict(zip(keys, values, strict=True)) == expected
