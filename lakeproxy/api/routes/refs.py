"""Diffs (between refs, and a branch's uncommitted changes), merges and merge bases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lakeproxy.api.context import Call, amount_of, json_ok, object_path, page, raw_diff_item
from lakeproxy.api.errors import NotSupported, json_response
from lakeproxy.api.routes.branches import branch_name
from lakeproxy.api.routing import (
    AFTER,
    AMOUNT,
    DELIMITER,
    PREFIX,
    Param,
    ParamKind,
    Permission,
    Route,
)
from lakeproxy.api.schemas import Merge
from lakeproxy.errors import InvalidArgument, RefNotFound
from lakeproxy.graveler import DiffType, Entry, MergeStrategy
from lakeproxy.graveler.ids import validate_branch_name, validate_repository_id

# Past every key that starts with a given prefix: no valid UTF-8 key continues a prefix with
# a character above U+10FFFF, and the core resumes strictly after `after`.
_PAST = "\U0010ffff"

# One change: (path, type, left, right); the sides are encoded entries or `Entry`s, and
# the `Item` function of the fetch turns a change into its JSON object.
DiffRow = tuple[str, str, Any, Any]
Fetch = Callable[[str, str, int], Awaitable[tuple[list[DiffRow], bool]]]
Item = Callable[[str, str, Any, Any, bool], dict[str, Any]]

_KINDS = {(False, True): DiffType.ADDED.value, (True, False): DiffType.REMOVED.value,
          (True, True): DiffType.CHANGED.value}


def _rollup(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    pos = key.find(delimiter, len(prefix))
    return None if pos < 0 else key[: pos + len(delimiter)]


def entry_diff_item(path: str, kind: str, left: Entry | None, right: Entry | None,
                    include_right: bool) -> dict[str, Any]:
    side = right or left
    out: dict[str, Any] = {"type": kind, "path": path, "path_type": "object"}
    if side is not None:
        out["size_bytes"] = side.size
    if include_right and right is not None:
        out["right"] = {"checksum": right.etag, "mtime": int(right.last_modified),
                        "content_type": right.content_type, "metadata": dict(right.metadata)}
    return out


async def diff_page(call: Call, fetch: Fetch, item: Item) -> web.StreamResponse:
    """One page of a diff, with keys under `delimiter` rolled up into changed prefixes."""
    q = call.query
    amount = amount_of(q)
    prefix = object_path(q["prefix"], "prefix") if q["prefix"] else ""
    delimiter = q["delimiter"] or ""
    include_right = bool(q.get("include_right_stats"))
    cursor = q["after"] or ""
    if cursor and _rollup(cursor, prefix, delimiter) == cursor:
        cursor += _PAST  # `after` is a prefix the previous page rolled up
    results: list[dict[str, Any]] = []
    has_more = False
    while not has_more:
        changes, more = await fetch(prefix, cursor, amount + 1 - len(results))
        restarted = False
        for path, kind, left, right in changes:
            if len(results) == amount:
                has_more = True
                break
            rolled = _rollup(path, prefix, delimiter) if delimiter else None
            if rolled is not None:
                results.append({"type": "prefix_changed", "path": rolled,
                                "path_type": "common_prefix"})
                cursor = rolled + _PAST
                restarted = True
                break
            results.append(item(path, kind, left, right, include_right))
            cursor = path
        if not restarted and not has_more:
            if not more:
                break
            if len(results) == amount:
                has_more = True
    return json_ok(page(results, has_more, results[-1]["path"] if has_more else ""))


async def diff_refs(call: Call) -> web.StreamResponse:
    repo = validate_repository_id(call.repository)
    left, right = call.path("leftRef"), call.path("rightRef")
    if call.query["type"] == "three_dot":
        repository = await call.g.get_repository(repo)
        lc = (await call.g.resolve_ref(repo, left)).commit_id
        rc = (await call.g.resolve_ref(repo, right)).commit_id
        base = await call.g.refs.merge_base(repository, lc, rc)
        left, right = (base or lc), rc

    async def fetch(prefix: str, after: str, limit: int) -> tuple[list[DiffRow], bool]:
        changes, more = await call.g.diff_raw(repo, left, right, prefix=prefix, after=after,
                                              limit=limit)
        kinds = _KINDS
        return [(key.decode(), kinds[lv is not None, rv is not None], lv, rv)
                for key, lv, rv in changes], more

    return await diff_page(call, fetch, raw_diff_item)


async def diff_branch(call: Call) -> web.StreamResponse:
    repo = validate_repository_id(call.repository)
    branch = branch_name(call)

    async def fetch(prefix: str, after: str, limit: int) -> tuple[list[DiffRow], bool]:
        changes, more = await call.g.diff_uncommitted(repo, branch, prefix=prefix, after=after,
                                                      limit=limit)
        return [(c.key, c.type.value, c.left, c.right) for c in changes], more

    return await diff_page(call, fetch, entry_diff_item)


_STRATEGIES = {None: MergeStrategy.FAIL, "": MergeStrategy.FAIL,
               "source-wins": MergeStrategy.SOURCE_WINS, "dest-wins": MergeStrategy.DEST_WINS}


async def merge(call: Call) -> web.StreamResponse:
    body: Merge = call.body or Merge()
    if body.strategy not in _STRATEGIES:
        raise InvalidArgument(f"unknown merge strategy {body.strategy!r}: use source-wins or "
                              "dest-wins, or leave it out to fail on conflicts")
    if body.squash_merge:
        raise NotSupported("squash merges are not supported")
    dest = validate_branch_name(call.path("destinationBranch"))
    result = await call.g.merge(
        validate_repository_id(call.repository), call.path("sourceRef"), dest,
        strategy=_STRATEGIES[body.strategy], message=body.message or None,
        committer=call.committer, metadata=body.metadata, allow_empty=bool(body.allow_empty),
    )
    return json_response({"reference": result.id})


async def merge_base(call: Call) -> web.StreamResponse:
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    source = await call.g.resolve_ref(repo.name, call.path("sourceRef"))
    dest = await call.g.resolve_ref(repo.name, call.path("destinationBranch"))
    base = await call.g.refs.merge_base(repo, source.commit_id, dest.commit_id)
    if base is None:
        raise RefNotFound(f"{call.path('sourceRef')!r} and {call.path('destinationBranch')!r} "
                          "have no common ancestor")
    return json_response({"source_commit_id": source.commit_id,
                          "destination_commit_id": dest.commit_id, "base_commit_id": base})


REPO = "/repositories/{repository}"
MERGE = REPO + "/refs/{sourceRef}/merge/{destinationBranch}"
DIFF_QUERY = (AFTER, AMOUNT, PREFIX, DELIMITER)

ROUTES = [
    Route("GET", REPO + "/refs/{leftRef}/diff/{rightRef}", "diffRefs", diff_refs,
          Permission.REPO_READ,
          query=(*DIFF_QUERY, Param("type", default="three_dot",
                                    enum=("two_dot", "three_dot")),
                 Param("include_right_stats", ParamKind.BOOLEAN, default=False)),
          responses={200: "DiffList"}, tag="refs"),
    Route("GET", REPO + "/branches/{branch}/diff", "diffBranch", diff_branch,
          Permission.REPO_READ, query=DIFF_QUERY, responses={200: "DiffList"},
          tag="branches"),
    Route("POST", MERGE, "mergeIntoBranch", merge, Permission.REPO_WRITE, body=Merge,
          body_required=False, responses={200: "MergeResult", 409: "MergeConflict"},
          tag="refs"),
    Route("GET", MERGE, "findMergeBase", merge_base, Permission.REPO_READ,
          responses={200: "FindMergeBaseResult"}, tag="refs"),
]
