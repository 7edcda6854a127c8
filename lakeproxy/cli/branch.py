"""`lake branch create|list|delete|reset|revert|protect|unprotect`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from lakeproxy.cli.common import (
    BranchURI,
    JsonOpt,
    RefURI,
    RepoURI,
    YesOpt,
    confirm,
    session,
)
from lakeproxy.cli.uri import (
    LakeURI,
    parse_uri,
    require_no_path,
    require_ref,
    require_same_repository,
)

app = typer.Typer(help="Create, list, reset and protect branches.", no_args_is_help=True)


def branch_of(uri: LakeURI) -> tuple[str, str]:
    """Repository and branch of lake://REPO/BRANCH."""
    branch = require_ref(uri, "branch")
    require_no_path(uri, "branch")
    return uri.repository, branch


@app.command("create")
def create(
    ctx: typer.Context,
    uri: BranchURI,
    source: Annotated[LakeURI, typer.Option(
        "--source", "-s", parser=parse_uri, metavar="lake://REPO/REF",
        help="Ref to branch from", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Create a branch from any ref (branch, tag or commit); no data is copied."""
    repo, branch = branch_of(uri)
    require_same_repository(uri, source)
    source_ref = require_ref(source)
    require_no_path(source)
    with session(ctx, json_out) as s:
        commit_id = s.api.create_branch(repo, branch, source_ref)
        s.out.result({"id": branch, "commit_id": commit_id, "source": source_ref},
                     f"Branch [bold]{escape(branch)}[/] created from {escape(source_ref)} "
                     f"at {commit_id[:16]}")


@app.command("list")
def list_(
    ctx: typer.Context,
    uri: RepoURI,
    show_hidden: Annotated[bool, typer.Option(help="Include hidden branches")] = False,
    prefix: Annotated[str | None, typer.Option(help="Only names starting with this")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the branches of a repository with their head commits."""
    with session(ctx, json_out) as s:
        branches = list(s.api.list_branches(uri.repository, show_hidden=show_hidden,
                                            prefix=prefix))
        if s.out.json_mode:
            s.out.json(branches)
            return
        columns = ["Branch", "Commit"]
        protected = any("protected" in b for b in branches)
        if protected:
            columns.append("Protected")
        s.out.table(([b.get("id"), b.get("commit_id"),
                      *(["yes" if b.get("protected") else ""] if protected else [])]
                     for b in branches), columns)


@app.command("delete")
def delete(ctx: typer.Context, uri: BranchURI, yes: YesOpt = False,
           json_out: JsonOpt = False) -> None:
    """Delete a branch (its commits stay reachable from other refs)."""
    repo, branch = branch_of(uri)
    with session(ctx, json_out) as s:
        confirm(s.out, f"Delete branch {branch} of {repo}?", yes)
        s.api.delete_branch(repo, branch)
        s.out.result({"id": branch, "deleted": True},
                     f"Branch [bold]{escape(branch)}[/] deleted")


@app.command("reset")
def reset(
    ctx: typer.Context,
    uri: Annotated[LakeURI, typer.Argument(parser=parse_uri,
                                           metavar="lake://REPO/BRANCH[/PATH]")],
    prefix: Annotated[bool, typer.Option(
        "--prefix", help="Treat PATH as a prefix: reset every object under it")] = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Discard uncommitted changes: all of them, one object, or a prefix."""
    repo = uri.repository
    branch = require_ref(uri, "branch")
    path = uri.path or None
    kind = "reset" if path is None else ("common_prefix" if prefix else "object")
    if prefix and path is None:
        raise typer.BadParameter("--prefix needs a PATH in the URI", param_hint="--prefix")
    what = "all uncommitted changes" if path is None else f"uncommitted changes to {path}"
    with session(ctx, json_out) as s:
        confirm(s.out, f"Discard {what} on {repo}/{branch}?", yes)
        s.api.reset_branch(repo, branch, kind, path)
        s.out.result({"id": branch, "type": kind, "path": path},
                     f"Discarded {escape(what)} on [bold]{escape(branch)}[/]")


@app.command("revert")
def revert(
    ctx: typer.Context,
    uri: BranchURI,
    commits: Annotated[list[str], typer.Argument(metavar="COMMIT...",
                                                 help="Commits (or refs) to revert, in order")],
    parent_number: Annotated[int, typer.Option(
        "--parent-number", "-m", min=0,
        help="For a merge commit, the parent (1 or 2) to revert against")] = 0,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Undo commits on a branch by committing their inverse."""
    repo, branch = branch_of(uri)
    with session(ctx, json_out) as s:
        confirm(s.out, f"Revert {', '.join(commits)} on {repo}/{branch}?", yes)
        for ref in commits:
            s.api.revert(repo, branch, ref, parent_number)
        head = s.api.get_commit(repo, branch)
        s.out.result(head, f"Reverted {len(commits)} commit(s) on [bold]{escape(branch)}[/]: "
                           f"now at {str(head.get('id'))[:16]}")


def _protection(ctx: typer.Context, uri: LakeURI, json_out: bool, protected: bool) -> None:
    repo, branch = branch_of(uri)
    with session(ctx, json_out) as s:
        s.api.set_protection(repo, branch, protected)
        state = "protected" if protected else "unprotected"
        s.out.result({"id": branch, "protected": protected},
                     f"Branch [bold]{escape(branch)}[/] is {state}")


@app.command("protect")
def protect(ctx: typer.Context, uri: BranchURI, json_out: JsonOpt = False) -> None:
    """Refuse direct writes and commits on a branch."""
    _protection(ctx, uri, json_out, True)


@app.command("unprotect")
def unprotect(ctx: typer.Context, uri: BranchURI, json_out: JsonOpt = False) -> None:
    """Allow direct writes on a protected branch again."""
    _protection(ctx, uri, json_out, False)


@app.command("show")
def show(ctx: typer.Context, uri: RefURI, json_out: JsonOpt = False) -> None:
    """Show a branch's head commit."""
    repo, branch = branch_of(uri)
    with session(ctx, json_out) as s:
        b = s.api.get_branch(repo, branch)
        if s.out.json_mode:
            s.out.json(b)
            return
        s.out.table([(k, v) for k, v in b.items()], ["Field", "Value"])
