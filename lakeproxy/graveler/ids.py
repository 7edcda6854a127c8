"""Names and identifiers, validated at the edge of the core.

Every name that comes from a user passes through one of these validators before the core acts
on it, so the rest of the code can trust its inputs.
"""

from __future__ import annotations

import re
from typing import NewType

from lakeproxy.errors import InvalidArgument

RepositoryId = NewType("RepositoryId", str)
BranchName = NewType("BranchName", str)
TagName = NewType("TagName", str)
CommitId = NewType("CommitId", str)
Key = NewType("Key", str)

MAX_KEY_BYTES = 1024
MIN_COMMIT_PREFIX = 8

# Words the server uses for its own routes, so no repository can shadow them.
RESERVED_REPOSITORY_NAMES = frozenset(
    {"api", "ui", "healthz", "readyz", "metrics", "healthcheck", "static", "auth", "admin"}
)

_REPOSITORY_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_BRANCH_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,255}")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}")
_COMMIT_RE = re.compile(r"[0-9a-f]{8,32}")


def validate_repository_id(name: str) -> RepositoryId:
    """Check a repository name against S3 bucket naming rules (3-63 chars of [a-z0-9-])."""
    if not isinstance(name, str) or not _REPOSITORY_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid repository name {name!r}: use 3 to 63 characters of lowercase letters, "
            "digits and '-', starting and ending with a letter or digit",
            repository=name,
        )
    if name in RESERVED_REPOSITORY_NAMES:
        raise InvalidArgument(
            f"repository name {name!r} is reserved by the server; choose another name",
            repository=name,
        )
    return RepositoryId(name)


def validate_branch_name(name: str) -> BranchName:
    """Check a branch name: letters, digits, '_' and '-', not starting with '-'."""
    if not isinstance(name, str) or not _BRANCH_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid branch name {name!r}: use up to 256 letters, digits, '_' and '-', "
            "not starting with '-'",
            branch=name,
        )
    return BranchName(name)


def validate_tag_name(name: str) -> TagName:
    """Check a tag name: letters, digits, '_', '-' and '.', no '..', not ending in '.'."""
    if (
        not isinstance(name, str)
        or not _TAG_RE.fullmatch(name)
        or ".." in name
        or name.endswith(".")
    ):
        raise InvalidArgument(
            f"invalid tag name {name!r}: use up to 256 letters, digits, '_', '-' and '.', "
            "without '..' and not ending in '.'",
            tag=name,
        )
    return TagName(name)


def looks_like_commit_id(text: str) -> bool:
    """True when `text` could be a commit id or an unambiguous prefix of one."""
    return bool(_COMMIT_RE.fullmatch(text))


def validate_key(key: str) -> bytes:
    """Check an object key and return its UTF-8 bytes (the form the core stores and sorts)."""
    if not isinstance(key, str):
        raise InvalidArgument("an object key must be a string", key=repr(key))
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"object key {key!r} is not valid UTF-8", key=key
        ) from None
    if not raw:
        raise InvalidArgument("an object key cannot be empty", key=key)
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidArgument(
            f"object key is {len(raw)} bytes long; the limit is {MAX_KEY_BYTES} bytes of UTF-8",
            key=key[:64] + "...",
        )
    return raw


def validate_prefix(prefix: str) -> bytes:
    """Like validate_key, but the empty prefix is allowed."""
    return validate_key(prefix) if prefix else b""


def validate_metadata(metadata: dict[str, str] | None, what: str = "metadata") -> dict[str, str]:
    """Check a string-to-string mapping (commit metadata, user metadata)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidArgument(f"{what} must be a mapping of strings to strings")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise InvalidArgument(
                f"{what} must map non-empty strings to strings; got {k!r}: {v!r}"
            )
        try:
            k.encode("utf-8")
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{what} entry {k!r} is not valid UTF-8") from None
    return dict(metadata)
