"""`pause()` collects the young generation on the loop's thread."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lakeproxy.pause import collect_young, pause


@pytest.fixture
def collections() -> Iterator[list[tuple[int, int]]]:
    """(generation, thread id) of every collection that starts while the test runs."""
    seen: list[tuple[int, int]] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append((info["generation"], threading.get_ident()))

    gc.callbacks.append(watch)
    try:
        yield seen
    finally:
        gc.callbacks.remove(watch)


async def test_a_pause_collects_the_young_generation_on_the_loops_thread(
    collections: list[tuple[int, int]],
) -> None:
    gc.collect()
    collections.clear()
    young = [[i] for i in range(500)]  # fewer than make the collector start one itself
    assert young
    assert collections == []
    assert gc.get_count()[0] >= 500
    await pause()
    me = threading.get_ident()
    assert any(gen < 2 and thread == me for gen, thread in collections)
    assert gc.get_count()[0] < 50  # what the loop made after the collection, at most


def test_the_middle_generation_is_collected_when_the_collector_would(
    collections: list[tuple[int, int]],
) -> None:
    gc.collect(1)  # the middle generation's count starts at 0
    due = gc.get_threshold()[1]
    for _ in range(due):
        collect_young()
    # Each young collection counted one towards the middle generation; none was due yet.
    assert [gen for gen, _ in collections] == [1] + [0] * due
    assert gc.get_count()[1] == due
    collect_young()
    assert collections[-1][0] == 1
    assert gc.get_count()[1] == 0


def test_nothing_is_collected_while_the_collector_is_off(
    collections: list[tuple[int, int]],
) -> None:
    gc.disable()
    try:
        collect_young()
        asyncio.run(pause())
    finally:
        gc.enable()
    assert collections == []
