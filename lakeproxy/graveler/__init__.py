"""The versioning core: repositories, refs, staging, commits, diff and merge."""

from lakeproxy.graveler.graveler import CommitStats, Graveler
from lakeproxy.graveler.model import (
    Branch,
    Change,
    Commit,
    DiffType,
    Entry,
    ListPage,
    MergeStrategy,
    RefKind,
    Repository,
    ResolvedRef,
    Tag,
)

__all__ = [
    "Branch",
    "Change",
    "Commit",
    "CommitStats",
    "DiffType",
    "Entry",
    "Graveler",
    "ListPage",
    "MergeStrategy",
    "RefKind",
    "Repository",
    "ResolvedRef",
    "Tag",
]
