"""Timing of the core's heavy operations, for whoever wants to measure them (metrics).

An observer is a plain callable `(operation, seconds, outcome)`; the core knows nothing about
what it does with the numbers. `outcome` is "ok", the class name of a `LakeproxyError` (a
bounded set: NoChanges, MergeConflict, …), "cancelled" or "error".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from lakeproxy.errors import LakeproxyError

log = logging.getLogger("lakeproxy.graveler")

Observer = Callable[[str, float, str], None]

P = ParamSpec("P")
R = TypeVar("R")


class Observed(Protocol):
    observers: list[Observer]


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, LakeproxyError):
        return type(exc).__name__
    return "error"


def notify(observers: list[Observer], operation: str, seconds: float, outcome: str) -> None:
    """Call every observer; one that fails is logged, never allowed to fail the operation."""
    for observer in observers:
        try:
            observer(operation, seconds, outcome)
        except Exception:
            log.exception("observer of %s failed", operation)


def timed(
    operation: str,
) -> Callable[
    [Callable[Concatenate[Any, P], Awaitable[R]]], Callable[Concatenate[Any, P], Awaitable[R]]
]:
    """Decorate an async method of an `Observed` object: its observers get its duration."""

    def decorate(
        method: Callable[Concatenate[Any, P], Awaitable[R]],
    ) -> Callable[Concatenate[Any, P], Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(self: Observed, *args: P.args, **kwargs: P.kwargs) -> R:
            if not self.observers:
                return await method(self, *args, **kwargs)
            start = time.perf_counter()
            try:
                result = await method(self, *args, **kwargs)
            except BaseException as exc:
                notify(self.observers, operation, time.perf_counter() - start, outcome_of(exc))
                raise
            notify(self.observers, operation, time.perf_counter() - start, "ok")
            return result

        return wrapper

    return decorate
