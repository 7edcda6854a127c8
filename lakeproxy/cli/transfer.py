"""`lake upload` and `lake download`: streamed both ways, with progress, rate and ETA."""

from __future__ import annotations

import mimetypes
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID

from lakeproxy.cli.client import ApiClient
from lakeproxy.cli.common import JsonOpt, Session, session
from lakeproxy.cli.objects import RecursiveOpt, as_prefix
from lakeproxy.cli.output import Failure
from lakeproxy.cli.uri import LakeURI, parse_uri, require_path, require_ref

_UMASK = os.umask(0)
os.umask(_UMASK)

ParallelOpt = Annotated[int, typer.Option("--parallelism", "-p", min=1, max=64,
                                          help="Files transferred at the same time")]


@dataclass(frozen=True, slots=True)
class Job:
    local: Path
    key: str
    size: int


class Tracker:
    """One progress bar over all bytes, its label counting finished files."""

    def __init__(self, progress: Progress, verb: str, jobs: list[Job]) -> None:
        self.progress, self.verb, self.files, self.done = progress, verb, len(jobs), 0
        self.task: TaskID = progress.add_task(self.label(), total=sum(j.size for j in jobs))

    def label(self) -> str:
        return f"{self.verb} {self.done}/{self.files} file(s)"

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def finished(self) -> None:
        self.done += 1
        self.progress.update(self.task, description=self.label())


def run_jobs(jobs: list[Job], work: Callable[[Job], Any], parallelism: int) -> list[Any]:
    """Run `work` on every job in a few threads; the first failure cancels the rest."""
    if parallelism == 1 or len(jobs) < 2:
        return [work(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        futures: list[Future[Any]] = [pool.submit(work, j) for j in jobs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()
            failed.result()
        return [f.result() for f in futures]


# -- upload -------------------------------------------------------------------------------


def upload_jobs(local: Path, uri: LakeURI, recursive: bool) -> list[Job]:
    """What to upload where: one file, or every regular file of a folder tree."""
    if local.is_dir():
        if not recursive:
            raise typer.BadParameter(f"{local} is a folder: pass --recursive",
                                     param_hint="LOCAL")
        prefix = as_prefix(uri.path)
        jobs = []
        for root, dirs, files in os.walk(local):
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                if path.is_file():
                    rel = path.relative_to(local).as_posix()
                    jobs.append(Job(path, prefix + rel, path.stat().st_size))
        return jobs
    if recursive:
        raise typer.BadParameter(f"{local} is not a folder", param_hint="LOCAL")
    key = uri.path or ""
    if not key or key.endswith("/"):
        key += local.name
    return [Job(local, key, local.stat().st_size)]


def upload(
    ctx: typer.Context,
    local: Annotated[Path, typer.Argument(exists=True, readable=True, metavar="LOCAL",
                                          help="A file, or a folder with --recursive")],
    uri: Annotated[LakeURI, typer.Argument(parser=parse_uri,
                                           metavar="lake://REPO/BRANCH/PATH")],
    recursive: RecursiveOpt = False,
    content_type: Annotated[str | None, typer.Option(
        help="Content type (default: guessed from the file name)")] = None,
    parallelism: ParallelOpt = 4,
    json_out: JsonOpt = False,
) -> None:
    """Upload a file, or a folder tree with --recursive, to a branch (uncommitted)."""
    branch = require_ref(uri, "branch")
    jobs = upload_jobs(local, uri, recursive)
    with session(ctx, json_out) as s, s.out.progress(in_bytes=True) as progress:
        tracker = Tracker(progress, "upload", jobs)

        def send(job: Job) -> dict[str, Any]:
            kind = content_type or mimetypes.guess_type(job.local.name)[0]
            with job.local.open("rb") as f:
                stats = s.api.upload_object(uri.repository, branch, job.key, f, job.size,
                                            content_type=kind, progress=tracker.advance)
            tracker.finished()
            return stats if isinstance(stats, dict) else {"path": job.key}

        results = run_jobs(jobs, send, parallelism)
    _report(s, results, jobs, "Uploaded", f"to {uri.repository}/{branch}")


# -- download -----------------------------------------------------------------------------


def _safe_target(base: Path, rel: str) -> Path:
    """`base/rel`, refusing keys that would land outside `base`."""
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or any(p in ("..", ".") for p in parts) or "\x00" in rel:
        raise Failure(f"refusing to write object {rel!r}: it would land outside {base}")
    return base.joinpath(*parts)


def download_jobs(api: ApiClient, uri: LakeURI, local: Path, recursive: bool) -> list[Job]:
    ref = require_ref(uri)
    if recursive:
        prefix = as_prefix(uri.path)
        # Keys ending in '/' are folder markers: the folders appear with the files in them.
        return [Job(_safe_target(local, o["path"][len(prefix):]), o["path"],
                    int(o.get("size_bytes") or 0))
                for o in api.list_objects(uri.repository, ref, prefix, recursive=True)
                if o.get("path_type") != "common_prefix" and not o["path"].endswith("/")]
    path = require_path(uri)
    target = local
    if local.is_dir():
        target = local / PurePosixPath(path).name
    stats = api.stat_object(uri.repository, ref, path)
    return [Job(target, path, int(stats.get("size_bytes") or 0))]


def fetch(api: ApiClient, repo: str, ref: str, job: Job, advance: Callable[[int], None]) -> int:
    """Stream one object into a temporary file beside its target, then move it in place."""
    job.local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{job.local.name}.", dir=job.local.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as f, api.open_object(repo, ref, job.key) as response:
            expected = response.headers.get("Content-Length")
            for chunk in response.iter_bytes():
                f.write(chunk)
                written += len(chunk)
                advance(len(chunk))
        if expected is not None and int(expected) != written:
            raise Failure(f"{job.key}: got {written} of {expected} bytes; retry the download")
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, job.local)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return written


def download(
    ctx: typer.Context,
    uri: Annotated[LakeURI, typer.Argument(parser=parse_uri,
                                           metavar="lake://REPO/REF/PATH")],
    local_arg: Annotated[str, typer.Argument(
        metavar="LOCAL", help="A file or folder; a folder with --recursive")],
    recursive: RecursiveOpt = False,
    parallelism: ParallelOpt = 4,
    json_out: JsonOpt = False,
) -> None:
    """Download an object, or every object under a path with --recursive."""
    ref = require_ref(uri)
    local = Path(local_arg)
    if not recursive and local_arg.endswith(("/", os.sep)):
        local.mkdir(parents=True, exist_ok=True)
    if not recursive:
        require_path(uri)
    elif local.exists() and not local.is_dir():
        raise typer.BadParameter(f"{local} exists and is not a folder", param_hint="LOCAL")
    with session(ctx, json_out) as s:
        with s.out.status(f"listing {uri}"):
            jobs = download_jobs(s.api, uri, local, recursive)
        with s.out.progress(in_bytes=True) as progress:
            tracker = Tracker(progress, "download", jobs)

            def get(job: Job) -> dict[str, Any]:
                n = fetch(s.api, uri.repository, ref, job, tracker.advance)
                tracker.finished()
                return {"path": job.key, "local": str(job.local), "size_bytes": n}

            results = run_jobs(jobs, get, parallelism)
    _report(s, results, jobs, "Downloaded", f"to {local}")


def _report(s: Session, results: Iterable[Any], jobs: list[Job], verb: str, where: str) -> None:
    results = list(results)
    total = sum(j.size for j in jobs)
    s.out.result(results, f"{verb} {len(jobs)} file(s), {total} bytes, {escape(where)}")
