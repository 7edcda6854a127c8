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


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes sharing the port")] = 1,
    domain: Annotated[
        str | None, typer.Option(help="Domain for virtual-host addressing (BUCKET.DOMAIN)")
    ] = None,
    region: Annotated[str, typer.Option(help="Region the S3 endpoint reports")] = "us-east-1",
) -> None:
    """Serve the S3 gateway on the embedded store (a local data directory) or as configured.

    Root credentials come from LAKE_ROOT_ACCESS_KEY / LAKE_ROOT_SECRET_KEY; without them the
    first start generates a pair, keeps it in the data directory and prints it once.
    """
    from lakeproxy.server import ServeOptions
    from lakeproxy.server import serve as run

    if workers < 1:
        raise typer.BadParameter("--workers must be at least 1")
    settings = Settings.from_env(data_dir=data_dir)
    run(settings, ServeOptions(host, port, workers, domain, region), typer.echo)


def main() -> None:
    app()
