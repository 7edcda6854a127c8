"""Health, server configuration, the current user, login, and access key management."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from lakeproxy import __version__
from lakeproxy.api.auth import SESSION_COOKIE, TOKEN_SECONDS, issue_token
from lakeproxy.api.context import Call, amount_of, page
from lakeproxy.api.errors import Unauthorized, json_response
from lakeproxy.api.routing import AFTER, AMOUNT, PREFIX, Permission, Route
from lakeproxy.api.schemas import KeyCreation, LoginInformation
from lakeproxy.auth.model import Level
from lakeproxy.errors import NotFound

# The lakeFS API version whose behaviour lakeproxy follows; clients compare it numerically.
API_VERSION = "1.70.0"


async def healthcheck(call: Call) -> web.StreamResponse:
    return web.Response(status=204)


def storage_config(call: Call) -> dict[str, Any]:
    example = call.g.blocks.default_namespace("example-repo")
    blockstore = example.split("://", 1)[0]
    return {
        "blockstore_type": blockstore,
        "blockstore_namespace_example": example,
        "blockstore_namespace_ValidityRegex": "^(local|s3)://",
        "default_namespace_prefix": None,
        "pre_sign_support": False,
        "pre_sign_support_ui": False,
        "import_support": False,
        "import_validity_regex": "^s3://",
        "pre_sign_multipart_upload": False,
        "blockstore_id": "",
        "blockstore_description": "",
    }


def version_config() -> dict[str, Any]:
    return {"version": API_VERSION, "version_context": f"lakeproxy {__version__}",
            "upgrade_recommended": False}


async def get_config(call: Call) -> web.StreamResponse:
    storage = storage_config(call)
    return json_response({
        "version_config": version_config(),
        "storage_config": storage,
        "storage_config_list": [storage],
        "capabilities_config": {"async_ops": False},
    })


async def get_version(call: Call) -> web.StreamResponse:
    return json_response(version_config())


async def get_storage_config(call: Call) -> web.StreamResponse:
    return json_response(storage_config(call))


async def current_user(call: Call) -> web.StreamResponse:
    assert call.principal is not None
    created = 0
    with contextlib.suppress(NotFound):
        created = (await call.services.keys.get(call.principal.access_key_id)).creation_date
    return json_response({"user": {"id": call.principal.access_key_id,
                                   "creation_date": int(created)}})


async def login(call: Call) -> web.StreamResponse:
    body: LoginInformation = call.body
    found = await call.services.keys.secret_of(body.access_key_id)
    principal = await call.services.keys.verify(body.access_key_id, body.secret_access_key)
    if found is None or principal is None:
        raise Unauthorized("the access key id or the secret access key is wrong")
    token, expiry = issue_token(body.access_key_id, found[0])
    response = json_response({"token": token, "token_expiration": expiry})
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict",
                        max_age=TOKEN_SECONDS)
    return response


def key_json(info: Any) -> dict[str, Any]:
    return {
        "access_key_id": info.access_key_id,
        "admin": bool(info.admin),
        "grants": {repo: Level(level).label for repo, level in sorted(info.grants.items())},
        "creation_date": int(info.creation_date),
        "description": info.description,
    }


async def list_keys(call: Call) -> web.StreamResponse:
    amount = amount_of(call.query)
    after, prefix = call.query["after"] or "", call.query["prefix"] or ""
    infos = sorted(await call.services.keys.list(), key=lambda i: i.access_key_id)
    chosen = [i for i in infos if i.access_key_id > after and i.access_key_id.startswith(prefix)]
    results = [key_json(i) for i in chosen[:amount]]
    has_more = len(chosen) > amount
    return json_response(page(results, has_more,
                              results[-1]["access_key_id"] if has_more else ""))


async def create_key(call: Call) -> web.StreamResponse:
    body: KeyCreation = call.body
    grants = {repo: Level.parse(level) for repo, level in body.grants.items()}
    info, secret = await call.services.keys.create(
        admin=body.admin, grants=grants, description=body.description
    )
    return json_response({**key_json(info), "secret_access_key": secret}, 201)


async def get_key(call: Call) -> web.StreamResponse:
    return json_response(key_json(await call.services.keys.get(call.path("access_key_id"))))


async def delete_key(call: Call) -> web.StreamResponse:
    await call.services.keys.delete(call.path("access_key_id"))
    return web.Response(status=204)


async def openapi_document(call: Call) -> web.StreamResponse:
    from lakeproxy.api.openapi import build_openapi
    from lakeproxy.api.routes import ROUTES as ALL_ROUTES

    return json_response(build_openapi(ALL_ROUTES))


ROUTES = [
    Route("GET", "/openapi.json", "getOpenAPI", openapi_document, Permission.AUTHENTICATED,
          responses={200: None}, tag="meta"),
    Route("GET", "/healthcheck", "healthCheck", healthcheck, Permission.PUBLIC,
          responses={204: None}, tag="healthCheck"),
    Route("GET", "/config", "getConfig", get_config, Permission.AUTHENTICATED,
          responses={200: "Config"}, tag="config"),
    Route("GET", "/config/version", "getLakeFSVersion", get_version, Permission.AUTHENTICATED,
          responses={200: "VersionConfig"}, tag="config"),
    Route("GET", "/config/storage", "getStorageConfig", get_storage_config,
          Permission.AUTHENTICATED, responses={200: "StorageConfig"}, tag="config"),
    Route("GET", "/user", "getCurrentUser", current_user, Permission.AUTHENTICATED,
          responses={200: "CurrentUser"}, tag="auth"),
    Route("POST", "/auth/login", "login", login, Permission.PUBLIC, body=LoginInformation,
          responses={200: "AuthenticationToken"}, tag="auth"),
    Route("GET", "/auth/keys", "listKeys", list_keys, Permission.GLOBAL_ADMIN,
          query=(PREFIX, AFTER, AMOUNT), responses={200: "KeyList"}, tag="keys"),
    Route("POST", "/auth/keys", "createKey", create_key, Permission.GLOBAL_ADMIN,
          body=KeyCreation, responses={201: "KeyWithSecret"}, tag="keys"),
    Route("GET", "/auth/keys/{access_key_id}", "getKey", get_key, Permission.GLOBAL_ADMIN,
          responses={200: "Key"}, tag="keys"),
    Route("DELETE", "/auth/keys/{access_key_id}", "deleteKey", delete_key,
          Permission.GLOBAL_ADMIN, responses={204: None}, tag="keys"),
]
