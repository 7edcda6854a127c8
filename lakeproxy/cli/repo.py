"""`lake repo create|list|delete`."""

from __future__ import annotations

from typing import Annotated

import typer

from lakeproxy.cli.common import JsonOpt, RepoURI, YesOpt, confirm, session
from lakeproxy.cli.output import timestamp
from lakeproxy.cli.uri import LakeURI, require_no_path

app = typer.Typer(help="Create, list and delete repositories.", no_args_is_help=True)


def _repository_only(uri: LakeURI) -> str:
    if uri.ref is not None:
        require_no_path(uri)
        raise typer.BadParameter(f"{uri} has a ref; write lake://{uri.repository}",
                                 param_hint="URI")
    return uri.repository


@app.command("create")
def create(
    ctx: typer.Context,
    uri: RepoURI,
    storage_namespace: Annotated[str | None, typer.Option(
        "--storage-namespace", "-s",
        help="Where the data goes (s3://bucket/prefix or local://…) (default: the server's)",
    )] = None,
    default_branch: Annotated[str | None, typer.Option(
        "--default-branch", "-d", help="Name of the first branch (default: main)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a repository, with a default branch holding one initial commit."""
    name = _repository_only(uri)
    with session(ctx, json_out) as s:
        repo = s.api.create_repository(name, storage_namespace, default_branch)
        s.out.result(repo, f"Repository [bold]{name}[/] created: default branch "
                           f"{repo.get('default_branch')}, storage {repo.get('storage_namespace')}")


@app.command("list")
def list_(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option(help="Only names starting with this")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the repositories this access key can see."""
    with session(ctx, json_out) as s:
        repos = list(s.api.list_repositories(prefix))
        if s.out.json_mode:
            s.out.json(repos)
            return
        s.out.table(((r.get("id"), r.get("default_branch"), r.get("storage_namespace"),
                      timestamp(r.get("creation_date"))) for r in repos),
                    ["Repository", "Default branch", "Storage namespace", "Created"])


@app.command("delete")
def delete(ctx: typer.Context, uri: RepoURI, yes: YesOpt = False,
           json_out: JsonOpt = False) -> None:
    """Delete a repository with all its branches, tags and commits."""
    name = _repository_only(uri)
    with session(ctx, json_out) as s:
        confirm(s.out, f"Delete repository {name} and everything in it?", yes)
        s.api.delete_repository(name)
        s.out.result({"id": name, "deleted": True}, f"Repository [bold]{name}[/] deleted")
