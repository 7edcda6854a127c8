"""README.md's quick start, run as written against a real `lake serve`.

The blocks fenced as ```sh quickstart run line by line through bash (so `lake`, `aws` and
`printf … > file` behave as in a terminal), the ```python quickstart blocks run with this
interpreter, both in a fresh folder where `lake serve` keeps ./lake-data with generated root
credentials, with nothing else configured. A ```text block right after such a block is its
expected standard output: it must match, up to dates, access key ids and commit ids. Commit ids
shown in the README are matched, in order, with the ids the real run printed, and a later
command naming a README commit id (or a prefix of one) gets the real one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import ROOT, Server, lake_serve

README = ROOT / "README.md"
README_ENDPOINT = "http://127.0.0.1:8000"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
COMMIT_ID = re.compile(r"\b[0-9a-f]{16,64}\b")
# A ref that is a commit id, in lake://REPO/REF/… or s3://REPO/REF/…
REF_ID = re.compile(r"(://[^/\s]+/)([0-9a-f]{8,64})(?=/|\s|$)")
TIME = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b")
ACCESS_KEY = re.compile(r"\bAKLP[A-Z0-9]{16}\b")
# What a newcomer's quick start must at least show.
REQUIRED = ("repo create", "commit", "branch create", "upload", "diff", "merge", "log", "cat",
            "tag create")
TIMEOUT = 120


@dataclass
class Step:
    kind: str  # "sh" or "python"
    code: str
    expected: str | None  # the ```text block that follows, if any


def quickstart_steps(text: str) -> list[Step]:
    """The marked blocks of the README in order, each with the output block after it."""
    fences = list(FENCE.finditer(text))
    steps = []
    for i, fence in enumerate(fences):
        info = fence.group(1).split()
        if len(info) < 2 or info[1] != "quickstart":
            continue
        assert info[0] in ("sh", "python"), f"unknown quick start block {fence.group(1)!r}"
        expected = None
        if i + 1 < len(fences):
            after = fences[i + 1]
            if after.group(1).strip() == "text" and not text[fence.end():after.start()].strip():
                expected = after.group(2)
        steps.append(Step(info[0], fence.group(2), expected))
    return steps


def command_lines(code: str) -> Iterator[str]:
    for line in code.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert not line.rstrip().endswith("\\"), "keep quick start commands on one line"
            yield line


def normalize(output: str) -> list[str]:
    """Lines as a terminal leaves them (after carriage returns), without what varies."""
    lines = []
    for line in output.split("\n"):
        line = line.rsplit("\r", 1)[-1]
        line = COMMIT_ID.sub("<id>", TIME.sub("<time>", ACCESS_KEY.sub("<key>", line)))
        lines.append(line.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return lines


class Ids:
    """README commit ids (and prefixes) matched with the ids of the real run."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def learn(self, shown: str, printed: str) -> None:
        ours, theirs = COMMIT_ID.findall(shown), COMMIT_ID.findall(printed)
        assert len(ours) == len(theirs), f"README shows ids {ours}, the run printed {theirs}"
        for readme_id, real_id in zip(ours, theirs, strict=True):
            assert len(readme_id) == len(real_id), (readme_id, real_id)
            for known, real in self.known.items():
                if known.startswith(readme_id) or readme_id.startswith(known):
                    n = min(len(known), len(readme_id))
                    assert real[:n] == real_id[:n], f"{readme_id} stands for two commits"
            self.known[readme_id] = real_id

    def real(self, readme_prefix: str) -> str:
        for known, real in self.known.items():
            if known.startswith(readme_prefix):
                return real[:len(readme_prefix)]
        raise AssertionError(f"{readme_prefix} is not a commit id the README showed before")

    def substitute(self, line: str) -> str:
        return REF_ID.sub(lambda m: m.group(1) + self.real(m.group(2)), line)


@pytest.fixture
def newcomer(tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, dict[str, str]]]:
    """`lake serve` in an empty folder with generated keys, and a shell environment there."""
    monkeypatch.chdir(tmp_path)
    no_root = {"LAKE_ROOT_ACCESS_KEY": "", "LAKE_ROOT_SECRET_KEY": ""}
    with lake_serve(tmp_path / "lake-data", env=no_root) as server:
        creds = json.loads((tmp_path / "lake-data" / "credentials.json").read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKE_", "AWS_"))}
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            LAKE_CONFIG_FILE=str(tmp_path / "no-lake-config.toml"),
            AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
            AWS_ACCESS_KEY_ID=creds["access_key_id"],
            AWS_SECRET_ACCESS_KEY=creds["secret_access_key"],
            NO_COLOR="1", COLUMNS="200", PYTHONUTF8="1",
        )
        yield server, env


def run_step(step: Step, ids: Ids, server: Server, cwd: Path, env: dict[str, str]) -> str:
    """Run one block and return its standard output; every command must succeed."""
    if step.kind == "python":
        runs = [[sys.executable, "-c", step.code.replace(README_ENDPOINT, server.endpoint)]]
    else:
        runs = [["bash", "-c", ids.substitute(line).replace(README_ENDPOINT, server.endpoint)]
                for line in command_lines(step.code)]
    printed = []
    for argv in runs:
        # Bytes, not text: universal newlines would turn progress lines' \r into lines.
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=TIMEOUT,
                              check=False)
        stderr = done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"{argv[-1]}\nexit {done.returncode}\n{stderr}"
        printed.append(done.stdout.decode().replace(server.endpoint, README_ENDPOINT))
    return "".join(printed)


def test_readme_marks_a_complete_quick_start() -> None:
    steps = quickstart_steps(README.read_text(encoding="utf-8"))
    lines = [line for s in steps if s.kind == "sh" for line in command_lines(s.code)]
    used = {" ".join(line.split()[1:3]) for line in lines if line.startswith("lake ")}
    used |= {line.split()[1] for line in lines if line.startswith("lake ")}
    assert not [r for r in REQUIRED if r not in used], used
    assert any(s.kind == "python" and "boto3" in s.code for s in steps)
    assert any(line.startswith("aws ") for line in lines)
    assert all(s.expected is not None for s in steps), "show the output of every step"


def test_readme_quick_start_runs_as_written(newcomer: tuple[Server, dict[str, str]],
                                            tmp_path: Path) -> None:
    server, env = newcomer
    ids = Ids()
    for step in quickstart_steps(README.read_text(encoding="utf-8")):
        printed = run_step(step, ids, server, tmp_path, env)
        if step.expected is None:
            continue
        ids.learn(step.expected, printed)
        assert normalize(printed) == normalize(step.expected), (
            f"README.md shows another output for:\n{step.code}")
