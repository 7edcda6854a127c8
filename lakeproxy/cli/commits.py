"""`lake commit`, `lake log`, `lake diff`, `lake merge`, `lake cherry-pick`."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.markup import escape

from lakeproxy.cli.branch import branch_of
from lakeproxy.cli.client import ApiError
from lakeproxy.cli.common import BranchURI, JsonOpt, RefURI, parse_pairs, session
from lakeproxy.cli.output import Failure, Output, conflicts_of, timestamp
from lakeproxy.cli.uri import LakeURI, parse_uri, require_ref, require_same_repository

MetaOpt = Annotated[list[str] | None, typer.Option(
    "--meta", help="Metadata KEY=VALUE (repeat for more)", show_default=False)]


class Strategy(enum.StrEnum):
    SOURCE_WINS = "source-wins"
    DEST_WINS = "dest-wins"


def print_commit(out: Output, c: Mapping[str, Any]) -> None:
    """A commit as a block of lines, like `git log`."""
    out.console.print(f"[yellow]commit {escape(str(c.get('id')))}[/]")
    parents = c.get("parents") or []
    if len(parents) > 1:
        out.console.print("Merge:   " + " ".join(str(p)[:16] for p in parents))
    out.console.print(f"Author:  {escape(str(c.get('committer', '')))}")
    out.console.print(f"Date:    {timestamp(c.get('creation_date'))}")
    out.console.print("")
    out.console.print("    " + escape(str(c.get("message", ""))).replace("\n", "\n    "))
    metadata = c.get("metadata") or {}
    if metadata:
        out.console.print("")
        for key, value in sorted(metadata.items()):
            out.console.print(f"    {escape(key)} = {escape(str(value))}")
    out.console.print("")


def commit(
    ctx: typer.Context,
    uri: BranchURI,
    message: Annotated[str, typer.Option("--message", "-m", help="Commit message")],
    meta: MetaOpt = None,
    allow_empty: Annotated[bool, typer.Option(help="Commit even with no changes")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Commit a branch's uncommitted changes, with a message and optional metadata."""
    repo, branch = branch_of(uri)
    metadata = parse_pairs(meta, "--meta")
    with session(ctx, json_out) as s:
        c = s.api.commit(repo, branch, message, metadata, allow_empty)
        if s.out.json_mode:
            s.out.json(c)
            return
        s.out.console.print(f"Branch: [bold]{escape(branch)}[/]")
        print_commit(s.out, c)


def log(
    ctx: typer.Context,
    uri: RefURI,
    amount: Annotated[int | None, typer.Option(
        "--amount", "-n", min=1, help="Show at most this many commits")] = None,
    first_parent: Annotated[bool, typer.Option(
        help="Follow only the first parent of merge commits")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show the commit history of a ref, newest first."""
    ref = require_ref(uri)
    with session(ctx, json_out) as s:
        commits = s.api.log(uri.repository, ref, limit=amount, first_parent=first_parent)
        if s.out.json_mode:
            s.out.json(list(commits))
            return
        for c in commits:
            print_commit(s.out, c)


DIFF_SIGNS = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow"),
              "conflict": ("!", "magenta"), "prefix_changed": ("~", "yellow")}


def diff(
    ctx: typer.Context,
    left: RefURI,
    right: Annotated[LakeURI | None, typer.Argument(
        parser=parse_uri, metavar="[lake://REPO/REF]", show_default=False,
        help="Compare LEFT with this ref; without it, show LEFT's uncommitted changes")] = None,
    two_way: Annotated[bool, typer.Option(
        "--two-way", help="Compare the two refs directly, not from their merge base")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show uncommitted changes of a branch, or the changes between two refs."""
    left_ref = require_ref(left)
    prefix = left.path or None
    with session(ctx, json_out) as s:
        if right is None:
            changes = s.api.diff_branch(left.repository, left_ref, prefix)
        else:
            require_same_repository(left, right)
            changes = s.api.diff_refs(left.repository, left_ref, require_ref(right),
                                      prefix=prefix or right.path or None, two_dot=two_way)
        if s.out.json_mode:
            s.out.json(list(changes))
            return
        count = 0
        for change in changes:
            count += 1
            sign, color = DIFF_SIGNS.get(str(change.get("type")), ("?", "white"))
            s.out.console.print(f"[{color}]{sign} {change.get('type', ''):8} "
                                f"{escape(str(change.get('path')))}[/]")
        if count == 0:
            s.out.info("no changes")


def merge(
    ctx: typer.Context,
    source: RefURI,
    destination: BranchURI,
    strategy: Annotated[Strategy | None, typer.Option(
        help="On conflicts, take the source's or the destination's version")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m",
                                                help="Merge commit message")] = None,
    meta: MetaOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Merge a ref into a branch; conflicts are listed key by key and change nothing."""
    require_same_repository(source, destination)
    repo, dest = branch_of(destination)
    src = require_ref(source)
    metadata = parse_pairs(meta, "--meta")
    with session(ctx, json_out) as s:
        try:
            result = s.api.merge(repo, src, dest, strategy=strategy.value if strategy else None,
                                 message=message, metadata=metadata)
        except ApiError as e:
            if e.status != 409:
                raise
            keys = conflicts_of(e.body)
            raise Failure(
                f"cannot merge {src} into {dest}: {e.message}", status=409, details=keys,
                hint="nothing was merged; fix the keys on one side and commit, or merge with "
                     "--strategy source-wins or --strategy dest-wins") from e
        reference = (result or {}).get("reference", "")
        s.out.result({"reference": reference, "source": src, "destination": dest},
                     f"Merged {escape(src)} into [bold]{escape(dest)}[/]: {reference}")


def cherry_pick(
    ctx: typer.Context,
    commit_uri: Annotated[LakeURI, typer.Argument(parser=parse_uri,
                                                  metavar="lake://REPO/COMMIT")],
    branch_uri: BranchURI,
    parent_number: Annotated[int | None, typer.Option(
        "--parent-number", "-m", min=1,
        help="For a merge commit, the parent (1 or 2) to take the changes against")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply the changes of one commit onto a branch as a new commit."""
    require_same_repository(commit_uri, branch_uri)
    repo, branch = branch_of(branch_uri)
    ref = require_ref(commit_uri, "commit")
    with session(ctx, json_out) as s:
        c = s.api.cherry_pick(repo, branch, ref, parent_number)
        if s.out.json_mode:
            s.out.json(c)
            return
        s.out.console.print(f"Cherry-picked {escape(ref)} onto [bold]{escape(branch)}[/]")
        print_commit(s.out, c)
