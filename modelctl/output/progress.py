"""Progress while downloading: DownloadEvents as nothing (-q), plain stderr lines, or Rich bars.

Animated only when stderr is a terminal and the format is for people; otherwise one line per event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelctl.download import NullEvents
from modelctl.output.console import err, mb_per_s, stderr, visible

if TYPE_CHECKING:
    from pathlib import Path

    from modelctl.download import DownloadEvents, ModelPlan
    from modelctl.output import Format
    from modelctl.transfer import FileJob, FileResult


class QuietEvents(NullEvents):
    """--quiet: report nothing while working."""


class PlainEvents(QuietEvents):
    """One line on stderr per model, file start, retry and finish (stderr is not a terminal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

    def _line(self, text: str) -> None:
        with self._lock:  # best-effort: stderr closed or its reader gone, the download goes on
            sink = stderr()
            sink.write(visible(text, keep_newlines=False) + "\n")
            sink.flush()

    def model_start(self, plan: ModelPlan) -> None:
        todo = [f for f in plan.files if f.action != "keep"]
        need = sum(f.needed for f in todo)
        self._line(
            f"{plan.spec.id}: {len(todo)} to fetch ({need:,} bytes), {len(plan.files) - len(todo)} kept, "
            f"into {plan.folder} ({plan.root.name} root) at {plan.snapshot.commit[:12]}"
            + (f" (on disk: {plan.behind[:12]}, an older commit)" if plan.behind else "")
        )

    def lock_wait(self, folder: Path, pid: int | None) -> None:
        self._line(
            f"waiting for {'pid ' + str(pid) if pid else 'another process'}, which holds the lock on {folder}"
        )

    def metadata_retry(self, repo_id: str, attempt: int, delay: float, reason: str) -> None:
        self._line(f"retry {repo_id} metadata (attempt {attempt + 1}) in {delay:.1f} s: {reason}")

    def file_start(self, job: FileJob, offset: int) -> None:
        self._started[job.rel_path] = time.monotonic()
        how = f"resume at {offset:,} of" if offset else "start"
        self._line(f"  {how} {job.rel_path} ({job.size:,} bytes)")

    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None:
        self._line(f"  retry {job.rel_path} (attempt {attempt + 1}) in {delay:.1f} s: {reason}")

    def file_done(self, job: FileJob, result: FileResult) -> None:
        took = time.monotonic() - self._started.get(job.rel_path, time.monotonic())
        self._line(
            f"  done {job.rel_path}: {result.bytes_fetched:,} bytes from {result.endpoint} in {took:.1f} s "
            f"({mb_per_s(result.bytes_fetched, took)}), sha256 {(result.sha256 or '')[:12]}… verified"
        )


class RichEvents(PlainEvents):
    """Animated progress on a terminal: overall bytes plus one bar per file in flight."""

    def __init__(self) -> None:
        super().__init__()
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err(),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None

    def __enter__(self) -> RichEvents:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _line(self, text: str) -> None:
        self.progress.console.print(visible(text, keep_newlines=False), markup=False, highlight=False)

    def model_start(self, plan: ModelPlan) -> None:
        super().model_start(plan)
        need = sum(f.needed for f in plan.files)
        if self._overall is not None:
            self.progress.remove_task(self._overall)
        self._overall = self.progress.add_task(f"{visible(plan.spec.id)} (total)", total=need or None)

    def file_start(self, job: FileJob, offset: int) -> None:
        self._started[job.rel_path] = time.monotonic()
        self._tasks[job.rel_path] = self.progress.add_task(
            visible(job.rel_path, keep_newlines=False), total=job.size, completed=offset
        )

    def file_advance(self, job: FileJob, nbytes: int) -> None:
        self.progress.advance(self._tasks[job.rel_path], nbytes)
        if self._overall is not None:
            self.progress.advance(self._overall, nbytes)

    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None:
        super().file_retry(job, attempt, delay, reason)
        task = self._tasks.get(job.rel_path)
        if task is not None:
            self.progress.update(
                task, description=f"{visible(job.rel_path, keep_newlines=False)} (retry {attempt})"
            )

    def file_done(self, job: FileJob, result: FileResult) -> None:
        task = self._tasks.pop(job.rel_path, None)
        if task is not None:
            self.progress.remove_task(task)
        super().file_done(job, result)


@contextmanager
def download_events(fmt: Format) -> Iterator[DownloadEvents]:
    """Rich progress on a terminal, plain lines otherwise, nothing with --quiet."""
    from modelctl.logs import mute_unless_configured

    mute_unless_configured()  # the events say each retry; the log says it only where -v/--log-file ask
    if fmt.is_quiet:
        yield QuietEvents()
    elif stderr().isatty() and fmt.is_human:
        with RichEvents() as events:
            yield events
    else:
        yield PlainEvents()
