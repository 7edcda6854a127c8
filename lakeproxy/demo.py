"""An end-to-end walk through the core on the embedded store (`lake demo`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from lakeproxy.config import Settings
from lakeproxy.core import open_graveler
from lakeproxy.errors import RepositoryNotFound


async def _bytes(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def run_demo(
    settings: Settings, repository: str, *, echo: Callable[[str], None], stamp: str
) -> None:
    g = await open_graveler(settings)
    try:
        try:
            repo = await g.get_repository(repository)
        except RepositoryNotFound:
            repo = await g.create_repository(repository)
            echo(f"created repository {repo.name} in {repo.storage_namespace}")
        branch = f"experiment-{stamp}"
        await g.create_branch(repository, branch, repo.default_branch)
        echo(f"created branch {branch} from {repo.default_branch}")
        for i in range(3):
            data = f"row,{i},{stamp}\n".encode()
            await g.put_object(repository, branch, f"data/part-{i}.csv", _bytes(data),
                               content_type="text/csv")
        commit = await g.commit(
            repository, branch, f"experiment {stamp}",
            metadata={"learning_rate": "0.01", "accuracy": "0.93"},
        )
        echo(f"committed {commit.id[:12]} on {branch} with metadata {dict(commit.metadata)}")
        changes, _ = await g.diff(repository, repo.default_branch, branch)
        for change in changes:
            echo(f"  {change.type.value:8} {change.key}")
        merged = await g.merge(repository, branch, repo.default_branch)
        echo(f"merged {branch} into {repo.default_branch}: {merged.id[:12]}")
        commits, _ = await g.log(repository, repo.default_branch, limit=5)
        for c in commits:
            echo(f"  {c.id[:12]}  {c.message}")
        page = await g.list_entries(repository, repo.default_branch, prefix="data/")
        echo(f"{len(page.entries)} objects under data/ on {repo.default_branch}")
    finally:
        await g.close()
