"""Branches: list, create, get, delete, reset, revert, cherry-pick, protection."""

from __future__ import annotations

from aiohttp import web

from lakeproxy.api.context import Call, amount_of, object_path, page
from lakeproxy.api.errors import Forbidden, json_response
from lakeproxy.api.routing import FORCE, PAGING, Param, ParamKind, Permission, Route
from lakeproxy.api.schemas import (
    BranchCreation,
    BranchProtection,
    CherryPickCreation,
    ResetCreation,
    RevertCreation,
    commit_json,
)
from lakeproxy.errors import BranchExists, InvalidArgument
from lakeproxy.graveler import Branch
from lakeproxy.graveler.ids import validate_branch_name, validate_repository_id

_SCAN_BATCH = 1000


def branch_name(call: Call, name: str = "branch") -> str:
    return validate_branch_name(call.path(name))


def ref_json(branch: Branch) -> dict[str, object]:
    return {"id": branch.name, "commit_id": branch.head, "protected": branch.protected}


async def list_branches(call: Call) -> web.StreamResponse:
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    amount = amount_of(call.query)
    prefix, after = call.query["prefix"] or "", call.query["after"] or ""
    hide = set() if call.query["show_hidden"] else await call.g.hidden_branches(repo.name)
    found: list[Branch] = []
    while True:
        batch = await call.g.list_branches(repo.name, prefix=prefix, after=after,
                                           limit=_SCAN_BATCH)
        found += [b for b in batch if b.name not in hide]
        if len(found) > amount or len(batch) < _SCAN_BATCH:
            break
        after = batch[-1].name
    has_more = len(found) > amount
    results = [ref_json(b) for b in found[:amount]]
    return json_response(page(results, has_more, results[-1]["id"] if has_more else ""))


async def create_branch(call: Call) -> web.StreamResponse:
    body: BranchCreation = call.body
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    validate_branch_name(body.name)
    try:
        branch = await call.g.create_branch(repo.name, body.name, body.source)
    except BranchExists:
        if not body.force:
            raise
        if body.name == repo.default_branch:
            raise Forbidden(f"branch {body.name!r} is the default branch; it cannot be "
                            "recreated") from None
        await call.g.delete_branch(repo.name, body.name)
        branch = await call.g.create_branch(repo.name, body.name, body.source)
    if body.hidden:
        await call.g.set_branch_hidden(repo.name, body.name, True)
    return web.Response(status=201, text=branch.head, content_type="text/html")


async def get_branch(call: Call) -> web.StreamResponse:
    name = branch_name(call)
    branch = await call.g.get_branch(validate_repository_id(call.repository), name)
    return json_response(ref_json(branch))


async def delete_branch(call: Call) -> web.StreamResponse:
    name = branch_name(call)
    repo = await call.g.get_repository(validate_repository_id(call.repository))
    if name == repo.default_branch:
        raise Forbidden(f"branch {name!r} is the default branch of repository {repo.name!r} "
                        "and cannot be deleted")
    await call.g.delete_branch(repo.name, name)
    return web.Response(status=204)


async def reset_branch(call: Call) -> web.StreamResponse:
    body: ResetCreation = call.body
    name = branch_name(call)
    repo = validate_repository_id(call.repository)
    if body.type == "reset":
        await call.g.reset(repo, name)
    elif body.type in ("object", "common_prefix"):
        if not body.path:
            raise InvalidArgument(f"a reset of type {body.type!r} needs a path")
        path = object_path(body.path)
        await call.g.get_branch(repo, name)
        if body.type == "object":
            await call.g.reset(repo, name, key=path)
        else:
            await call.g.reset(repo, name, prefix=path)
    else:
        raise InvalidArgument(f"unknown reset type {body.type!r}: use object, common_prefix "
                              "or reset")
    return web.Response(status=204)


async def revert_branch(call: Call) -> web.StreamResponse:
    body: RevertCreation = call.body
    overrides = body.commit_overrides
    await call.g.revert(
        validate_repository_id(call.repository), branch_name(call), body.ref,
        parent_number=_parent(body.parent_number), committer=call.committer,
        message=overrides.message if overrides else None,
        metadata=overrides.metadata if overrides else None,
    )
    return web.Response(status=204)


async def cherry_pick(call: Call) -> web.StreamResponse:
    body: CherryPickCreation = call.body
    overrides = body.commit_overrides
    commit = await call.g.cherry_pick(
        validate_repository_id(call.repository), branch_name(call), body.ref,
        parent_number=_parent(body.parent_number), committer=call.committer,
        message=overrides.message if overrides else None,
        metadata=overrides.metadata if overrides else None,
    )
    return json_response(commit_json(commit), 201)


def _parent(number: int | None) -> int | None:
    if number is None or number == 0:
        return None
    if number < 0:
        raise InvalidArgument(f"parent_number must be 0 (not a merge) or at least 1, got {number}")
    return number


async def set_protection(call: Call) -> web.StreamResponse:
    body: BranchProtection = call.body
    await call.g.set_branch_protection(validate_repository_id(call.repository),
                                       branch_name(call), body.protected)
    return web.Response(status=204)


BRANCHES = "/repositories/{repository}/branches"
BRANCH = BRANCHES + "/{branch}"

ROUTES = [
    Route("GET", BRANCHES, "listBranches", list_branches, Permission.REPO_READ,
          query=(*PAGING, Param("show_hidden", ParamKind.BOOLEAN, default=False)),
          responses={200: "RefList"}, tag="branches"),
    Route("POST", BRANCHES, "createBranch", create_branch, Permission.REPO_WRITE,
          body=BranchCreation, responses={201: "text"}, tag="branches"),
    Route("GET", BRANCH, "getBranch", get_branch, Permission.REPO_READ,
          responses={200: "Ref"}, tag="branches"),
    Route("DELETE", BRANCH, "deleteBranch", delete_branch, Permission.REPO_WRITE,
          query=(FORCE,), responses={204: None}, tag="branches"),
    Route("PUT", BRANCH, "resetBranch", reset_branch, Permission.REPO_WRITE,
          body=ResetCreation, responses={204: None}, tag="branches"),
    Route("POST", BRANCH + "/revert", "revertBranch", revert_branch, Permission.REPO_WRITE,
          body=RevertCreation, responses={204: None}, tag="branches"),
    Route("POST", BRANCH + "/cherry-pick", "cherryPick", cherry_pick, Permission.REPO_WRITE,
          body=CherryPickCreation, responses={201: "Commit"}, tag="branches"),
    Route("PUT", BRANCH + "/protection", "setBranchProtection", set_protection,
          Permission.REPO_ADMIN, body=BranchProtection, responses={204: None},
          tag="branches"),
]
