"""The transfer engine: a run's connections shared by its files, ranges, work stealing, resume.

`Engine.run` fetches a model's files with `connections` worker threads. Its parts, one job each:

- partial.py: a file of the run (its partial file, range log and sidecar; what is written);
- schedule.py: which range a worker takes next (file order, at most `max_files` files open,
  work stealing), and what a failure, a retry or a restart does to a file's ranges;
- connection.py: a worker's loop (Range/If-Range requests, redirects, each piece written at its
  offset and logged), and the minimum-speed watch over every body being read;
- publish.py: a file's hashing thread, and its publish (fsync, rename) once the hash matches.

Written by hand: huggingface_hub and pooch fetch one stream per file; hf_transfer and aria2c
split files but keep no hash check before the file appears (bench/download compares them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from modelctl.core.errors import ModelctlError
from modelctl.core.record import FileResult
from modelctl.core.retry import RetryPolicy
from modelctl.core.settings import DEFAULT_CONNECTIONS, DEFAULT_SPLIT_SIZE, MIN_SPLIT_SIZE
from modelctl.net.connection import Connector, Flows, Worker
from modelctl.net.publish import start_hashing
from modelctl.net.schedule import Schedule
from modelctl.net.transfer import FileJob, TransferEvents, connect


class Engine:
    """Fetch files into place over `connections` connections; see the module's docstring."""

    def __init__(
        self,
        jobs: Sequence[FileJob],
        policy: RetryPolicy,
        events: TransferEvents,
        *,
        connections: int = DEFAULT_CONNECTIONS,
        max_files: int = DEFAULT_CONNECTIONS,
        split_size: int = DEFAULT_SPLIT_SIZE,
        stop: threading.Event | None = None,
        connector: Connector = connect,
    ) -> None:
        self.connections = max(1, connections)
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
        pieces = sum(1 + f.size // schedule.split_size for f in schedule.waiting)
        for number in range(min(self.connections, max(1, pieces))):
            worker = Worker(schedule, self.flows, self.connector)
            thread = threading.Thread(target=worker.run, name=f"fetch {number}", daemon=True)
            self.threads.append(thread)
            thread.start()
        try:
            while not schedule.finished.wait(0.2):
                self.flows.cut_slow(time.monotonic())
        except KeyboardInterrupt:
            self.cancel()
            raise
        for thread in self.threads:
            thread.join()

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
