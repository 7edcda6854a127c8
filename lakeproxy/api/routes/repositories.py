"""Repositories: list (only those the caller's key sees), create, get, delete, metadata."""

from __future__ import annotations

from aiohttp import web

from lakeproxy.api.context import Call, amount_of, page
from lakeproxy.api.errors import NotSupported, json_response
from lakeproxy.api.routing import FORCE, PAGING, Param, ParamKind, Permission, Route
from lakeproxy.api.schemas import RepositoryCreation, repository_json
from lakeproxy.graveler.ids import validate_repository_id

_SCAN_BATCH = 1000


async def list_repositories(call: Call) -> web.StreamResponse:
    assert call.principal is not None
    amount = amount_of(call.query)
    prefix, search = call.query["prefix"] or "", call.query["search"] or ""
    after = call.query["after"] or ""
    found = []
    while True:
        batch = await call.g.list_repositories(prefix=prefix, after=after, limit=_SCAN_BATCH)
        for repo in batch:
            if call.principal.sees(repo.name) and search in repo.name:
                found.append(repo)
                if len(found) > amount:
                    break
        if len(found) > amount or len(batch) < _SCAN_BATCH:
            break
        after = batch[-1].name
    has_more = len(found) > amount
    results = [repository_json(r) for r in found[:amount]]
    return json_response(page(results, has_more, results[-1]["id"] if has_more else ""))


async def create_repository(call: Call) -> web.StreamResponse:
    body: RepositoryCreation = call.body
    if call.query["bare"]:
        raise NotSupported("bare repositories are not supported: create the repository "
                           "without bare=true")
    if body.sample_data:
        raise NotSupported("sample data is not supported: create the repository without "
                           "sample_data")
    if body.read_only:
        raise NotSupported("read-only repositories are not supported")
    validate_repository_id(body.name)
    namespace = body.storage_namespace or None
    repo = await call.g.create_repository(
        body.name, namespace, default_branch=body.default_branch or "main"
    )
    return json_response(repository_json(repo), 201)


async def get_repository(call: Call) -> web.StreamResponse:
    name = validate_repository_id(call.repository)
    return json_response(repository_json(await call.g.get_repository(name)))


async def delete_repository(call: Call) -> web.StreamResponse:
    name = validate_repository_id(call.repository)
    await call.g.delete_repository(name)
    return web.Response(status=204)


async def repository_metadata(call: Call) -> web.StreamResponse:
    await call.g.get_repository(validate_repository_id(call.repository))
    return json_response({})


REPO = "/repositories/{repository}"

ROUTES = [
    Route("GET", "/repositories", "listRepositories", list_repositories,
          Permission.AUTHENTICATED, query=(*PAGING, Param("search")),
          responses={200: "RepositoryList"}, tag="repositories"),
    Route("POST", "/repositories", "createRepository", create_repository,
          Permission.GLOBAL_ADMIN, query=(Param("bare", ParamKind.BOOLEAN, default=False),),
          body=RepositoryCreation, responses={201: "Repository"}, tag="repositories"),
    Route("GET", REPO, "getRepository", get_repository, Permission.REPO_READ,
          responses={200: "Repository"}, tag="repositories"),
    Route("DELETE", REPO, "deleteRepository", delete_repository, Permission.REPO_ADMIN,
          query=(FORCE,), responses={204: None}, tag="repositories"),
    Route("GET", REPO + "/metadata", "getRepositoryMetadata", repository_metadata,
          Permission.REPO_READ, responses={200: "RepositoryMetadata"}, tag="repositories"),
]
