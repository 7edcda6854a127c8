"""Three-way merge of trees: the changes from base to source, applied onto destination."""

from __future__ import annotations

from collections.abc import AsyncIterator

from lakeproxy.errors import MergeConflict
from lakeproxy.graveler.committed.apply import ChangeStream, apply_changes
from lakeproxy.graveler.committed.diff import RawChange, diff_trees
from lakeproxy.graveler.committed.tree import NodeRef, TreeStore
from lakeproxy.graveler.committed.writer import TreeWriter
from lakeproxy.graveler.model import IDENTITY_BYTES, MergeStrategy


class MergeTooBig(Exception):
    """The merge has more changes than the caller allowed (see `merge_trees`)."""


def _same(a: bytes | None, b: bytes | None) -> bool:
    if a is None or b is None:
        return a is b
    return a[:IDENTITY_BYTES] == b[:IDENTITY_BYTES]


async def _next(it: AsyncIterator[RawChange]) -> RawChange | None:
    return await anext(it, None)


async def merge_trees(
    trees: TreeStore,
    base: NodeRef,
    source: NodeRef,
    dest: NodeRef,
    strategy: MergeStrategy,
    max_changes: int | None = None,
) -> tuple[NodeRef, TreeWriter | None]:
    """Merge `source` into `dest` relative to their common ancestor `base`.

    A key changed on one side only takes that side's value. A key changed on both sides to the
    same identity is no conflict. A key changed differently on both sides (including a change
    on one side and a removal on the other) is a conflict: with MergeStrategy.FAIL every such
    key is collected and MergeConflict is raised before anything is written; SOURCE_WINS takes
    the source's value and DEST_WINS keeps the destination's.

    Returns:
        The merged tree's root and the writer that built it, whose `pending_nodes` the caller
        must store (None when one side's tree is the result as it is: only one side changed, or
        neither).

    Raises:
        MergeTooBig: more than `max_changes` keys to take or in conflict (found before
            anything is written).
    """
    if source.id == dest.id or source.id == base.id:
        return dest, None
    if dest.id == base.id:
        # Only the source moved: its tree is the result, nothing to build. Unless it moved by
        # addresses alone (the same objects uploaded again), which changes nothing.
        changes = diff_trees(trees, base, source)
        try:
            if await _next(changes) is None:
                return dest, None
        finally:
            await changes.aclose()
        return source, None
    src_changes = diff_trees(trees, base, source)
    dst_changes = diff_trees(trees, base, dest)
    keys: list[bytes] = []
    values: list[bytes | None] = []
    conflicts: list[str] = []
    s = await _next(src_changes)
    d = await _next(dst_changes)
    while s is not None:
        if d is not None and d[0] < s[0]:
            d = await _next(dst_changes)
            continue
        key, _, src_value = s
        if d is not None and d[0] == key:
            if not _same(src_value, d[2]):
                if strategy is MergeStrategy.SOURCE_WINS:
                    keys.append(key)
                    values.append(src_value)
                elif strategy is MergeStrategy.FAIL:
                    conflicts.append(key.decode("utf-8"))
            d = await _next(dst_changes)
        else:
            keys.append(key)
            values.append(src_value)
        s = await _next(src_changes)
        if max_changes is not None and len(keys) + len(conflicts) > max_changes:
            await src_changes.aclose()
            await dst_changes.aclose()
            raise MergeTooBig(max_changes)
    if conflicts:
        raise MergeConflict(
            f"merge found {len(conflicts)} conflicting key(s) changed on both sides: "
            + ", ".join(conflicts[:20])
            + (" ..." if len(conflicts) > 20 else "")
            + "; resolve them on one side, or merge with strategy source-wins or dest-wins",
            conflicts,
        )
    if not keys:
        return dest, None
    return await apply_changes(trees, dest, ChangeStream.from_lists(keys, values))
