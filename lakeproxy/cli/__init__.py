"""The `lake` command line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from lakeproxy import __version__
from lakeproxy.config import Settings

app = typer.Typer(
    name="lake",
    help="lakeproxy: git-like branches, commits, diffs and merges for data in S3.",
    no_args_is_help=True,
    add_completion=False,
)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory of the embedded store [default: ./lake-data]"),
]


@app.command()
def version() -> None:
    """Print the lakeproxy version."""
    typer.echo(__version__)


@app.command()
def demo(data_dir: DataDir = None, repository: str = "demo") -> None:
    """Walk through the versioning core end to end on the embedded store.

    Creates a repository (if missing), writes objects on a branch, commits them with
    metadata, diffs the branch against main, merges it, and prints the history.
    """
    from lakeproxy.demo import run_demo

    settings = Settings.from_env(data_dir=data_dir)
    asyncio.run(run_demo(settings, repository, echo=typer.echo, stamp=time.strftime("%H%M%S")))


def main() -> None:
    app()
