"""A file of a download run: its partial file, range log and sidecar; what is written, what is left.

The engine's parts share it: schedule.py hands out its ranges, connection.py writes the bytes
that arrive (`PartialFile.write`), publish.py hashes the written prefix and publishes the file.
Its fields change under the run's lock (Schedule.lock), the bytes under the file's own
write lock.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections.abc import Sequence

from modelctl.net.transfer import FileJob, resumable_sidecar, safe_url
from modelctl.store.storage import (
    RANGE_RECORD,
    merge_ranges,
    partial_path,
    ranges_path,
    read_ranges,
    sidecar_path,
)

SIDECAR_VERSION = 2  # 1: one stream, the partial's size is what it holds; 2: the range log says
# Bytes read from a socket, written and hashed at a time. A piece this size stays in the core's
# L2 cache between recv, pwrite and sha256: the 1.6 GB model took 3.3 s here with 1 MiB pieces
# against 2.3-2.65 s with 128 or 256 KiB (dd agrees: 1.5 GB written with bs=1M cost 2.3-2.9 s of
# CPU, with bs=64k 0.6 s). 256 KiB for fewer trips through Python than 128.
PIECE = 256 << 10  # what one read and one write move: a connection's unit of progress
LOG_RECORD = struct.Struct(RANGE_RECORD)

ACTIVE, PUBLISHING, DONE, FAILED = "active", "publishing", "done", "failed"


class Stale(Exception):
    """The file restarted, failed or the run stopped while this range was being fetched."""


class DiskError(Exception):
    """Writing the partial file or its log failed: our disk, not the network."""

    def __init__(self, err: OSError, offset: int) -> None:
        super().__init__(str(err))
        self.err = err
        self.offset = offset


class Range:
    """Bytes [start, end) of a file still to fetch; `start` advances as they are written."""

    __slots__ = ("end", "generation", "start", "taken", "url_index")

    def __init__(self, start: int, end: int, generation: int, *, taken: bool = False) -> None:
        self.start = start
        self.end = end
        self.generation = generation  # the file's generation it belongs to (see PartialFile.generation)
        self.taken = taken  # a worker is fetching it
        self.url_index = -1  # the endpoint of its last request (job.urls)


class PartialFile:
    """One file of the run: its partial file and range log, what is written, what is left."""

    def __init__(self, job: FileJob, lock: threading.Lock) -> None:
        self.job = job
        self.path = partial_path(job.folder, job.rel_path)
        self.sidecar = sidecar_path(job.folder, job.rel_path)
        self.log_path = ranges_path(job.folder, job.rel_path)
        self.cond = threading.Condition(lock)  # the hashing thread waits here for the prefix
        self.write_lock = threading.Lock()  # one pwrite at a time (see write)
        self.fd = -1
        self.log_fd = -1
        self.state = ACTIVE
        self.generation = 0  # bumped when the file starts over: older writers must not write
        self.writing = 0  # workers between their generation check and the end of their write
        self.done: list[tuple[int, int]] = []  # written [start, end) ranges, merged, sorted
        self.todo: list[Range] = []
        self.etag: str | None = None
        self.rangeable = False  # a 206 proved this server splits this file
        self.single = False  # a 200 made it one stream
        self.url_index = 0
        self.resolved: str | None = None  # the URL a redirect led to, reused by every range
        self.host: str | None = None
        self.failures = 0
        self.mismatches = 0
        self.not_before = 0.0  # retry backoff: no range of the file starts before this
        self.received = 0
        self.resumed_from = 0
        self.dropped = False  # bytes of an earlier run were thrown away

    @property
    def size(self) -> int:
        return self.job.size

    def held(self) -> int:
        return sum(end - start for start, end in self.done)

    def frontier(self) -> int:
        """Bytes from 0 written without a gap: what the hashing thread may read."""
        return self.done[0][1] if self.done and self.done[0][0] == 0 else 0

    def add_done(self, start: int, end: int) -> None:
        """Add a written span; merged with its neighbours (usually it extends the span before it)."""
        done = self.done
        for i, (a, b) in enumerate(done):
            if b == start:  # the usual case: the next piece of the same range
                if i + 1 < len(done) and done[i + 1][0] <= end:
                    done[i : i + 2] = [(a, max(end, done[i + 1][1]))]
                else:
                    done[i] = (a, end)
                return
        self.done = merge_ranges([*done, (start, end)])

    def open(self) -> None:
        """Open the partial and its log; adopt what an earlier run wrote if its sidecar matches."""
        job = self.job
        self.path.parent.mkdir(parents=True, exist_ok=True)
        meta = resumable_sidecar(job.folder, job.rel_path, job.size, job.sha256, job.blob_id)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if meta is None:
            self.clear()
        else:
            self.etag = meta["etag"]
            if meta.get("version") == 1:  # one stream: the partial's size is what it holds
                held = min(os.fstat(self.fd).st_size, job.size)
                os.ftruncate(self.log_fd, 0)
                if held:
                    os.write(self.log_fd, LOG_RECORD.pack(0, held))
                self.done = [(0, held)] if held else []
                self.begin(meta.get("url") or job.urls[0], self.etag)
            else:
                self.done = read_ranges(self.log_path, job.size)
        self.todo = [Range(a, b, self.generation) for a, b in gaps(self.done, job.size)]
        self.resumed_from = self.held()

    def clear(self) -> None:
        """Forget every byte written: the partial and its log emptied, the sidecar removed."""
        os.ftruncate(self.fd, 0)
        os.ftruncate(self.log_fd, 0)
        self.sidecar.unlink(missing_ok=True)
        self.done = []
        self.etag = None

    def begin(self, url: str, etag: str | None) -> None:
        """Record what the bytes being written are, so a later run can resume them."""
        self.etag = etag
        meta = {
            "version": SIDECAR_VERSION,
            "url": safe_url(url),  # signed CDN URLs carry credentials in the query
            "path": self.job.rel_path,
            "commit": self.job.commit,
            "size": self.job.size,
            "sha256": self.job.sha256,
            "blob_id": self.job.blob_id,
            "etag": etag,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.replace(tmp, self.sidecar)

    def close(self) -> None:
        for fd in (self.fd, self.log_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.log_fd = -1

    def write(self, data: memoryview, offset: int) -> None:
        """pwrite the piece, then log its span. One writer per file at a time: ext4 takes the
        inode's lock for every buffered write, and 16 threads writing one file spent ~18% of
        the run's CPU spinning on it in the kernel (perf); waiting on a Python lock sleeps."""
        try:
            with self.write_lock:
                written = 0
                while written < len(data):
                    written += os.pwrite(self.fd, data[written:], offset + written)
                os.write(self.log_fd, LOG_RECORD.pack(offset, offset + len(data)))  # after the bytes
        except OSError as err:
            raise DiskError(err, offset) from None


def gaps(done: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The spans of [0, size) not in done (sorted, merged); one empty span for an empty file."""
    out, at = [], 0
    for start, end in done:
        if start > at:
            out.append((at, start))
        at = max(at, end)
    if at < size or (size == 0 and not done):
        out.append((at, size))
    return out
