"""What the CLI prints: rich tables for people, JSON for scripts, errors with a next step."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from lakeproxy.cli.client import ApiError, Unreachable
from lakeproxy.cli.settings import ConfigError


class Failure(Exception):
    """A failure to report with exit code 1 (`details` lists items, e.g. conflicting keys)."""

    def __init__(self, message: str, status: int | None = None,
                 details: Sequence[str] = (), hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = tuple(details)
        self.hint = hint


HINTS = {
    400: "check the arguments (see `lake COMMAND --help`)",
    401: "check --access-key/--secret-key or LAKE_ACCESS_KEY/LAKE_SECRET_KEY, or run `lake config`",
    403: "the access key lacks a grant for this (an admin can issue one with "
         "`lake keys create --grant REPO:write`), or the branch is protected "
         "(`lake branch unprotect`)",
    404: "check the names (`lake repo list`, `lake branch list lake://REPO`, `lake ls URI`)",
    409: "it already exists or conflicts with the current state; pick another name, "
         "or look at `lake diff`",
    412: "the object changed meanwhile; read it again and retry",
    429: "the server is busy; retry in a moment",
}


def hint_for(status: int) -> str | None:
    if status in HINTS:
        return HINTS[status]
    if status >= 500:
        return "the server failed; retry, and if it persists look at the `lake serve` log"
    return None


def timestamp(epoch: object) -> str:
    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        return ""
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def size(n: object) -> str:
    return decimal(n) if isinstance(n, int) and not isinstance(n, bool) else ""


class Output:
    """Human output on stdout (rich), JSON on stdout with `--json`, errors on stderr."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        wide = None if sys.stdout.isatty() else 200
        self.console = Console(width=wide, highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty()
                           else 200)

    def json(self, data: Any) -> None:
        typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))

    def result(self, data: Any, message: str) -> None:
        """JSON of `data` for scripts, or one line of text for people."""
        if self.json_mode:
            self.json(data)
        else:
            self.console.print(message)

    def table(self, rows: Iterable[Sequence[object]], columns: Sequence[str],
              *, title: str | None = None) -> None:
        table = Table(*columns, title=title, header_style="bold", box=None, pad_edge=False)
        for row in rows:
            table.add_row(*(escape("" if v is None else str(v)) for v in row))
        self.console.print(table)

    def info(self, message: str) -> None:
        """A note for people on stderr; silent in JSON mode."""
        if not self.json_mode:
            self.err.print(message)

    def fail(self, message: str, *, status: int | None = None, details: Sequence[str] = (),
             hint: str | None = None) -> NoReturn:
        """Report the failure and exit with code 1."""
        if hint is None and status is not None:
            hint = hint_for(status)
        if self.json_mode:
            payload: dict[str, Any] = {"error": message}
            if status is not None:
                payload["status"] = status
            if details:
                payload["details"] = list(details)
            self.json(payload)
        else:
            self.err.print(f"[bold red]error:[/] {escape(message)}")
            for item in details:
                self.err.print(f"  {escape(item)}")
            if hint:
                self.err.print(f"[dim]hint:[/] {escape(hint)}")
        raise typer.Exit(1)

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner on stderr while something of unknown length runs (terminals only)."""
        if self.json_mode or not self.err.is_terminal:
            yield
            return
        with self.err.status(escape(message)):
            yield

    @contextlib.contextmanager
    def progress(self, *, in_bytes: bool) -> Iterator[Progress]:
        """A progress display with rate and ETA on stderr; hidden in JSON mode."""
        columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
        if in_bytes:
            columns += [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns += [MofNCompleteColumn(), TaskProgressColumn()]
        columns.append(TimeRemainingColumn())
        with Progress(*columns, console=self.err, disable=self.json_mode) as progress:
            yield progress


@contextlib.contextmanager
def reporting(out: Output) -> Iterator[None]:
    """Turn the client's errors into messages with a next step and exit code 1."""
    try:
        yield
    except ApiError as e:
        out.fail(e.message, status=e.status, details=conflicts_of(e.body))
    except Unreachable as e:
        out.fail(f"cannot reach lakeproxy ({e}): is `lake serve` running? check --endpoint or "
                 "LAKE_ENDPOINT, or run `lake config show`")
    except ConfigError as e:
        out.fail(str(e))
    except Failure as e:
        out.fail(e.message, status=e.status, details=e.details, hint=e.hint)
    except OSError as e:
        out.fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e))


def conflicts_of(body: object) -> tuple[str, ...]:
    """The conflicting keys an error body lists, whatever the field is called."""
    if not isinstance(body, dict):
        return ()
    for field in ("conflicts", "conflicting_keys", "conflict_paths", "paths"):
        items = body.get(field)
        if isinstance(items, list):
            return tuple(str(i.get("path", i) if isinstance(i, dict) else i) for i in items)
    return ()
