"""docs/cli.md documents every `lake` command and option, and nothing that does not exist.

Each command has a section whose heading starts with its name in backquotes
(### `lake branch create`); the table of the section lists every option of the command by its
long name and its short one. The command tree is read from the program itself, so a new command or
option fails this test until the reference describes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from lakeproxy.cli import app
from tests.server import ROOT

REFERENCE = ROOT / "docs" / "cli.md"
HEADING = re.compile(r"^#{1,6} `(lake(?: [a-z-]+)*)`")


def commands(command: Any, path: tuple[str, ...] = ("lake",)) -> Iterator[tuple[str, Any]]:
    """Every command of the tree with its full name, groups included ("lake", "lake repo")."""
    yield " ".join(path), command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        if not getattr(sub, "hidden", False):
            yield from commands(sub, (*path, name))


def options(command: Any) -> list[str]:
    """The option strings of a command, `--no-…` switches and `--help` aside."""
    return [opt for param in command.params if param.param_type_name == "option"
            and not getattr(param, "hidden", False) for opt in param.opts]


def sections() -> dict[str, str]:
    """docs/cli.md cut at its headings, keyed by the command a heading names."""
    text = REFERENCE.read_text(encoding="utf-8")
    marks = list(re.finditer(r"^#{1,6} .*$", text, re.MULTILINE))
    found: dict[str, str] = {}
    for i, mark in enumerate(marks):
        named = HEADING.match(mark.group(0))
        if named:
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            assert named.group(1) not in found, f"{named.group(1)} is documented twice"
            found[named.group(1)] = text[mark.end():end]
    return found


TREE = dict(commands(typer.main.get_command(app)))
# A group only dispatches to its commands unless it takes options of its own (`lake config`).
DOCUMENTED = {name: cmd for name, cmd in TREE.items()
              if not getattr(cmd, "commands", None) or options(cmd)}


def test_the_tree_is_what_the_reference_expects() -> None:
    assert {"lake repo create", "lake branch revert", "lake merge", "lake keys create",
            "lake serve", "lake config"} <= DOCUMENTED.keys()
    assert options(TREE["lake commit"]) == ["--message", "-m", "--meta", "--allow-empty",
                                            "--json"]


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_command_is_documented_with_every_option(name: str) -> None:
    section = sections().get(name)
    assert section is not None, f"docs/cli.md has no section headed `{name}`"
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    missing = [opt for opt in options(DOCUMENTED[name])
               if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", table)]
    assert not missing, f"docs/cli.md does not describe {missing} under `{name}`"
    summary = (DOCUMENTED[name].help or "").strip()
    assert summary, f"`{name}` has no help text"


def test_reference_names_no_command_that_does_not_exist() -> None:
    stale = sorted(set(sections()) - TREE.keys())
    assert not stale, f"docs/cli.md documents commands `lake` does not have: {stale}"

