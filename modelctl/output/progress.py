"""Progress while downloading: DownloadEvents as nothing (-q), plain stderr lines, or Rich bars.

Animated only when stderr is a terminal and the format is for people; otherwise one line per event,
and for a file in flight a line every PROGRESS_INTERVAL seconds (MODELCTL_PROGRESS_INTERVAL overrides
it), so a CI log shows a long download moving.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelctl.core.logs import mute_unless_configured
from modelctl.fetch.download import NullEvents
from modelctl.output.console import err, mb_per_s, stderr, visible

if TYPE_CHECKING:
    from pathlib import Path

    from modelctl.core.record import FileResult
    from modelctl.fetch.download import DownloadEvents, ModelPlan
    from modelctl.net.transfer import FileJob
    from modelctl.output import Format


PROGRESS_INTERVAL = 10.0  # seconds between plain progress lines of one file in flight
MIN_RATE_SECONDS = 0.05  # below this a rate is noise ("0 MB/s" for a 60-byte file): not shown


def progress_interval() -> float:
    """PROGRESS_INTERVAL, or MODELCTL_PROGRESS_INTERVAL when it is a positive number of seconds."""
    try:
        value = float(os.environ.get("MODELCTL_PROGRESS_INTERVAL", ""))
    except ValueError:
        return PROGRESS_INTERVAL
    return value if value > 0 else PROGRESS_INTERVAL


def rate(nbytes: int, seconds: float) -> str | None:
    """Bytes per second in kB/s or MB/s; None when the time is too short to mean anything."""
    if seconds < MIN_RATE_SECONDS:
        return None
    per_second = nbytes / seconds
    if per_second < 1e3:
        return f"{per_second:.0f} B/s"
    if per_second < 1e6:
        return f"{per_second / 1e3:.0f} kB/s"
    return mb_per_s(nbytes, seconds)


def checked_hash(job: FileJob, result: FileResult) -> str:
    """The digest the file was verified by: sha256 for an LFS file, git's blob sha1 otherwise."""
    if job.sha256 is None:
        return f"git-sha1 {job.blob_id[:12]}…"
    return f"sha256 {(result.sha256 or '')[:12]}…"


class _InFlight:
    """A file being fetched, as the plain progress lines report it."""

    def __init__(self, job: FileJob, offset: int, now: float) -> None:
        self.job = job
        self.done = offset
        self.reported_at = now
        self.reported_bytes = offset


class QuietEvents(NullEvents):
    """--quiet: report nothing while working."""


class PlainEvents(QuietEvents):
    """One line on stderr per model, file start, retry and finish (stderr is not a terminal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}
        self._interval = progress_interval()  # read here, not at import: tests set it per run
        self._flight_lock = threading.Lock()
        self._in_flight: dict[str, _InFlight] = {}

    def _line(self, text: str) -> None:
        with self._lock:  # best-effort: stderr closed or its reader gone, the download goes on
            sink = stderr()
            sink.write(visible(text, keep_newlines=False) + "\n")
            sink.flush()

    def model_start(self, plan: ModelPlan) -> None:
        todo = [f for f in plan.files if f.action not in ("keep", "reuse")]
        reused = sum(1 for f in plan.files if f.action == "reuse")
        need = sum(f.needed for f in todo)
        self._line(
            f"{plan.spec.id}: {len(todo)} to fetch ({need:,} bytes), "
            + (f"{reused} to reuse from this machine, " if reused else "")
            + f"{len(plan.files) - len(todo) - reused} kept, "
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
        now = time.monotonic()
        self._started[job.rel_path] = now
        with self._flight_lock:
            self._in_flight[job.rel_path] = _InFlight(job, offset, now)
        how = f"resume at {offset:,} of" if offset else "start"
        self._line(f"  {how} {job.rel_path} ({job.size:,} bytes)")

    def file_advance(self, job: FileJob, nbytes: int) -> None:
        now = time.monotonic()
        with self._flight_lock:
            flight = self._in_flight.get(job.rel_path)
            if flight is None:
                return
            flight.done += nbytes
            took = now - flight.reported_at
            if took < self._interval:
                return
            fetched = flight.done - flight.reported_bytes
            flight.reported_at, flight.reported_bytes, done = now, flight.done, flight.done
        percent = f" ({done * 100 // job.size}%)" if job.size else ""
        speed = rate(fetched, took)
        self._line(
            f"  {job.rel_path}: {done:,} of {job.size:,} bytes{percent}" + (f", {speed}" if speed else "")
        )

    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None:
        self._line(f"  retry {job.rel_path} (attempt {attempt + 1}) in {delay:.1f} s: {reason}")

    def file_reused(self, folder: Path, result: FileResult) -> None:
        algo = "sha256" if result.sha256 else "git-sha1"
        self._line(f"  reused {result.path}: {result.size:,} bytes from {result.source}, {algo} verified")

    def file_done(self, job: FileJob, result: FileResult) -> None:
        took = time.monotonic() - self._started.get(job.rel_path, time.monotonic())
        with self._flight_lock:
            self._in_flight.pop(job.rel_path, None)
        speed = rate(result.bytes_fetched, took)
        self._line(
            f"  done {job.rel_path}: {result.bytes_fetched:,} bytes from {result.endpoint} in {took:.1f} s"
            + (f" ({speed})" if speed else "")
            + f", {checked_hash(job, result)} verified"
        )


class RichEvents(PlainEvents):
    """Animated progress on a terminal: overall bytes plus one bar per file in flight."""

    def __init__(self, *, bars_only: bool = False) -> None:
        super().__init__()
        self._bars_only = bars_only  # --quiet on a terminal: the bars, erased at the end; no lines
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
            transient=bars_only,
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None
        self._counted: dict[str, int] = {}  # path → bytes the model's total bar counts as to fetch
        self._model = ""

    def __enter__(self) -> RichEvents:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _line(self, text: str) -> None:
        if not self._bars_only:
            self.progress.console.print(visible(text, keep_newlines=False), markup=False, highlight=False)

    def model_start(self, plan: ModelPlan) -> None:
        super().model_start(plan)
        self._counted = {f.remote.path: f.needed for f in plan.files if f.needed}
        self._model = plan.spec.id
        if self._overall is not None:
            self.progress.remove_task(self._overall)
            self._overall = None
        self._grow_total()

    def _grow_total(self) -> None:
        need = sum(self._counted.values())
        if not need:  # nothing to fetch: the plan line says so, an empty bar would read `0/? bytes ?`
            return
        if self._overall is None:
            self._overall = self.progress.add_task(f"{visible(self._model)} (total)", total=need)
        else:
            self.progress.update(self._overall, total=need)

    def file_start(self, job: FileJob, offset: int) -> None:
        if job.rel_path not in self._counted:  # planned as reused, but its source failed the check
            self._counted[job.rel_path] = job.size - offset
            self._grow_total()
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
    """Rich progress on a terminal, plain lines otherwise; with --quiet, only bars on a terminal.

    --quiet keeps stdout to the paths; on a terminal's stderr it still draws the bars (a 14 GB
    model in silence looks hung), erased when done. Piped, --quiet and --json report nothing.
    """
    mute_unless_configured()  # the events say each retry; the log says it only where -v/--log-file ask
    if fmt.is_quiet:
        if fmt.is_json or not stderr().isatty():
            yield QuietEvents()
            return
        with RichEvents(bars_only=True) as events:
            yield events
    elif stderr().isatty() and fmt.is_human:
        with RichEvents() as events:
            yield events
    else:
        yield PlainEvents()
