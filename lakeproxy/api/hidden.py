"""Hidden branches: a side record per branch the API created with `hidden: true`.

The `lakefs` wrapper's transactions work on hidden `tx-…` branches, which branch listings leave
out unless asked (`show_hidden=true`). The flag is an API concern, so it lives beside the core's
branch records, in a partition of its own named by the repository's unique id (a repository
deleted and created again under the same name starts with no hidden branches).
"""

from __future__ import annotations

from lakeproxy.graveler import Graveler, Repository
from lakeproxy.metastore.base import Delete, DeleteRange, Put


def _partition(repo: Repository) -> str:
    return f"api/hidden/{repo.uid}"


async def set_hidden(g: Graveler, repo: Repository, branch: str, hidden: bool) -> None:
    key = branch.encode()
    op = Put(_partition(repo), key, b"1") if hidden else Delete(_partition(repo), key)
    await g.store.write([op])


async def hidden_branches(g: Graveler, repo: Repository) -> set[str]:
    return {k.decode() async for k, _ in g.store.scan(_partition(repo))}


async def forget_repository(g: Graveler, repo: Repository) -> None:
    await g.store.write([DeleteRange(_partition(repo))])
