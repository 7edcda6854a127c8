"""What every command shares: global options, the API session, typed arguments."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import typer

from lakeproxy.cli.client import ApiClient
from lakeproxy.cli.output import Output, reporting
from lakeproxy.cli.settings import resolve
from lakeproxy.cli.uri import LakeURI, parse_uri


@dataclass(slots=True)
class Globals:
    """Options given before the command (`lake --endpoint URL repo list`)."""

    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    json: bool = False

    def flags(self) -> dict[str, str | None]:
        return {"endpoint": self.endpoint, "access_key": self.access_key,
                "secret_key": self.secret_key}


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_object(Globals)
    return obj if obj is not None else Globals()


@dataclass(slots=True)
class Session:
    api: ApiClient
    out: Output


@contextlib.contextmanager
def session(ctx: typer.Context, json_out: bool) -> Iterator[Session]:
    """An API client configured from flags, environment, config file or a local server;
    every failure inside becomes a message with a next step and exit code 1."""
    g = globals_of(ctx)
    out = Output(json_out or g.json)
    with reporting(out):
        endpoint, access_key, secret_key = resolve(g.flags()).require()
        with ApiClient(endpoint, access_key, secret_key) as api:
            yield Session(api, out)


def output(ctx: typer.Context, json_out: bool) -> Output:
    return Output(json_out or globals_of(ctx).json)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")]
RepoURI = Annotated[LakeURI, typer.Argument(parser=parse_uri, metavar="lake://REPO",
                                            show_default=False)]
BranchURI = Annotated[LakeURI, typer.Argument(parser=parse_uri, metavar="lake://REPO/BRANCH",
                                              show_default=False)]
RefURI = Annotated[LakeURI, typer.Argument(parser=parse_uri, metavar="lake://REPO/REF",
                                           show_default=False)]
PathURI = Annotated[LakeURI, typer.Argument(parser=parse_uri,
                                            metavar="lake://REPO/REF/PATH", show_default=False)]


def parse_pairs(pairs: list[str] | None, option: str) -> dict[str, str]:
    """`k=v` items into a dict; a malformed one is a usage error."""
    result: dict[str, str] = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        result[key] = value
    return result


def confirm(out: Output, question: str, yes: bool) -> None:
    """Ask before something destructive, unless --yes; declining exits with code 1."""
    if yes:
        return
    if not typer.confirm(question, default=False, err=True):
        out.fail("cancelled (pass --yes to skip this question)")
