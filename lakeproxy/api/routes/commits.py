"""Commits, the log of a ref, and tags."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from lakeproxy.api.context import Call, amount_of, json_ok, object_path, page
from lakeproxy.api.errors import NotSupported, json_response
from lakeproxy.api.routes.branches import branch_name
from lakeproxy.api.routing import AFTER, AMOUNT, FORCE, PAGING, Param, ParamKind, Permission, Route
from lakeproxy.api.schemas import CommitCreation, TagCreation, commit_json
from lakeproxy.errors import InvalidArgument, TagExists
from lakeproxy.graveler import Commit
from lakeproxy.graveler.ids import validate_repository_id, validate_tag_name

_LOG_BATCH = 200


async def commit(call: Call) -> web.StreamResponse:
    body: CommitCreation = call.body
    if call.query["source_metarange"]:
        raise NotSupported("committing a given source_metarange is not supported")
    created = await call.g.commit(
        validate_repository_id(call.repository), branch_name(call), body.message,
        committer=call.committer, metadata=body.metadata, allow_empty=bool(body.allow_empty),
        creation_date=float(body.date) if body.date is not None else None,
    )
    return json_response(commit_json(created), 201)


async def get_commit(call: Call) -> web.StreamResponse:
    found = await call.g.get_commit(validate_repository_id(call.repository),
                                    call.path("commitId"))
    return json_response(commit_json(found))


def _since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"since must be an ISO 8601 date-time, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


async def log_commits(call: Call) -> web.StreamResponse:
    repo = validate_repository_id(call.repository)
    ref = call.path("ref")
    q = call.query
    amount = amount_of(q)
    objects = [object_path(p, "objects") for p in q["objects"]]
    prefixes = [object_path(p, "prefixes") for p in q["prefixes"]]
    since = _since(q["since"])
    stop_at = (await call.g.resolve_ref(repo, q["stop_at"])).commit_id if q["stop_at"] else None
    filtered = bool(objects or prefixes or since is not None or stop_at)
    after = q["after"] or None
    if not filtered:
        commits, has_more = await call.g.log(repo, ref, first_parent=q["first_parent"],
                                             after=after, limit=amount)
    else:
        commits, has_more = await _filtered_log(call, repo, ref, after, amount, objects,
                                                prefixes, since, stop_at)
    if q["limit"]:
        has_more = False
    results = [commit_json(c) for c in commits]
    return json_ok(page(results, has_more, commits[-1].id if has_more else ""))


async def _filtered_log(call: Call, repo: str, ref: str, after: str | None, amount: int,
                        objects: list[str], prefixes: list[str], since: float | None,
                        stop_at: str | None) -> tuple[list[Commit], bool]:
    """A page of the commits of `ref` that pass the filters; each commit that names paths is
    compared with its first parent directly (point lookups, prefix-bounded diffs)."""
    repository = await call.g.get_repository(repo)
    found: list[Commit] = []
    while True:
        batch, more = await call.g.log(repo, ref, first_parent=call.query["first_parent"],
                                       after=after, limit=_LOG_BATCH)
        for c in batch:
            if since is not None and c.creation_date < since:
                return found, False
            if not (objects or prefixes) or await call.g.touches(
                repository, c, keys=objects, prefixes=prefixes
            ):
                if len(found) == amount:
                    return found, True
                found.append(c)
            if c.id == stop_at:
                return found, False
        if not more or not batch:
            return found, False
        after = batch[-1].id


def tag_json(name: str, commit_id: str) -> dict[str, str]:
    return {"id": name, "commit_id": commit_id}


async def list_tags(call: Call) -> web.StreamResponse:
    amount = amount_of(call.query)
    tags = await call.g.list_tags(validate_repository_id(call.repository),
                                  prefix=call.query["prefix"] or "",
                                  after=call.query["after"] or "", limit=amount + 1)
    has_more = len(tags) > amount
    results = [tag_json(t.name, t.commit_id) for t in tags[:amount]]
    return json_response(page(results, has_more, results[-1]["id"] if has_more else ""))


async def create_tag(call: Call) -> web.StreamResponse:
    body: TagCreation = call.body
    repo = validate_repository_id(call.repository)
    validate_tag_name(body.id)
    try:
        tag = await call.g.create_tag(repo, body.id, body.ref)
    except TagExists:
        if not body.force:
            raise
        await call.g.delete_tag(repo, body.id)
        tag = await call.g.create_tag(repo, body.id, body.ref)
    return json_response(tag_json(tag.name, tag.commit_id), 201)


async def get_tag(call: Call) -> web.StreamResponse:
    tag = await call.g.get_tag(validate_repository_id(call.repository),
                               validate_tag_name(call.path("tag")))
    return json_response(tag_json(tag.name, tag.commit_id))


async def delete_tag(call: Call) -> web.StreamResponse:
    await call.g.delete_tag(validate_repository_id(call.repository),
                            validate_tag_name(call.path("tag")))
    return web.Response(status=204)


REPO = "/repositories/{repository}"
TAGS = REPO + "/tags"

ROUTES = [
    Route("POST", REPO + "/branches/{branch}/commits", "commit", commit, Permission.REPO_WRITE,
          query=(Param("source_metarange"),), body=CommitCreation,
          responses={201: "Commit"}, tag="commits"),
    Route("GET", REPO + "/commits/{commitId}", "getCommit", get_commit, Permission.REPO_READ,
          responses={200: "Commit"}, tag="commits"),
    Route("GET", REPO + "/refs/{ref}/commits", "logCommits", log_commits, Permission.REPO_READ,
          query=(AFTER, AMOUNT, Param("objects", ParamKind.ARRAY),
                 Param("prefixes", ParamKind.ARRAY),
                 Param("limit", ParamKind.BOOLEAN, default=False),
                 Param("first_parent", ParamKind.BOOLEAN, default=False),
                 Param("since", description="ISO 8601 date-time: commits at or after it"),
                 Param("stop_at", description="a ref: the log ends at its commit")),
          responses={200: "CommitList"}, tag="refs"),
    Route("GET", TAGS, "listTags", list_tags, Permission.REPO_READ, query=PAGING,
          responses={200: "RefList"}, tag="tags"),
    Route("POST", TAGS, "createTag", create_tag, Permission.REPO_WRITE, body=TagCreation,
          responses={201: "Ref"}, tag="tags"),
    Route("GET", TAGS + "/{tag}", "getTag", get_tag, Permission.REPO_READ,
          responses={200: "Ref"}, tag="tags"),
    Route("DELETE", TAGS + "/{tag}", "deleteTag", delete_tag, Permission.REPO_WRITE,
          query=(FORCE,), responses={204: None}, tag="tags"),
]
