"""Logging of a server process: text or JSON lines, each carrying the id of its request.

While a request is handled, `bind_request_id` makes its id available to every log line written
by that request's task (and by the threads it hands work to, which copy the context), so a line
logged deep in the core names the request that caused it. The access log (`lakeproxy.access`)
has one line per request; it names the path without its query string, which may carry a
presigned signature.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "lakeproxy.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# A getter rather than the id itself: the gateway assigns the id after the request started.
_request_id: ContextVar[Callable[[], str | None] | None] = ContextVar(
    "lakeproxy_request_id", default=None
)


def bind_request_id(getter: Callable[[], str | None]) -> Token[Callable[[], str | None] | None]:
    """Make `getter()` the request id of log lines written in this context until `unbind`."""
    return _request_id.set(getter)


def unbind_request_id(token: Token[Callable[[], str | None] | None]) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    getter = _request_id.get()
    return None if getter is None else getter()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (None outside a request) unless the call gave one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id,
    and any `extra` fields of the call."""
    return JsonFormatter(
        "{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
    )


def configure_logging(fmt: str = "text", level: str | int = "info",
                      stream: TextIO | None = None) -> logging.Handler:
    """Send every log record of the process to `stream` (stderr) as text or JSON lines.

    Replaces the handlers of the root logger, so calling it again (a worker process, a test)
    does not duplicate lines. Returns the handler.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}: use text or json")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(json_formatter() if fmt == "json" else _TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
