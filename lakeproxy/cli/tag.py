"""`lake tag create|list|delete`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from lakeproxy.cli.common import JsonOpt, RefURI, RepoURI, YesOpt, confirm, session
from lakeproxy.cli.uri import (
    LakeURI,
    parse_uri,
    require_no_path,
    require_ref,
    require_same_repository,
)

app = typer.Typer(help="Create, list and delete tags (immutable names for commits).",
                  no_args_is_help=True)

TagURI = Annotated[LakeURI, typer.Argument(parser=parse_uri, metavar="lake://REPO/TAG",
                                           show_default=False)]


def _tag_of(uri: LakeURI) -> tuple[str, str]:
    tag = require_ref(uri, "tag")
    require_no_path(uri, "tag")
    return uri.repository, tag


@app.command("create")
def create(ctx: typer.Context, uri: TagURI, ref: RefURI, json_out: JsonOpt = False) -> None:
    """Tag the commit a ref points at."""
    repo, tag = _tag_of(uri)
    require_same_repository(uri, ref)
    target = require_ref(ref)
    require_no_path(ref)
    with session(ctx, json_out) as s:
        created = s.api.create_tag(repo, tag, target)
        s.out.result(created, f"Tag [bold]{escape(tag)}[/] created at "
                              f"{str(created.get('commit_id'))[:16]}")


@app.command("list")
def list_(
    ctx: typer.Context,
    uri: RepoURI,
    prefix: Annotated[str | None, typer.Option(help="Only names starting with this")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the tags of a repository."""
    with session(ctx, json_out) as s:
        tags = list(s.api.list_tags(uri.repository, prefix))
        if s.out.json_mode:
            s.out.json(tags)
            return
        s.out.table(((t.get("id"), t.get("commit_id")) for t in tags), ["Tag", "Commit"])


@app.command("delete")
def delete(ctx: typer.Context, uri: TagURI, yes: YesOpt = False,
           json_out: JsonOpt = False) -> None:
    """Delete a tag (the commit it names stays)."""
    repo, tag = _tag_of(uri)
    with session(ctx, json_out) as s:
        confirm(s.out, f"Delete tag {tag} of {repo}?", yes)
        s.api.delete_tag(repo, tag)
        s.out.result({"id": tag, "deleted": True}, f"Tag [bold]{escape(tag)}[/] deleted")
