"""The `lake` command line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from lakeproxy import __version__
from lakeproxy.cli import branch, commits, config, keys, objects, repo, tag, transfer
from lakeproxy.cli.common import Globals
from lakeproxy.config import Settings

app = typer.Typer(
    name="lake",
    help="lakeproxy: git-like branches, commits, diffs and merges for data in S3.\n\n"
         "Objects are named by URIs lake://REPOSITORY/REF/PATH (lakefs:// works too).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def lake(
    ctx: typer.Context,
    endpoint: Annotated[str | None, typer.Option(
        help="lakeproxy URL (default: LAKE_ENDPOINT, the config file, or ./lake-data)",
        show_default=False)] = None,
    access_key: Annotated[str | None, typer.Option(
        help="Access key id (default: LAKE_ACCESS_KEY or the config file)",
        show_default=False)] = None,
    secret_key: Annotated[str | None, typer.Option(
        help="Secret access key (default: LAKE_SECRET_KEY or the config file)",
        show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """lakeproxy: git-like branches, commits, diffs and merges for data in S3."""
    ctx.obj = Globals(endpoint, access_key, secret_key, json_out)


app.add_typer(repo.app, name="repo")
app.add_typer(branch.app, name="branch")
app.add_typer(tag.app, name="tag")
app.add_typer(keys.app, name="keys")
app.add_typer(config.app, name="config")
app.command("commit")(commits.commit)
app.command("log")(commits.log)
app.command("diff")(commits.diff)
app.command("merge")(commits.merge)
app.command("cherry-pick")(commits.cherry_pick)
app.command("ls")(objects.ls)
app.command("cat")(objects.cat)
app.command("stat")(objects.stat)
app.command("rm")(objects.rm)
app.command("upload")(transfer.upload)
app.command("download")(transfer.download)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory of the embedded store (default: ./lake-data)"),
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
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: 8000)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes sharing the port (default: 1)")] = None,
    domain: Annotated[
        str | None, typer.Option(help="Domain for virtual-host addressing (BUCKET.DOMAIN)")
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="Region the S3 endpoint reports (default: us-east-1)")
    ] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="TOML configuration file (env: LAKE_CONFIG)")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="Log lines as text or json (default: text)")] = None,
    log_level: Annotated[str | None, typer.Option(
        help="debug, info, warning or error (default: info)")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="PEM certificate chain: serve HTTPS instead of HTTP")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="PEM private key of --tls-cert (default: read from the certificate file)")] = None,
    metadata: Annotated[str | None, typer.Option(
        "--metadata", help="Metadata store URL, postgresql://USER@HOST:PORT/DB?schema=NAME "
        "(env: LAKE_METADATA_URL; default: SQLite in the data directory)",
        show_default=False)] = None,
) -> None:
    """Serve the S3 gateway on the embedded store (a local data directory) or as configured.

    Settings come from the TOML file (--config or LAKE_CONFIG), then LAKE_* variables, then
    these flags; docs/configuration.md lists them all. Root credentials come from
    LAKE_ROOT_ACCESS_KEY / LAKE_ROOT_SECRET_KEY; without them the first start generates a pair,
    keeps it in the data directory and prints it once.
    """
    from lakeproxy.config import ConfigError
    from lakeproxy.errors import LakeproxyError
    from lakeproxy.server import ServeOptions
    from lakeproxy.server import serve as run

    try:
        settings = Settings.load(
            config, data_dir=data_dir, host=host, port=port, workers=workers, domain=domain,
            region=region, log_format=log_format, log_level=log_level, metadata_url=metadata,
            tls_cert=tls_cert, tls_key=tls_key)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    options = ServeOptions(settings.host, settings.port, settings.workers, settings.domain,
                           settings.region)
    try:
        run(settings, options, typer.echo)
    except LakeproxyError as exc:
        # A store that cannot be opened, a wrong master key, …: the message says what to do.
        typer.echo(f"lake serve: {exc}", err=True)
        raise typer.Exit(1) from None


def main() -> None:
    app()
