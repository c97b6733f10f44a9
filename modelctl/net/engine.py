"""The transfer engine: a run's connections shared by its files, ranges, work stealing, resume.

`Engine.run` fetches a model's files with `connections` worker threads. Its parts, one job each:

- partial.py: a file of the run (its partial file, range log and sidecar; what is written);
- schedule.py: which range a worker takes next (file order, at most `max_files` files open,
  work stealing), and what a failure, a retry or a restart does to a file's ranges;
- connection.py: a worker's loop (Range/If-Range requests, redirects, each piece written at its
  offset and logged), and the minimum-speed watch over every body being read;
- publish.py: a file's hashing thread, and its publish (fsync, rename) once the hash matches;
- pace.py: how many connections the run keeps open (it adapts, unless the count is fixed).

Written by hand: huggingface_hub and pooch fetch one stream per file; hf_transfer and aria2c
split files but keep no hash check before the file appears (bench/download compares them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from modelctl.core.errors import ModelctlError
from modelctl.core.record import FileResult
from modelctl.core.retry import RetryPolicy
from modelctl.core.settings import DEFAULT_SPLIT_SIZE, MAX_CONNECTIONS, MIN_SPLIT_SIZE
from modelctl.net.connection import Connector, Flows, Worker
from modelctl.net.pace import Pacer
from modelctl.net.publish import start_hashing, sync_folders
from modelctl.net.schedule import Schedule
from modelctl.net.transfer import FileJob, TransferEvents, connect

log = logging.getLogger(__name__)

# From this many connections (the pacer found the link slow per connection) ranges are sized for
# the count; below it files keep the configured split, and a small file stays one request.
SPREAD_FROM = 16


class Engine:
    """Fetch files into place over `connections` connections; see the module's docstring."""

    def __init__(
        self,
        jobs: Sequence[FileJob],
        policy: RetryPolicy,
        events: TransferEvents,
        *,
        connections: int | None = None,
        max_files: int = MAX_CONNECTIONS,
        split_size: int = DEFAULT_SPLIT_SIZE,
        stop: threading.Event | None = None,
        connector: Connector = connect,
    ) -> None:
        self.pacer = Pacer(connections, MAX_CONNECTIONS)  # None: adapt (pace.py); a number: fixed
        self.connector = connector
        self.stop = stop or threading.Event()
        self.schedule = Schedule(
            jobs,
            policy,
            events,
            max_files=max_files,
            split_size=max(MIN_SPLIT_SIZE, split_size),  # a steal leaves the piece in flight alone
            stop=self.stop,
            on_start=lambda f: start_hashing(self.schedule, f),
        )
        self.flows = Flows(policy.timeout)
        self.threads: list[threading.Thread] = []
        self._pieces = 0  # ranges of at least the smallest split size the run's files make (run)
        self._running = 0  # workers that have not left; more than the pacer's target: one leaves
        self._count_lock = threading.Lock()

    @property
    def results(self) -> dict[str, FileResult]:
        """rel_path → result, for each file published."""
        return self.schedule.results

    @property
    def errors(self) -> dict[str, ModelctlError]:
        """rel_path → why the file failed, for each file that did."""
        return self.schedule.errors

    def run(self) -> None:
        """Fetch every file; return when each is published or failed (see results and errors).

        Ctrl-C (KeyboardInterrupt in this thread) stops the workers at their next piece, keeping
        the partial files and their logs, and goes up.
        """
        schedule = self.schedule
        if not schedule.waiting:
            return
        smallest = schedule.split_size if self.pacer.fixed else MIN_SPLIT_SIZE  # spread() may go down to it
        self._pieces = sum(1 + f.size // smallest for f in schedule.waiting)
        self._add_workers(self.pacer.target)
        try:
            while not schedule.finished.wait(0.2):
                now = time.monotonic()
                self.flows.cut_slow(now)
                self._add_workers(self.pacer.tick(now, self.flows.received, len(self.flows.reading)))
        except KeyboardInterrupt:
            self.cancel()
            self._sync_folders()  # what was published stays published
            raise
        for thread in self.threads:
            thread.join()
        self._sync_folders()
        if len(self.pacer.counts) > 1:
            log.info("connections: %s", " -> ".join(map(str, self.pacer.counts)))

    def _sync_folders(self) -> None:
        with self.schedule.lock:
            folders = sorted(self.schedule.folders)
        sync_folders(folders)

    @property
    def connection_counts(self) -> list[int]:
        """Every connection count the run chose, in order (one item when it never changed)."""
        return list(self.pacer.counts)

    def _add_workers(self, target: int) -> None:
        """Start workers up to target (never more than the run has pieces to fetch)."""
        target = min(target, max(1, self._pieces))
        if not self.pacer.fixed and target >= SPREAD_FROM:  # a link slow per connection: ranges
            self.schedule.spread(target)  # sized for the count, smaller as what is left shrinks
        with self._count_lock:
            missing = target - self._running
            self._running += max(0, missing)
        for _ in range(missing):
            worker = Worker(self.schedule, self.flows, self.connector, self.pacer, self._leave)
            thread = threading.Thread(target=worker.run, name=f"fetch {len(self.threads)}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _leave(self) -> bool:
        """Asked by a worker between ranges: whether it leaves (the run keeps fewer connections)."""
        with self._count_lock:
            if self._running > self.pacer.target:
                self._running -= 1
                return True
            return False

    def cancel(self) -> None:
        """Stop: every worker ends at its next piece; what was written stays for a resume."""
        self.stop.set()
        schedule = self.schedule
        with schedule.lock:
            schedule.cond.notify_all()
            for f in schedule.active:
                f.cond.notify_all()
        deadline = time.monotonic() + 2.0
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def fetch_files(
    jobs: Sequence[FileJob],
    policy: RetryPolicy,
    events: TransferEvents,
    **settings: Any,
) -> Engine:
    """Run an Engine over jobs (see Engine) and return it, with its results and errors."""
    engine = Engine(jobs, policy, events, **settings)
    engine.run()
    return engine
