"""The OpenAPI 3.1 document of what lakeproxy's REST API implements, built from the route table
(paths, methods, parameters, permissions), the request models (pydantic) and the response
schemas below, so that it cannot drift from the routes actually served."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from lakeproxy import __version__
from lakeproxy.api.routing import Body, Param, ParamKind, Permission, Route

_STR = {"type": "string"}
_INT = {"type": "integer", "format": "int64"}
_BOOL = {"type": "boolean"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _obj(required: Iterable[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": props}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(item: str) -> dict[str, Any]:
    return _obj(["pagination", "results"], pagination=_ref("Pagination"),
                results={"type": "array", "items": _ref(item)})


_COMMIT = _obj(
    ["id", "parents", "committer", "message", "creation_date", "meta_range_id"],
    id=_STR, parents={"type": "array", "items": _STR}, committer=_STR, message=_STR,
    creation_date=_INT, meta_range_id=_STR, metadata=_STR_MAP, generation=_INT,
    version={"type": "integer", "minimum": 0, "maximum": 1},
)
_STORAGE = _obj(
    ["blockstore_type", "blockstore_namespace_example", "blockstore_namespace_ValidityRegex",
     "pre_sign_support", "pre_sign_support_ui", "import_support", "import_validity_regex"],
    blockstore_type=_STR, blockstore_namespace_example=_STR,
    blockstore_namespace_ValidityRegex=_STR, default_namespace_prefix={"type": ["string",
                                                                               "null"]},
    pre_sign_support=_BOOL, pre_sign_support_ui=_BOOL, import_support=_BOOL,
    import_validity_regex=_STR, pre_sign_multipart_upload=_BOOL, blockstore_id=_STR,
    blockstore_description=_STR,
)
_VERSION = _obj([], version=_STR, version_context=_STR, latest_version=_STR,
                upgrade_recommended=_BOOL, upgrade_url=_STR)
_KEY_PROPS = {"access_key_id": _STR, "admin": _BOOL,
              "grants": {"type": "object", "additionalProperties": {
                  "type": "string", "enum": ["read", "write", "admin"]}},
              "creation_date": _INT, "description": _STR}
_KEY_REQUIRED = list(_KEY_PROPS)

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(["message"], message=_STR),
    "Pagination": _obj(["has_more", "next_offset", "results", "max_per_page"],
                       has_more=_BOOL, next_offset=_STR,
                       results={"type": "integer", "minimum": 0},
                       max_per_page={"type": "integer", "minimum": 0}),
    "Repository": _obj(["id", "creation_date", "default_branch", "storage_namespace"],
                       id=_STR, creation_date=_INT, default_branch=_STR,
                       storage_namespace=_STR, storage_id=_STR, read_only=_BOOL),
    "RepositoryList": _list_of("Repository"),
    "RepositoryMetadata": _STR_MAP,
    "Ref": _obj(["id", "commit_id"], id=_STR, commit_id=_STR, protected=_BOOL),
    "RefList": _list_of("Ref"),
    "Commit": _COMMIT,
    "CommitList": _list_of("Commit"),
    "Diff": _obj(["type", "path", "path_type"],
                 type={"type": "string", "enum": ["added", "removed", "changed", "conflict",
                                                  "prefix_changed"]},
                 path=_STR, path_type={"type": "string", "enum": ["object", "common_prefix"]},
                 size_bytes=_INT,
                 right=_obj([], checksum=_STR, mtime=_INT, content_type=_STR,
                            metadata=_STR_MAP)),
    "DiffList": _list_of("Diff"),
    "ObjectStats": _obj(["path", "path_type", "physical_address", "checksum", "mtime"],
                        path=_STR,
                        path_type={"type": "string", "enum": ["object", "common_prefix"]},
                        physical_address=_STR, physical_address_expiry=_INT, checksum=_STR,
                        size_bytes=_INT, mtime=_INT, metadata=_STR_MAP, content_type=_STR),
    "ObjectStatsList": _list_of("ObjectStats"),
    "ObjectErrorList": _obj(["errors"], errors={"type": "array", "items": _obj(
        ["status_code", "message"], status_code=_INT, message=_STR, path=_STR)}),
    "MergeResult": _obj(["reference"], reference=_STR),
    "MergeConflict": _obj(["message", "conflicts"], message=_STR, reference=_STR,
                          conflicts={"type": "array", "items": _STR}),
    "FindMergeBaseResult": _obj(["source_commit_id", "destination_commit_id",
                                 "base_commit_id"], source_commit_id=_STR,
                                destination_commit_id=_STR, base_commit_id=_STR),
    "StorageConfig": _STORAGE,
    "VersionConfig": _VERSION,
    "Config": _obj([], version_config=_ref("VersionConfig"),
                   storage_config=_ref("StorageConfig"),
                   storage_config_list={"type": "array", "items": _ref("StorageConfig")},
                   capabilities_config={"type": "object"}),
    "CurrentUser": _obj(["user"], user=_obj(["id", "creation_date"], id=_STR,
                                            creation_date=_INT)),
    "AuthenticationToken": _obj(["token"], token=_STR, token_expiration=_INT),
    "Key": _obj(_KEY_REQUIRED, **_KEY_PROPS),
    "KeyWithSecret": _obj([*_KEY_REQUIRED, "secret_access_key"], **_KEY_PROPS,
                          secret_access_key=_STR),
    "KeyList": _list_of("Key"),
    "StagingLocation": _obj([], physical_address=_STR,
                            presigned_url={"type": ["string", "null"]},
                            presigned_url_expiry=_INT),
}

_PARAM_SCHEMA = {ParamKind.STRING: _STR, ParamKind.BOOLEAN: _BOOL, ParamKind.INTEGER: _INT}


def _param(param: Param) -> dict[str, Any]:
    if param.kind is ParamKind.ARRAY:
        schema: dict[str, Any] = {"type": "array", "items": _STR}
    else:
        schema = dict(_PARAM_SCHEMA[param.kind])
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.enum:
        schema["enum"] = list(param.enum)
    if param.default is not None:
        schema["default"] = param.default
    out: dict[str, Any] = {"name": param.name, "in": "query", "required": param.required,
                           "schema": schema}
    if param.kind is ParamKind.ARRAY:
        out.update(style="form", explode=True)
    if param.description:
        out["description"] = param.description
    return out


def _response(route: Route, status: int, schema: str | None) -> dict[str, Any]:
    description = {200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
                   304: "Not Modified", 409: "Conflict"}.get(status, str(status))
    if schema is None:
        return {"description": description}
    if schema == "text":
        return {"description": description, "content": {"text/html": {"schema": _STR}}}
    if schema == "binary":
        return {"description": description, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema)}}}


def _body(route: Route, components: dict[str, Any]) -> dict[str, Any] | None:
    if route.body is Body.RAW:
        return {"required": False, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": _obj([], content={"type": "string",
                                                                "format": "binary"})}}}
    if not isinstance(route.body, type):
        return None
    schema = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[route.body.__name__] = schema
    return {"required": route.body_required,
            "content": {"application/json": {"schema": _ref(route.body.__name__)}}}


def _operation(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    path_params = re.findall(r"\{([^}:]+)\}", route.path)
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "tags": [route.tag] if route.tag else [],
        "parameters": [{"name": p, "in": "path", "required": True, "schema": _STR}
                       for p in path_params] + [_param(p) for p in route.query],
        "responses": {str(status): _response(route, status, schema)
                      for status, schema in route.responses.items()},
        "x-lakeproxy-permission": route.permission.value,
    }
    if route.method == "HEAD":
        op["responses"]["default"] = {"description": "Error (no body)"}
    else:
        op["responses"]["default"] = {"description": "Error", "content": {
            "application/json": {"schema": _ref("Error")}}}
    if route.permission is Permission.PUBLIC:
        op["security"] = []
    body = _body(route, components)
    if body is not None:
        op["requestBody"] = body
    return op


def build_openapi(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes`, served under `/api/v1`."""
    components: dict[str, Any] = dict(RESPONSE_SCHEMAS)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "lakeproxy REST API", "version": __version__,
                 "description": "Management API of lakeproxy, compatible with the lakeFS "
                                "API v1 clients (lakefs-sdk, lakefs, lakefs-spec)."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"basic_auth": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"basic_auth": {"type": "http", "scheme": "basic"}},
        },
    }
