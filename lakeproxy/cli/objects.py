"""`lake ls`, `lake cat`, `lake stat`, `lake rm`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from lakeproxy.cli.client import ApiClient
from lakeproxy.cli.common import JsonOpt, PathURI, session
from lakeproxy.cli.output import Failure, Output, size, timestamp
from lakeproxy.cli.uri import LakeURI, parse_uri, require_path, require_ref

DELETE_BATCH = 1000

RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r",
                                            help="Everything under the path, at any depth")]


def as_prefix(path: str | None) -> str:
    """A path taken as a folder: empty, or ending with '/'."""
    if not path:
        return ""
    return path if path.endswith("/") else path + "/"


def ls(
    ctx: typer.Context,
    uri: Annotated[LakeURI, typer.Argument(parser=parse_uri,
                                           metavar="lake://REPO/REF[/PATH]")],
    recursive: RecursiveOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """List objects and folders under a path of a ref."""
    ref = require_ref(uri)
    prefix = as_prefix(uri.path)
    with session(ctx, json_out) as s:
        items = s.api.list_objects(uri.repository, ref, prefix, recursive=recursive)
        if s.out.json_mode:
            s.out.json(list(items))
            return
        rows = []
        for item in items:
            if item.get("path_type") == "common_prefix":
                rows.append(("folder", "", "", item.get("path")))
            else:
                rows.append(("object", size(item.get("size_bytes")),
                             timestamp(item.get("mtime")), item.get("path")))
        if rows:
            s.out.table(rows, ["Type", "Size", "Modified", "Path"])
        else:
            s.out.info(f"nothing under {uri}")


def cat(ctx: typer.Context, uri: PathURI, json_out: JsonOpt = False) -> None:
    """Write an object's bytes to standard output (with --json, errors are JSON)."""
    path = require_path(uri)
    stdout = typer.get_binary_stream("stdout")
    with session(ctx, json_out) as s, s.api.open_object(uri.repository, uri.ref or "",
                                                     path) as response:
        for chunk in response.iter_bytes():
            stdout.write(chunk)
        stdout.flush()


def stat(ctx: typer.Context, uri: PathURI, json_out: JsonOpt = False) -> None:
    """Show an object's size, checksum, time, content type and metadata."""
    path = require_path(uri)
    with session(ctx, json_out) as s:
        info = s.api.stat_object(uri.repository, uri.ref or "", path)
        if s.out.json_mode:
            s.out.json(info)
            return
        rows = [("Path", info.get("path")), ("Size", f"{info.get('size_bytes')} bytes"),
                ("Modified", timestamp(info.get("mtime"))),
                ("Checksum", info.get("checksum")),
                ("Content type", info.get("content_type")),
                ("Physical address", info.get("physical_address"))]
        rows += [(f"Metadata {k}", v) for k, v in sorted((info.get("metadata") or {}).items())]
        s.out.table(rows, ["Field", "Value"])


def rm(
    ctx: typer.Context,
    uri: Annotated[LakeURI, typer.Argument(parser=parse_uri,
                                           metavar="lake://REPO/BRANCH/PATH")],
    recursive: RecursiveOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete an object, or with --recursive every object under a path (uncommitted)."""
    branch = require_ref(uri, "branch")
    if not recursive:
        path = require_path(uri)
        with session(ctx, json_out) as s:
            s.api.delete_object(uri.repository, branch, path)
            s.out.result({"deleted": [path]}, f"Deleted {escape(path)}")
        return
    prefix = as_prefix(uri.path)
    with session(ctx, json_out) as s:
        deleted = delete_tree(s.api, s.out, uri.repository, branch, prefix)
        s.out.result({"deleted": deleted},
                     f"Deleted {len(deleted)} object(s) under {escape(str(uri))}")


def delete_tree(api: ApiClient, out: Output, repo: str, branch: str, prefix: str) -> list[str]:
    """Delete every object under `prefix` in batches, with a progress bar."""
    with out.status(f"listing {prefix or 'everything'} on {branch}"):
        paths = [o["path"] for o in api.list_objects(repo, branch, prefix, recursive=True)
                 if o.get("path_type") != "common_prefix"]
    failed: list[str] = []
    with out.progress(in_bytes=False) as progress:
        task = progress.add_task("delete", total=len(paths))
        for start in range(0, len(paths), DELETE_BATCH):
            batch = paths[start:start + DELETE_BATCH]
            errors = api.delete_objects(repo, branch, batch)
            failed += [f"{e.get('path')}: {e.get('message')}" for e in errors]
            progress.advance(task, len(batch))
    if failed:
        raise Failure(f"{len(failed)} of {len(paths)} object(s) could not be deleted",
                      details=failed)
    return paths
