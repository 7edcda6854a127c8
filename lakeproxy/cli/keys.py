"""`lake keys create|list|delete`: access keys with per-repository grants (global admin)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from lakeproxy.cli.common import JsonOpt, YesOpt, confirm, session
from lakeproxy.cli.output import timestamp

app = typer.Typer(help="Create, list and delete access keys and their grants.",
                  no_args_is_help=True)

LEVELS = ("read", "write", "admin")


def parse_grants(grants: list[str] | None) -> dict[str, str]:
    """`REPO:LEVEL` items; the highest level wins when a repository repeats."""
    result: dict[str, str] = {}
    for item in grants or []:
        repo, sep, level = item.rpartition(":")
        level = level.lower()
        if not sep or not repo or level not in LEVELS:
            raise typer.BadParameter(f"{item!r} is not REPO:read, REPO:write or REPO:admin",
                                     param_hint="--grant")
        if LEVELS.index(level) >= LEVELS.index(result.get(repo, "read")):
            result[repo] = level
    return result


def _grants_text(key: dict[str, object]) -> str:
    if key.get("admin"):
        return "admin (all repositories)"
    grants = key.get("grants") or {}
    if not isinstance(grants, dict) or not grants:
        return "none"
    return ", ".join(f"{r}:{lvl}" for r, lvl in sorted(grants.items()))


@app.command("create")
def create(
    ctx: typer.Context,
    grant: Annotated[list[str] | None, typer.Option(
        "--grant", "-g", metavar="REPO:LEVEL",
        help="Grant read, write or admin on a repository (repeat for more)",
        show_default=False)] = None,
    admin: Annotated[bool, typer.Option("--admin",
                                        help="Global admin: everything, every repository")]
    = False,
    description: Annotated[str, typer.Option(help="What the key is for")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Create an access key; its secret is shown this once only."""
    grants = parse_grants(grant)
    with session(ctx, json_out) as s:
        key = s.api.create_key(admin=admin, grants=grants, description=description)
        if s.out.json_mode:
            s.out.json({"access_key_id": key.get("access_key_id"),
                        "secret_access_key": key.get("secret_access_key")})
            return
        s.out.console.print(f"access key: {escape(str(key.get('access_key_id')))}")
        s.out.console.print(f"secret key: {escape(str(key.get('secret_access_key')))}")
        s.out.console.print(f"grants:     {escape(_grants_text(key))}")
        s.out.info("The secret key is shown only now: store it safely.")


@app.command("list")
def list_(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List access keys and their grants (never their secrets)."""
    with session(ctx, json_out) as s:
        keys = list(s.api.list_keys())
        if s.out.json_mode:
            s.out.json(keys)
            return
        s.out.table(((k.get("access_key_id"), _grants_text(k), timestamp(k.get("creation_date")),
                      k.get("description", "")) for k in keys),
                    ["Access key", "Grants", "Created", "Description"])


@app.command("delete")
def delete(
    ctx: typer.Context,
    access_key_id: Annotated[str, typer.Argument(metavar="ACCESS_KEY_ID")],
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete an access key; it stops working at once."""
    with session(ctx, json_out) as s:
        confirm(s.out, f"Delete access key {access_key_id}?", yes)
        s.api.delete_key(access_key_id)
        s.out.result({"access_key_id": access_key_id, "deleted": True},
                     f"Access key {escape(access_key_id)} deleted")
