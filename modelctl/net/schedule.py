"""Which range a connection fetches next, and what a file's failure or restart does to its ranges.

A worker takes, in this order: the next free range of the first file that has one (a hole an
earlier run left, a range given back after a failure, or the next segment of up to SEGMENTS
split sizes: ranges go out in file order, so each file's hashing runs while the next bytes
arrive); a file nobody has started (at most `max_files` at once); or the far half of the largest
range another worker is fetching (work stealing), so the last file never tails on one
connection; and when there is nothing to split either (small files, or ones hashing and
publishing), one more file past `max_files`: a connection does not idle while a file waits.
Until a file's first 206 shows the server splits it, the file has one request at a time.
Retries ask core/retry.py's `next_try`: when, and from which endpoint.

Every method here runs under `lock` (its docstring says when the caller must hold it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from modelctl.core.errors import DownloadError, ModelctlError, disk_error, option
from modelctl.core.record import FileResult
from modelctl.core.retry import Retry, RetryPolicy, next_try
from modelctl.core.settings import MAX_CONNECTIONS, MIN_SPLIT_SIZE
from modelctl.net.partial import ACTIVE, DONE, FAILED, PartialFile, Range, Stale
from modelctl.net.transfer import FileJob, TransferEvents, host_of, safe_url

SEGMENTS = 4  # a request asks for up to this many split sizes (16 MiB by default, as aria2c -k16M)

log = logging.getLogger(__name__)


class Schedule:
    """The run's files and their ranges, shared by the workers and the hashing threads."""

    def __init__(
        self,
        jobs: Sequence[FileJob],
        policy: RetryPolicy,
        events: TransferEvents,
        *,
        max_files: int,
        split_size: int,
        stop: threading.Event,
        on_start: Callable[[PartialFile], None],
    ) -> None:
        self.policy = policy
        self.events = events
        self.max_files = max(1, max_files)
        self.base_split = split_size  # the configured split size: spread() never goes above it
        self.split_size = split_size
        self.segment = SEGMENTS * split_size  # what one request asks for while a file has free bytes
        self.stop = stop
        self.on_start = on_start  # a file was opened: start its hashing (publish.py)
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)  # idle workers wait here
        self.waiting: deque[PartialFile] = deque(PartialFile(job, self.lock) for job in jobs)
        self.active: list[PartialFile] = []
        self.results: dict[str, FileResult] = {}  # rel_path → result, as files are published
        self.folders: set[Path] = set()  # the folders files were published into: to fsync (publish.py)
        self.errors: dict[str, ModelctlError] = {}  # rel_path → why the file failed
        self.left: set[str] = set()  # endpoints (host:port) a file had to leave: tried last by new files
        self.finished = threading.Event()

    # ------------------------------------------------------------------ taking ranges

    def take(self) -> tuple[PartialFile, Range] | None:
        """The next range to fetch (see the module's docstring for the order), or None: all done."""
        with self.lock:
            while True:
                if self.stop.is_set() or self.finished.is_set():
                    return None
                now = time.monotonic()
                wait, backing_off = 0.5, False
                for f in self.active:  # in file order: each file's hashing overlaps the next file's bytes
                    if f.state != ACTIVE:
                        continue
                    if f.not_before > now:
                        wait, backing_off = min(wait, f.not_before - now), True
                        continue
                    if not f.rangeable and any(r.taken for r in f.todo):
                        continue  # one request at a time until a 206 shows the server splits it
                    for r in f.todo:
                        if not r.taken:
                            return f, self._claim(f, r)
                if self.waiting and len(self.active) < self.max_files:
                    self._start(self.waiting.popleft())
                    continue
                stolen = self._steal(now)
                if stolen is not None:
                    return stolen
                # Nothing to take or split (small files in flight, hashing or publishing): one more
                # file rather than an idle connection; not while a file waits out a failure (a
                # failing server would open every file), and at most MAX_CONNECTIONS past max_files.
                extra = len(self.active) < self.max_files + MAX_CONNECTIONS
                if self.waiting and extra and not backing_off:
                    self._start(self.waiting.popleft())
                    continue
                if not self.active and not self.waiting:
                    self.check_finished()
                    return None
                self.cond.wait(wait)

    def _claim(self, f: PartialFile, r: Range) -> Range:
        """Take free range r, or its first segment: the rest stays free, so ranges go out in order
        and the verified prefix (what the hashing thread has read) grows while bytes arrive."""
        if not f.single and r.end - r.start > self.segment + self.split_size:
            rest = Range(r.start + self.segment, r.end, f.generation)
            r.end = r.start + self.segment
            f.todo.insert(f.todo.index(r) + 1, rest)
        r.taken = True
        return r

    def _steal(self, now: float) -> tuple[PartialFile, Range] | None:
        best: tuple[int, PartialFile, Range] | None = None
        for f in self.active:
            if f.state != ACTIVE or not f.rangeable or f.single or f.not_before > now:
                continue
            for r in f.todo:
                left = r.end - r.start
                if r.taken and left >= 2 * self.split_size and (best is None or left > best[0]):
                    best = (left, f, r)
        if best is None:
            return None
        left, f, victim = best
        middle = victim.start + left // 2
        stolen = Range(middle, victim.end, f.generation, taken=True)
        victim.end = middle
        f.todo.append(stolen)
        log.debug("%s: split at %d (%d bytes each side)", f.job.rel_path, middle, left // 2)
        return f, stolen

    def _start(self, f: PartialFile) -> None:
        """Open a file for fetching (under the lock) and start its hashing."""
        job = f.job
        try:
            f.open()
        except OSError as err:
            f.close()
            self.errors[job.rel_path] = disk_error(err, f"{job.rel_path}: opening {f.path}")
            return
        self.active.append(f)
        # An endpoint another file of this run had to leave is tried last (until the others fail).
        order = sorted(range(len(job.urls)), key=lambda i: host_of(job.urls[i]) in self.left)
        f.url_index = order[0]
        log.info(
            "fetch %s (%d bytes) from %s%s",
            job.rel_path,
            job.size,
            safe_url(job.urls[f.url_index]),
            f", resuming with {f.resumed_from} bytes" if f.resumed_from else "",
        )
        self.events.file_start(job, f.resumed_from)
        self.on_start(f)

    def spread(self, connections: int) -> None:
        """Ranges small enough for `connections` to have one each: the split size comes down to
        what is left over twice the count (never under MIN_SPLIT_SIZE, never over the configured
        size), so 64 connections on a slow link are not 20 ranges of 16 MiB."""
        with self.lock:
            left = sum(f.size for f in self.waiting)
            left += sum(r.end - r.start for f in self.active for r in f.todo)
            split = min(self.base_split, max(MIN_SPLIT_SIZE, left // (2 * max(1, connections))))
            # A request asks for one such range then (a fair share of what is left, twice over),
            # not SEGMENTS of them: on a slow link those would be cut by steals at the end.
            self.split_size = split
            self.segment = SEGMENTS * split if split == self.base_split else split

    def give_back(self, f: PartialFile, r: Range) -> None:
        """A worker is done with range r (fetched, failed or stale): free what is left of it."""
        with self.lock:
            r.taken = False
            if r.start >= r.end and r in f.todo:
                f.todo.remove(r)
            f.cond.notify_all()
            self.cond.notify_all()

    # ------------------------------------------------------------------ a file's state (under the lock)

    def check(self, f: PartialFile, r: Range) -> None:
        """Under the lock: go on only if the range is of the file's generation and the run goes on."""
        if r.generation != f.generation or f.state != ACTIVE or self.stop.is_set():
            raise Stale

    def check_finished(self) -> None:
        """Under the lock: the run is finished when no file is active or waiting."""
        if not self.active and not self.waiting:
            self.finished.set()
            self.cond.notify_all()

    def restart(self, f: PartialFile, *, keep: Range | None = None) -> None:
        """Under the lock: throw away what is written; the file starts over from byte 0 as one range.

        keep: the caller's range, which becomes that whole range (taken: the caller goes on with
        it); without it the range is free for any worker.
        """
        f.generation += 1
        while f.writing:
            f.cond.wait()
        f.dropped = f.dropped or bool(f.done)
        f.clear()
        if keep is None:
            f.todo = [Range(0, f.size, f.generation)]
        else:
            keep.start, keep.end, keep.generation = 0, f.size, f.generation
            f.todo = [keep]
        f.rangeable = f.single = False
        f.cond.notify_all()
        self.cond.notify_all()

    def retry_later(self, f: PartialFile, generation: int, err: Retry, url_index: int = -1) -> None:
        """A range failed in a way worth retrying: back the file off, maybe onto another endpoint."""
        job = f.job
        with self.lock:
            if generation != f.generation or f.state != ACTIVE:
                return
            now = time.monotonic()
            if f.not_before > now:  # another range of this file failed already: one retry for both
                return
            if len(job.urls) > 1 and url_index not in (-1, f.url_index):
                # A range still in flight on an endpoint the file has already left: its failure
                # says nothing new, spends no attempt and never sends the file back there.
                self.cond.notify_all()
                return
            f.failures += 1
            reason = err.reason
            then = next_try(self.policy, f.failures, err.delay, max(f.url_index, 0), len(job.urls))
            if then is None:
                self.fail(f, _gave_up(f, reason))
                return
            delay = then.delay
            if len(job.urls) > 1:
                self.left.add(host_of(job.urls[f.url_index]))
                f.url_index = then.target
                f.resolved = None
                reason += f"; trying {host_of(job.urls[f.url_index])}"
            f.not_before = now + delay
            attempt = f.failures
            self.cond.notify_all()
        log.warning("retry %s (attempt %d) in %.1f s: %s", job.rel_path, attempt + 1, delay, reason)
        self.events.file_retry(job, attempt, delay, reason)

    def fail(self, f: PartialFile, err: ModelctlError) -> None:
        """Under the lock: the file failed; its partial and log stay for the next run."""
        if f.state in (DONE, FAILED):
            return
        f.state = FAILED
        f.generation += 1
        while f.writing:
            f.cond.wait()
        f.close()  # the partial and its log stay: the next run resumes them
        self.errors[f.job.rel_path] = err
        self.active.remove(f)
        f.cond.notify_all()
        self.check_finished()

    def fail_all(self, why: str) -> None:
        """Under the lock: every file fails (a worker's bug): the run ends instead of hanging."""
        for f in list(self.active):
            self.fail(f, DownloadError(f"{f.job.rel_path}: internal error: {why}"))
        self.waiting.clear()
        self.check_finished()

    def published(self, f: PartialFile, result: FileResult) -> None:
        """The file is in place under its name, verified."""
        with self.lock:
            f.state = DONE
            self.results[f.job.rel_path] = result
            self.folders.add(f.job.dest.parent)
            self.active.remove(f)
            self.check_finished()
            self.cond.notify_all()


def _gave_up(f: PartialFile, reason: str) -> DownloadError:
    job = f.job
    return DownloadError(
        f"{job.rel_path}: {reason}; gave up after {f.failures} attempts "
        f"({f.held()} of {job.size} bytes kept for the next run).",
        hint="Run the same command again to resume, or raise {0} / {1}.",
        steps=(option("retries"), option("timeout")),
        api_hint="Call it again to resume, or raise retries= / timeout= of ModelManager.from_config.",
    )
