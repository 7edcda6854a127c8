"""Request bodies (closed pydantic models) and the JSON shapes of responses (lakeFS API v1)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lakeproxy.graveler import Commit, Entry, Repository


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class RepositoryCreation(_Closed):
    name: str
    storage_namespace: str | None = None
    default_branch: str | None = None
    sample_data: bool = False
    read_only: bool = False
    storage_id: str | None = None


class BranchCreation(_Closed):
    name: str
    source: str
    force: bool = False
    hidden: bool | None = None


class BranchProtection(_Closed):
    protected: bool


class ResetCreation(_Closed):
    type: str
    path: str | None = None
    force: bool = False


class CommitOverrides(_Closed):
    message: str | None = None
    metadata: dict[str, str] | None = None


class RevertCreation(_Closed):
    ref: str
    parent_number: int
    commit_overrides: CommitOverrides | None = None
    force: bool = False
    allow_empty: bool | None = None


class CherryPickCreation(_Closed):
    ref: str
    parent_number: int | None = None
    commit_overrides: CommitOverrides | None = None
    force: bool = False


class CommitCreation(_Closed):
    message: str
    metadata: dict[str, str] | None = None
    date: int | None = Field(default=None, ge=0, le=2**40)
    allow_empty: bool | None = None
    force: bool = False


class TagCreation(_Closed):
    id: str
    ref: str
    force: bool = False


class Merge(_Closed):
    message: str | None = None
    metadata: dict[str, str] | None = None
    strategy: str | None = None
    force: bool | None = None
    allow_empty: bool | None = None
    squash_merge: bool | None = None


class PathList(_Closed):
    paths: list[str]


class ObjectCopyCreation(_Closed):
    src_path: str
    src_ref: str | None = None
    force: bool = False
    shallow: bool | None = None


class StagingLocation(_Closed):
    physical_address: str | None = None
    presigned_url: str | None = None
    presigned_url_expiry: int | None = None


class StagingMetadata(_Closed):
    staging: StagingLocation
    checksum: str
    size_bytes: int = Field(ge=0)
    user_metadata: dict[str, str] | None = None
    content_type: str | None = None
    mtime: int | None = None
    force: bool = False


class LoginInformation(_Closed):
    access_key_id: str
    secret_access_key: str


class KeyCreation(_Closed):
    admin: bool = False
    grants: dict[str, str] = Field(default_factory=dict)
    description: str = Field(default="", max_length=1024)


# Responses


def repository_json(repo: Repository) -> dict[str, Any]:
    return {
        "id": repo.name,
        "creation_date": int(repo.creation_date),
        "default_branch": repo.default_branch,
        "storage_namespace": repo.storage_namespace,
        "storage_id": "",
        "read_only": False,
    }


def commit_json(commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.id,
        "parents": list(commit.parents),
        "committer": commit.committer,
        "message": commit.message,
        "creation_date": int(commit.creation_date),
        "meta_range_id": commit.metarange_id,
        "metadata": dict(commit.metadata),
        "generation": commit.generation,
        "version": 1,
    }


def physical_address(repo: Repository, entry: Entry) -> str:
    if "://" in entry.address:
        return entry.address
    return f"{repo.storage_namespace.rstrip('/')}/{entry.address}"


def object_stats(repo: Repository, path: str, entry: Entry, *,
                 user_metadata: bool = True) -> dict[str, Any]:
    return {
        "path": path,
        "path_type": "object",
        "physical_address": physical_address(repo, entry),
        "checksum": entry.etag,
        "size_bytes": entry.size,
        "mtime": int(entry.last_modified),
        "metadata": dict(entry.metadata) if user_metadata else {},
        "content_type": entry.content_type,
    }


def common_prefix_stats(path: str) -> dict[str, Any]:
    return {"path": path, "path_type": "common_prefix", "physical_address": "",
            "checksum": "", "mtime": 0}
