"""Block stores: the bytes of objects, in a local folder or an S3 bucket.

A repository's storage namespace names its block store: `local://NAME` is the folder
`NAME` of the local data directory, `s3://bucket/optional/prefix` a bucket and prefix.
`parse_namespace` checks a namespace without opening anything; `open_block_store` opens it.
The path rules shared by every adapter live here too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lakeproxy.blockstore.base import BlockStat, BlockStore, PartInfo
from lakeproxy.errors import InvalidArgument

__all__ = [
    "BlockStat",
    "BlockStore",
    "PartInfo",
    "S3Settings",
    "open_block_store",
    "parse_namespace",
]

MAX_PART_NUMBER = 10_000

_LOCAL_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach S3; every field left None falls back to botocore's defaults.

    Without an access key pair, credentials come from the default AWS chain
    (environment, shared files, instance or container role).
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    max_attempts: int = 5
    """Attempts per S3 request, the first one included (botocore "standard" retries)."""
    connect_timeout: float = 10.0
    """Seconds to wait for a connection to the endpoint."""
    read_timeout: float = 60.0
    """Seconds to wait for the next bytes of an answer (headers or body) before retrying."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidArgument(f"S3 max_attempts must be at least 1, not {self.max_attempts}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise InvalidArgument("S3 connect and read timeouts must be positive")


def parse_namespace(namespace: str) -> tuple[str, str]:
    """Check a storage namespace without opening anything.

    Args:
        namespace: `local://NAME` (NAME: one or more `/`-separated segments of
            `[A-Za-z0-9._-]`, none of them `.` or `..`) or `s3://bucket/optional/prefix`.

    Returns:
        The scheme (`"local"` or `"s3"`) and the location: NAME, or `bucket[/prefix]`
        without a trailing slash.

    Raises:
        InvalidArgument: for an unknown scheme, a NAME that could leave the data
            directory, an invalid bucket name or a malformed prefix.
    """
    if not isinstance(namespace, str):
        raise InvalidArgument("a storage namespace must be a string", namespace=namespace)
    scheme, sep, location = namespace.partition("://")
    if not sep or scheme not in ("local", "s3"):
        raise InvalidArgument(
            f"storage namespace {namespace!r} must start with local:// or s3://",
            namespace=namespace,
        )
    if scheme == "local":
        for segment in location.split("/"):
            if segment in (".", "..") or not _LOCAL_SEGMENT.fullmatch(segment):
                raise InvalidArgument(
                    f"storage namespace {namespace!r}: the local name must be one or more "
                    "'/'-separated segments of letters, digits, '.', '_' and '-' "
                    "(not '.' or '..')",
                    namespace=namespace,
                )
        return scheme, location
    bucket, _, prefix = location.partition("/")
    check_bucket_name(bucket)
    prefix = prefix.removesuffix("/")
    if prefix:
        try:
            check_path(prefix)
        except InvalidArgument:
            raise InvalidArgument(
                f"storage namespace {namespace!r}: the prefix must be '/'-separated non-empty "
                "segments other than '.' and '..', without NUL or backslash",
                namespace=namespace,
            ) from None
    return scheme, f"{bucket}/{prefix}" if prefix else bucket


def check_bucket_name(bucket: str) -> None:
    """Apply the S3 naming rules for general purpose buckets.

    Raises:
        InvalidArgument: when `bucket` is not a valid bucket name.
    """
    problem = None
    if not _BUCKET.fullmatch(bucket):
        problem = (
            "3 to 63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    elif ".." in bucket:
        problem = "no two adjacent periods"
    elif bucket.startswith(_BUCKET_PREFIXES) or bucket.endswith(_BUCKET_SUFFIXES):
        problem = "no reserved prefix or suffix"
    else:
        try:
            ipaddress.IPv4Address(bucket)
            problem = "not an IP address"
        except ValueError:
            pass
    if problem:
        raise InvalidArgument(f"invalid S3 bucket name {bucket!r}: {problem}", bucket=bucket)


def _local_root(data_dir: Path, name: str) -> Path:
    """`data_dir / name`, once its real path is known to stay inside the data directory."""
    root = os.path.realpath(data_dir)
    real = os.path.realpath(os.path.join(root, name))
    if not real.startswith(root + os.sep):
        raise InvalidArgument(
            f"storage namespace local://{name} resolves outside the data directory",
            namespace=f"local://{name}",
        )
    return Path(data_dir) / name


async def open_block_store(
    namespace: str, *, local_root: Path, s3: S3Settings | None = None
) -> BlockStore:
    """Open the block store of a storage namespace.

    Args:
        namespace: `local://NAME` or `s3://bucket/optional/prefix` (see `parse_namespace`).
        local_root: the data directory that `local://` names are folders of.
        s3: how to reach S3 for an `s3://` namespace (default: botocore's defaults).

    Returns:
        A block store; the caller closes it.

    Raises:
        InvalidArgument: for a malformed namespace (see `parse_namespace`).
    """
    scheme, location = parse_namespace(namespace)
    if scheme == "local":
        # Imported here: the adapters import the path rules of this module.
        from lakeproxy.blockstore.local import LocalBlockStore

        root = await asyncio.to_thread(_local_root, local_root, location)
        return LocalBlockStore(root, namespace)
    from lakeproxy.blockstore.s3 import S3BlockStore

    bucket, _, prefix = location.partition("/")
    store = S3BlockStore(bucket, prefix, s3)
    await store.open()
    return store


def check_path(path: str) -> list[str]:
    """Split a block path into its segments, rejecting anything that could leave the namespace.

    Raises:
        InvalidArgument: for an empty or absolute path, a NUL byte, a backslash, or an
            empty, `.` or `..` segment.
    """
    if not isinstance(path, str) or not path:
        raise InvalidArgument("a block path must be a non-empty string", path=path)
    if "\x00" in path or "\\" in path:
        raise InvalidArgument(f"block path {path!r} contains a NUL or a backslash", path=path)
    if path.startswith("/"):
        raise InvalidArgument(f"block path {path!r} must be relative", path=path)
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidArgument(f"block path {path!r} has an empty, '.' or '..' segment", path=path)
    return segments


def check_prefix(prefix: str) -> tuple[list[str], str]:
    """Split a list prefix into its whole folder segments and the partial last segment."""
    if not isinstance(prefix, str):
        raise InvalidArgument("a list prefix must be a string", prefix=prefix)
    if not prefix:
        return [], ""
    if prefix.startswith("/"):
        raise InvalidArgument(f"prefix {prefix!r} must be relative", prefix=prefix)
    head, _, leaf = prefix.rpartition("/")
    if "\x00" in leaf or "\\" in leaf:
        raise InvalidArgument(f"prefix {prefix!r} contains a NUL or a backslash", prefix=prefix)
    return (check_path(head) if head else []), leaf


def check_range(start: int, end: int | None) -> None:
    """Reject a negative start or an end before the start."""
    if start < 0 or (end is not None and end < start):
        raise InvalidArgument(f"invalid byte range [{start}, {end})", start=start, end=end)


def check_parts(parts: Sequence[int]) -> None:
    """Parts to join must be a non-empty, strictly ascending list of valid part numbers."""
    if not parts:
        raise InvalidArgument("a multipart upload needs at least one part")
    for number in parts:
        check_part_number(number)
    if any(a >= b for a, b in itertools.pairwise(parts)):
        raise InvalidArgument("parts must be listed in strictly ascending order", parts=list(parts))


def check_part_number(number: int) -> None:
    """Part numbers go from 1 to 10000, as on S3."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidArgument(f"part number {number!r} is not an integer")
    if not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidArgument(f"part number {number} is not between 1 and {MAX_PART_NUMBER}")
