"""`lake config` (write the config file) and `lake config show` (what is in effect, and why)."""

from __future__ import annotations

from typing import Annotated

import typer

from lakeproxy.cli.common import JsonOpt, globals_of, output
from lakeproxy.cli.output import reporting
from lakeproxy.cli.settings import (
    FIELDS,
    config_file_path,
    mask,
    read_config_file,
    resolve,
    write_config_file,
)

app = typer.Typer(
    help="Save the endpoint and credentials in the config file, or show what is in effect.",
    invoke_without_command=True,
)

PROMPTS = {"endpoint": "Endpoint (e.g. http://127.0.0.1:8000)", "access_key": "Access key id",
           "secret_key": "Secret access key"}


@app.callback()
def configure(
    ctx: typer.Context,
    endpoint: Annotated[str | None, typer.Option(help="lakeproxy URL")] = None,
    access_key: Annotated[str | None, typer.Option(help="Access key id")] = None,
    secret_key: Annotated[str | None, typer.Option(help="Secret access key")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the config file (owner-only, 0600); asks for each value not given as an option.

    The file is LAKE_CONFIG_FILE, or config.toml in the user's config folder for `lake`.
    """
    if ctx.invoked_subcommand is not None:
        return
    out = output(ctx, json_out)
    g = globals_of(ctx)
    given = {"endpoint": endpoint or g.endpoint, "access_key": access_key or g.access_key,
             "secret_key": secret_key or g.secret_key}
    path = config_file_path()
    with reporting(out):
        current = read_config_file(path)
        values: dict[str, str] = {}
        for field in FIELDS:
            value = given[field]
            if not value:
                secret = field == "secret_key"
                value = typer.prompt(PROMPTS[field], default=current.get(field, ""),
                                     hide_input=secret, show_default=not secret, err=True)
            value = (value or "").strip()
            if not value:
                raise typer.BadParameter(f"{PROMPTS[field]} cannot be empty",
                                         param_hint=f"--{field.replace('_', '-')}")
            values[field] = value
        if not values["endpoint"].startswith(("http://", "https://")):
            raise typer.BadParameter("write the endpoint as http://HOST:PORT or https://…",
                                     param_hint="--endpoint")
        write_config_file(path, values)
    out.result({"config_file": str(path), "endpoint": values["endpoint"],
                "access_key": values["access_key"], "secret_key": mask(values["secret_key"])},
               f"Configuration saved to {path}")


@app.command("show")
def show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Print the endpoint and credentials in effect and where each comes from."""
    out = output(ctx, json_out)
    with reporting(out):
        resolved = resolve(globals_of(ctx).flags())
    values = {"endpoint": resolved.endpoint, "access_key": resolved.access_key,
              "secret_key": resolved.secret_key}
    shown = {field: {"value": mask(v.value) if field == "secret_key" else v.value,
                     "source": v.source} for field, v in values.items()}
    if out.json_mode:
        out.json({**shown, "config_file": str(resolved.config_file)})
        return
    out.table([(field, s["value"] or "", s["source"]) for field, s in shown.items()],
              ["Setting", "Value", "Source"])
    out.console.print(f"config file: {resolved.config_file}"
                      + ("" if resolved.config_file.exists() else " (not written yet)"))
