"""The transfer engine: a run's connections shared by its files, ranges, work stealing, resume.

`Engine.run` fetches a model's files with `connections` worker threads. A worker takes, in this
order: the next free range of the first file that has one (a hole an earlier run left, a range
given back after a failure, or the next segment of up to 4 split sizes: ranges go out in file
order, so each file's hashing runs while the next bytes arrive); a file nobody has started (at
most `max_files` at once); or the far half of the largest range another worker is fetching (work
stealing), so the last file never tails on one connection. Until a file's first 206 shows the
server splits it, the file has one request at a time.

A range is requested with Range and If-Range (the file's ETag) and written in place, at its
offset, into the partial file; after each piece's write its (start, end) is appended to the
partial's range log, so a rerun after kill -9 or Ctrl-C fetches only what is missing, plus at
most the piece each connection was writing. Each worker keeps its connections alive per host.

A hashing thread per file reads back the contiguous prefix as it grows (from the page cache, no
second read from disk) and the file is published (fsync, rename) only when its sha256, or git
blob sha1, matches what the Hub listed.

Nothing is stitched from two versions of a file: every range after the first carries If-Range,
a 206 whose ETag differs restarts the file from zero, and a 200 (a server that ignores Range, as
olah's offline mirror does, or an If-Range that failed) makes the file one stream from byte 0.

Written by hand: huggingface_hub and pooch fetch one stream per file; hf_transfer and aria2c
split files but keep no hash check before the file appears (bench/download compares them).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from modelctl.core.errors import (
    BadChecksumError,
    DownloadError,
    MissingModelError,
    ModelctlError,
    describe_error,
    disk_error,
)
from modelctl.core.hashing import GIT_SHA1, Hasher
from modelctl.core.record import FileResult
from modelctl.core.retry import MIN_SPEED, RETRYABLE_STATUSES, Retry, RetryPolicy, next_try, retry_after
from modelctl.core.settings import DEFAULT_CONNECTIONS, DEFAULT_SPLIT_SIZE, MIN_SPLIT_SIZE
from modelctl.net.transfer import (
    MAX_REDIRECTS,
    FileJob,
    TransferEvents,
    connect,
    content_range,
    host_of,
    proxy_refused,
    resumable_sidecar,
    safe_url,
    start_writeback,
)
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
PIECE = 256 << 10
SEGMENTS = 4  # a request asks for up to this many split sizes (16 MiB by default, as aria2c -k16M)
WRITEBACK = 32 << 20  # ask the kernel to start writing every 32 MiB of verified prefix
_LOG_RECORD = struct.Struct(RANGE_RECORD)
_REDIRECTS = (301, 302, 303, 307, 308)

log = logging.getLogger(__name__)


class _Stale(Exception):
    """The file restarted, failed or the run stopped while this range was being fetched."""


class _DiskError(Exception):
    """Writing the partial file or its log failed: our disk, not the network."""

    def __init__(self, err: OSError, offset: int) -> None:
        super().__init__(str(err))
        self.err = err
        self.offset = offset


class _Range:
    """Bytes [start, end) of a file still to fetch; `start` advances as they are written."""

    __slots__ = ("end", "generation", "start", "taken", "url_index")

    def __init__(self, start: int, end: int, generation: int, *, taken: bool = False) -> None:
        self.start = start
        self.end = end
        self.generation = generation  # the file's generation it belongs to (see _File.generation)
        self.taken = taken  # a worker is fetching it
        self.url_index = -1  # the endpoint of its last request (job.urls)


ACTIVE, PUBLISHING, DONE, FAILED = "active", "publishing", "done", "failed"


class _Flow:
    """A response body being read: its socket, and the bytes read since the window began."""

    __slots__ = ("bytes", "host", "since", "sock", "too_slow")

    def __init__(self, sock: socket.socket | None, host: str, now: float) -> None:
        self.sock = sock
        self.host = host
        self.since = now
        self.bytes = 0
        self.too_slow: str | None = None  # why it was cut


class _File:
    """One file of the run: its partial file and range log, what is written, what is left."""

    def __init__(self, job: FileJob, lock: threading.Lock) -> None:
        self.job = job
        self.path = partial_path(job.folder, job.rel_path)
        self.sidecar = sidecar_path(job.folder, job.rel_path)
        self.log_path = ranges_path(job.folder, job.rel_path)
        self.cond = threading.Condition(lock)  # the hashing thread waits here for the prefix
        self.write_lock = threading.Lock()  # one pwrite at a time (see Engine._write)
        self.fd = -1
        self.log_fd = -1
        self.state = ACTIVE
        self.generation = 0  # bumped when the file starts over: older writers must not write
        self.writing = 0  # workers between their generation check and the end of their write
        self.done: list[tuple[int, int]] = []  # written [start, end) ranges, merged, sorted
        self.todo: list[_Range] = []
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
            self._clear()
        else:
            self.etag = meta["etag"]
            if meta.get("version") == 1:  # one stream: the partial's size is what it holds
                held = min(os.fstat(self.fd).st_size, job.size)
                os.ftruncate(self.log_fd, 0)
                if held:
                    os.write(self.log_fd, _LOG_RECORD.pack(0, held))
                self.done = [(0, held)] if held else []
                self.begin(meta.get("url") or job.urls[0], self.etag)
            else:
                self.done = read_ranges(self.log_path, job.size)
        self.todo = [_Range(a, b, self.generation) for a, b in _gaps(self.done, job.size)]
        self.resumed_from = self.held()

    def _clear(self) -> None:
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


def _gaps(done: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    out, at = [], 0
    for start, end in done:
        if start > at:
            out.append((at, start))
        at = max(at, end)
    if at < size or (size == 0 and not done):
        out.append((at, size))
    return out


# What makes a connection for a URL: (connection, request target). transfer.connect is the real
# one (proxies, TLS); a test may hand the engine another (a scripted server, a loopback socket).
Connector = Callable[[str, float], tuple[http.client.HTTPConnection, str]]


class _Connections:
    """One worker's open connections, one per scheme, host and proxy: kept alive between requests."""

    def __init__(self, timeout: float, connector: Connector = connect) -> None:
        self.timeout = timeout
        self.connector = connector
        self.open: dict[tuple[str, str, str, int | None], http.client.HTTPConnection] = {}

    def get(self, url: str) -> tuple[http.client.HTTPConnection, str, bool]:
        """(connection, request target, whether it served a request before) for url."""
        conn, target = self.connector(url, self.timeout)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, conn.host, conn.port)
        kept = self.open.get(key)
        if kept is not None:
            return kept, target, True
        self.open[key] = conn
        return conn, target, False

    def drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        for key, kept in list(self.open.items()):
            if kept is conn:
                del self.open[key]

    def close(self) -> None:
        for conn in self.open.values():
            conn.close()
        self.open.clear()


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
        self.policy = policy
        self.connector = connector
        self.events = events
        self.connections = max(1, connections)
        self.max_files = max(1, max_files)
        self.split_size = max(MIN_SPLIT_SIZE, split_size)  # a steal leaves the piece in flight alone
        self.segment = SEGMENTS * self.split_size  # what one request asks for while a file has free bytes
        self.stop = stop or threading.Event()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)  # idle workers wait here
        self.waiting: deque[_File] = deque(_File(job, self.lock) for job in jobs)
        self.active: list[_File] = []
        self.results: dict[str, FileResult] = {}  # rel_path → result, as files are published
        self.errors: dict[str, ModelctlError] = {}  # rel_path → why the file failed
        self.flows: list[_Flow] = []  # bodies being read, watched for MIN_SPEED by run()
        self.left: set[str] = set()  # endpoints (host:port) a file had to leave: tried last by new files
        self.finished = threading.Event()
        self.threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Fetch every file; return when each is published or failed (see results and errors).

        Ctrl-C (KeyboardInterrupt in this thread) stops the workers at their next piece, keeping
        the partial files and their logs, and goes up.
        """
        if not self.waiting:
            return
        workers = min(self.connections, max(1, sum(1 + f.size // self.split_size for f in self.waiting)))
        for number in range(workers):
            thread = threading.Thread(target=self._worker, name=f"fetch {number}", daemon=True)
            self.threads.append(thread)
            thread.start()
        try:
            while not self.finished.wait(0.2):
                self._cut_slow(time.monotonic())
        except KeyboardInterrupt:
            self.cancel()
            raise
        for thread in self.threads:
            thread.join()

    def _cut_slow(self, now: float) -> None:
        """End every body slower than MIN_SPEED over the last --timeout seconds (its reader retries)."""
        window = self.policy.timeout
        with self.lock:
            flows = list(self.flows)
        for flow in flows:
            if now - flow.since < window:
                continue
            if flow.bytes < MIN_SPEED * window and flow.sock is not None and flow.too_slow is None:
                flow.too_slow = f"too slow: {flow.bytes} bytes in {now - flow.since:.0f} s from {flow.host}"
                with contextlib.suppress(OSError):
                    flow.sock.shutdown(socket.SHUT_RDWR)
            else:
                flow.since, flow.bytes = now, 0

    def cancel(self) -> None:
        """Stop: every worker ends at its next piece; what was written stays for a resume."""
        self.stop.set()
        with self.lock:
            self.cond.notify_all()
            for f in self.active:
                f.cond.notify_all()
        deadline = time.monotonic() + 2.0
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _worker(self) -> None:
        pool = _Connections(self.policy.timeout, self.connector)
        buf = bytearray(PIECE)
        try:
            while (work := self._take()) is not None:
                self._fetch(*work, pool, buf)
        except BaseException as err:  # a bug here must fail the run, not hang it
            log.exception("transfer worker failed")
            with self.lock:
                for f in list(self.active):
                    self._fail(
                        f, DownloadError(f"{f.job.rel_path}: internal error: {describe_error(err, 200)}")
                    )
                self.waiting.clear()
                self._check_finished()
        finally:
            pool.close()

    def _take(self) -> tuple[_File, _Range] | None:
        """The next range to fetch (see the module's docstring for the order), or None: all done."""
        with self.lock:
            while True:
                if self.stop.is_set() or self.finished.is_set():
                    return None
                now = time.monotonic()
                wait = 0.5
                for f in self.active:  # in file order: each file's hashing overlaps the next file's bytes
                    if f.state != ACTIVE:
                        continue
                    if f.not_before > now:
                        wait = min(wait, f.not_before - now)
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
                if not self.active and not self.waiting:
                    self._check_finished()
                    return None
                self.cond.wait(wait)

    def _claim(self, f: _File, r: _Range) -> _Range:
        """Take free range r, or its first segment: the rest stays free, so ranges go out in order
        and the verified prefix (what the hashing thread has read) grows while bytes arrive."""
        if not f.single and r.end - r.start > self.segment + self.split_size:
            rest = _Range(r.start + self.segment, r.end, f.generation)
            r.end = r.start + self.segment
            f.todo.insert(f.todo.index(r) + 1, rest)
        r.taken = True
        return r

    def _steal(self, now: float) -> tuple[_File, _Range] | None:
        best: tuple[int, _File, _Range] | None = None
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
        stolen = _Range(middle, victim.end, f.generation, taken=True)
        victim.end = middle
        f.todo.append(stolen)
        log.debug("%s: split at %d (%d bytes each side)", f.job.rel_path, middle, left // 2)
        return f, stolen

    def _start(self, f: _File) -> None:
        """Open a file for fetching (under the lock) and start its hashing thread."""
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
        threading.Thread(target=self._hash, args=(f,), name=f"hash {job.rel_path}", daemon=True).start()

    def _check_finished(self) -> None:
        if not self.active and not self.waiting:
            self.finished.set()
            self.cond.notify_all()

    # ------------------------------------------------------------------ one range

    def _fetch(self, f: _File, r: _Range, pool: _Connections, buf: bytearray) -> None:
        job = f.job
        try:
            self._request(f, r, pool, buf)
        except _Stale:
            pass
        except Retry as err:
            self._retry_later(f, r.generation, err, r.url_index)
        except ModelctlError as err:
            with self.lock:
                if r.generation == f.generation:
                    self._fail(f, err)
        except _DiskError as err:
            where = f"{job.rel_path}: writing {f.path} at {err.offset} of {job.size} bytes"
            with self.lock:
                self._fail(f, disk_error(err.err, where))
        finally:
            with self.lock:
                r.taken = False
                if r.start >= r.end and r in f.todo:
                    f.todo.remove(r)
                f.cond.notify_all()
                self.cond.notify_all()

    def _request(self, f: _File, r: _Range, pool: _Connections, buf: bytearray) -> None:
        """Ask for [r.start, r.end) (following redirects once per file) and receive it."""
        job = f.job
        fresh = False  # a kept-alive connection the server had closed gets one new connection
        renewed = False  # an expired redirect target is asked for again once per request
        for _ in range(MAX_REDIRECTS + 1):
            with self.lock:
                self._check(f, r)
                if r.start > 0 and f.etag is None:  # nothing to check a resume against: start over
                    self._restart(f, keep=r)
                url = f.resolved or job.urls[f.url_index]
                r.url_index = f.url_index
                resolved = f.resolved is not None
                start, end, etag = r.start, r.end, f.etag
            headers = job.headers(url)
            if job.size > 0:
                headers["range"] = f"bytes={start}-{end - 1}"
                if etag:
                    headers["if-range"] = etag
            conn, target, reused = pool.get(url)
            try:
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as err:
                pool.drop(conn)
                if reused and not fresh:
                    fresh = True
                    continue
                raise Retry(f"request failed: {describe_error(err, 200)}") from None
            status = resp.status
            if status in _REDIRECTS:
                location = resp.getheader("location")
                _drain(pool, conn, resp)
                if not location:
                    raise DownloadError(f"{job.rel_path}: HTTP {status} redirect without a Location.")
                with self.lock:
                    if r.generation == f.generation:
                        f.resolved = urljoin(url, location)
                continue
            if status in (403, 410) and resolved and not renewed:  # a signed URL expired: ask again
                renewed = True
                _drain(pool, conn, resp)
                with self.lock:
                    f.resolved = None
                continue
            with self.lock:
                f.host = host_of(url)
            try:
                self._receive(f, r, resp, url, buf)
            finally:
                if resp.isclosed() and not resp.will_close:
                    pass  # read to its end: the connection serves the next range
                else:
                    resp.close()  # its file object holds the socket open past conn.close()
                    pool.drop(conn)
            return
        raise DownloadError(
            f"{job.rel_path}: more than {MAX_REDIRECTS} redirects from {safe_url(job.urls[0])}."
        )

    def _receive(self, f: _File, r: _Range, resp: http.client.HTTPResponse, url: str, buf: bytearray) -> None:
        job = f.job
        status = resp.status
        if status in RETRYABLE_STATUSES:
            raise Retry(f"HTTP {status}", retry_after(resp.getheader("retry-after")))
        if status == 404:
            raise MissingModelError(
                f"{job.rel_path} was not found at {safe_url(url)} (HTTP 404).",
                hint="The repo changed since it was listed; run the command again.",
            )
        if status == 407:
            raise proxy_refused(url)
        if status in (401, 403):
            raise DownloadError(
                f"{job.rel_path}: access denied by {host_of(url)} (HTTP {status}).",
                hint="Pass --token hf_... (or set HF_TOKEN) with access to this repo.",
                api_hint="Pass token='hf_...' to ModelManager.from_config (or set HF_TOKEN) with access to this repo.",
            )
        if status == 416:  # our range does not fit the file the server has: start over
            with self.lock:
                self._check(f, r)
                self._restart(f, keep=r)
            raise Retry("HTTP 416: range not satisfiable, restarting from zero", 0.0)
        etag = resp.getheader("etag")
        if status == 206:
            first, last, total = content_range(resp.getheader("content-range"))
            if total != job.size:
                raise Retry(
                    f"server says the file is {total} bytes (Content-Range), the Hub listed {job.size}", 0.0
                )
            if first != r.start or last is None or not first <= last < job.size:
                raise Retry(f"server sent bytes {first}-{last} of {total}, not {r.start}-{r.end - 1}", 0.0)
            until = last + 1
            with self.lock:
                self._check(f, r)
                if f.etag is None:
                    # No ETag (some mirrors, plain servers): "" says ranges were seen without one.
                    # No If-Range can guard the stitch then; the hash checked before publishing
                    # does, so the bytes are kept and the file is still split.
                    f.begin(url, etag or "")
                elif (etag or "") != f.etag:  # the file changed: never stitch
                    self._restart(f, keep=r)
                    raise Retry("the file changed on the server (new ETag); fetching again from zero", 0.0)
                if not f.single and not f.rangeable:
                    f.rangeable = True
                    self.cond.notify_all()  # idle workers may split it now
        elif status == 200:
            with self.lock:
                self._check(f, r)
                if f.done or len(f.todo) > 1 or r.start > 0:  # range ignored, or If-Range failed
                    self._restart(f, keep=r)
                f.single, f.rangeable = True, False
                f.begin(url, etag)
            until = job.size
        else:
            raise DownloadError(f"{job.rel_path}: unexpected HTTP {status} from {safe_url(url)}.")

        length = resp.getheader("content-length")
        start = r.start
        if length is not None and length.isdigit() and int(length) != until - start:
            raise Retry(
                f"server announced {start + int(length)} bytes, the Hub listed {job.size}"
                if status == 200
                else f"server announced {length} bytes for bytes {start}-{until - 1}"
            )
        self._body(f, r, resp, until, buf)

    def _body(self, f: _File, r: _Range, resp: http.client.HTTPResponse, until: int, buf: bytearray) -> None:
        """Write the response's bytes at their offsets until the range (which may shrink) ends."""
        raw = getattr(resp.fp, "raw", None)  # the socket under http.client's buffered reader
        flow = _Flow(getattr(raw, "_sock", None), f.host or "", time.monotonic())
        with self.lock:
            self.flows.append(flow)
        try:
            self._read_body(f, r, resp, until, buf, flow)
        finally:
            with self.lock:
                self.flows.remove(flow)

    def _read_body(
        self, f: _File, r: _Range, resp: http.client.HTTPResponse, until: int, buf: bytearray, flow: _Flow
    ) -> None:
        job = f.job
        view = memoryview(buf)
        pos = r.start
        while True:
            # r.end is read without the lock: a thief only moves it down to at least r.start +
            # split_size (see _steal), beyond the one piece this loop reads before writing it.
            stop_at = min(r.end, until)
            if pos >= stop_at:
                break
            if flow.too_slow:  # cut: what arrived is written, the rest is retried
                raise Retry(f"{flow.too_slow} at {pos} of {job.size} bytes")
            try:
                n = resp.readinto(view[: min(PIECE, stop_at - pos)])
            except (OSError, http.client.HTTPException) as err:
                if flow.too_slow:
                    raise Retry(f"{flow.too_slow} at {pos} of {job.size} bytes") from None
                if isinstance(err, (socket.timeout, TimeoutError)):
                    raise Retry(
                        f"stalled: no data for the read timeout at {pos} of {job.size} bytes"
                    ) from None
                raise Retry(
                    f"connection lost at {pos} of {job.size} bytes ({describe_error(err, 200)})"
                ) from None
            if not n:
                if flow.too_slow:
                    raise Retry(f"{flow.too_slow} at {pos} of {job.size} bytes")
                raise Retry(f"connection closed at {pos} of {job.size} bytes")
            flow.bytes += n
            with self.lock:
                self._check(f, r)
                f.writing += 1
            written = False
            try:
                self._write(f, view[:n], pos)
                written = True
            finally:
                with self.lock:
                    f.writing -= 1
                    grew = False
                    if written:
                        before = f.frontier()
                        f.add_done(pos, pos + n)
                        f.received += n
                        r.start = pos + n
                        if r.start >= r.end and r in f.todo:
                            f.todo.remove(r)
                        grew = f.frontier() > before
                    if grew or f.writing == 0:
                        f.cond.notify_all()  # the hashing thread, or a restart waiting for writers
            pos += n
            self.events.file_advance(job, n)
        if pos == until == job.size and resp.length is None and resp.read(1):
            with self.lock:
                self._check(f, r)
                self._restart(f, keep=r)
            raise Retry(f"server sent more than the {job.size} bytes the Hub listed")

    def _write(self, f: _File, data: memoryview, offset: int) -> None:
        """pwrite the piece, then log its span. One writer per file at a time: ext4 takes the
        inode's lock for every buffered write, and 16 threads writing one file spent ~18% of
        the run's CPU spinning on it in the kernel (perf); waiting on a Python lock sleeps."""
        try:
            with f.write_lock:
                written = 0
                while written < len(data):
                    written += os.pwrite(f.fd, data[written:], offset + written)
                os.write(f.log_fd, _LOG_RECORD.pack(offset, offset + len(data)))  # after the bytes
        except OSError as err:
            raise _DiskError(err, offset) from None

    def _check(self, f: _File, r: _Range) -> None:
        """Under the lock: go on only if the range is of the file's generation and the run goes on."""
        if r.generation != f.generation or f.state != ACTIVE or self.stop.is_set():
            raise _Stale

    # ------------------------------------------------------------------ file state (under the lock)

    def _restart(self, f: _File, *, keep: _Range | None = None) -> None:
        """Throw away what is written: the file starts over from byte 0 as one range.

        keep: the caller's range, which becomes that whole range (taken: the caller goes on with
        it); without it the range is free for any worker.
        """
        f.generation += 1
        while f.writing:
            f.cond.wait()
        f.dropped = f.dropped or bool(f.done)
        f._clear()
        if keep is None:
            f.todo = [_Range(0, f.size, f.generation)]
        else:
            keep.start, keep.end, keep.generation = 0, f.size, f.generation
            f.todo = [keep]
        f.rangeable = f.single = False
        f.cond.notify_all()
        self.cond.notify_all()

    def _retry_later(self, f: _File, generation: int, err: Retry, url_index: int = -1) -> None:
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
                self._fail(
                    f,
                    DownloadError(
                        f"{job.rel_path}: {reason}; gave up after {f.failures} attempts "
                        f"({f.held()} of {job.size} bytes kept for the next run).",
                        hint="Run the same command again to resume, or raise --retries / --timeout.",
                        api_hint="Call it again to resume, or raise retries= / timeout= of ModelManager.from_config.",
                    ),
                )
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

    def _fail(self, f: _File, err: ModelctlError) -> None:
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
        self._check_finished()

    # ------------------------------------------------------------------ hashing and publishing

    def _hash(self, f: _File) -> None:
        """Hash the contiguous prefix as it grows; at the end, publish or start over."""
        try:
            self._hash_prefix(f)
        except BaseException as err:  # a bug here must fail the file, not hang the run
            log.exception("hashing %s failed", f.job.rel_path)
            with self.lock:
                self._fail(f, DownloadError(f"{f.job.rel_path}: internal error: {describe_error(err, 200)}"))

    def _hash_prefix(self, f: _File) -> None:
        job = f.job
        view = memoryview(bytearray(PIECE))
        algos = ("sha256",) if job.sha256 is not None else ("sha256", GIT_SHA1)
        generation, hasher, hashed, flushed = -1, Hasher(algos, job.size), 0, 0
        while True:
            with self.lock:
                while True:
                    if f.state != ACTIVE or self.stop.is_set():
                        return
                    if f.generation != generation:
                        generation, hasher, hashed, flushed = f.generation, Hasher(algos, job.size), 0, 0
                    frontier = f.frontier()
                    if frontier > hashed or (hashed == job.size and not f.todo):
                        break
                    f.cond.wait(0.5)
                fd = f.fd
            while hashed < frontier and f.generation == generation:
                try:
                    n = os.preadv(fd, [view[: min(PIECE, frontier - hashed)]], hashed)
                except OSError:
                    n = 0
                if n <= 0:
                    break  # truncated by a restart: the generation says so
                hasher.update(view[:n])
                hashed += n
                if hashed - flushed >= WRITEBACK:
                    start_writeback(fd, flushed, hashed - flushed)
                    flushed = hashed
            if hashed == job.size and f.generation == generation:
                self._finish(f, generation, hasher)

    def _finish(self, f: _File, generation: int, hasher: Hasher) -> None:
        job = f.job
        if job.sha256 is not None:
            actual = hasher.hexdigest("sha256")
            ok, expected, got = actual == job.sha256, f"sha256:{job.sha256}", f"sha256:{actual}"
        else:
            actual = hasher.hexdigest(GIT_SHA1)
            ok, expected, got = actual == job.blob_id, f"git-sha1:{job.blob_id}", f"git-sha1:{actual}"
        with self.lock:
            if generation != f.generation or f.state != ACTIVE or f.todo:
                return
            if not ok:
                f.mismatches += 1
                log.warning("%s: hash mismatch, expected %s, got %s", job.rel_path, expected, got)
                if f.mismatches >= 2:
                    self._fail(
                        f,
                        BadChecksumError(
                            f"{job.rel_path}: the downloaded bytes do not match the Hub's hash twice in a row "
                            f"(expected {expected}, got {got}); nothing was published.",
                            hint="The server or a proxy is corrupting data; try another HF_ENDPOINT or network.",
                        ),
                    )
                    for path in (f.path, f.sidecar, f.log_path):
                        path.unlink(missing_ok=True)
                    return
                self._restart(f)
                attempt = f.failures + f.mismatches
            else:
                f.state = PUBLISHING
        if not ok:
            self.events.file_retry(job, attempt, 0.0, f"hash mismatch (got {got}); fetching again from zero")
            return
        try:
            st = self._publish(f)
        except OSError as err:
            with self.lock:
                f.state = ACTIVE
                self._fail(f, disk_error(err, f"{job.rel_path}: publishing {job.dest}"))
            return
        log.info("published %s: %s verified (%d bytes received)", job.rel_path, expected, f.received)
        kept = 0 if f.dropped else f.resumed_from  # a server that restarted it: a download
        result = FileResult(
            job.rel_path,
            job.size,
            hasher.hexdigest("sha256"),
            f.received,
            kept,
            f.failures + f.mismatches + 1,
            f.host,
            "resume" if kept else "download",
            stat=st,
        )
        self.events.file_done(job, result)  # before the run can be seen finished: its line comes first
        with self.lock:
            f.state = DONE
            self.results[job.rel_path] = result
            self.active.remove(f)
            self._check_finished()
            self.cond.notify_all()

    def _publish(self, f: _File) -> os.stat_result:
        """Make the verified bytes durable, then give them their name; return the inode's stat.

        fsync before the rename: after a power cut a file under its real name must hold the
        verified bytes, not zeros (a later verify trusts an unchanged size+mtime+inode). The
        stat is of the open file that was hashed: the record's check is of these bytes, not of
        whatever the name holds by the time the record is written.
        """
        os.fsync(f.fd)
        st = os.fstat(f.fd)
        f.close()
        os.replace(f.path, f.job.dest)
        f.sidecar.unlink(missing_ok=True)
        f.log_path.unlink(missing_ok=True)
        folder = os.open(f.job.dest.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        return st


def _drain(pool: _Connections, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
    """Read a small answer (a redirect) to its end so the connection can be used again."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        resp.read(64 * 1024)
    if not resp.isclosed() or resp.will_close:
        resp.close()
        pool.drop(conn)


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
