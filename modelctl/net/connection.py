"""A connection's loop: take a range, request it, write what arrives at its offset, give it back.

A range is requested with Range and If-Range (the file's ETag) and written in place into the
partial file; after each piece's write its (start, end) is appended to the partial's range log,
so a rerun after kill -9 or Ctrl-C fetches only what is missing, plus at most the piece each
connection was writing. Each worker keeps its connections alive per host.

Nothing is stitched from two versions of a file: every range after the first carries If-Range,
a 206 whose ETag differs restarts the file from zero, and a 200 (a server that ignores Range, as
olah's offline mirror does, or an If-Range that failed) makes the file one stream from byte 0.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from modelctl.core.errors import (
    DownloadError,
    MissingModelError,
    ModelctlError,
    describe_error,
    disk_error,
    option,
)
from modelctl.core.retry import MIN_SPEED, Retry, retry_for_status
from modelctl.net.pace import Pacer
from modelctl.net.partial import PIECE, DiskError, PartialFile, Range, Stale
from modelctl.net.schedule import Schedule
from modelctl.net.transfer import (
    MAX_REDIRECTS,
    FileJob,
    connect,
    content_range,
    host_of,
    proxy_refused,
    safe_url,
)

REDIRECTS = (301, 302, 303, 307, 308)
FIRST_BYTE = 4  # a response's head may take this many read timeouts (a mirror filling its cache)

log = logging.getLogger(__name__)

# What makes a connection for a URL: (connection, request target). transfer.connect is the real
# one (proxies, TLS); a test may hand the engine another (a scripted server, a loopback socket).
Connector = Callable[[str, float], tuple[http.client.HTTPConnection, str]]


class Connections:
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
        """Close conn and forget it: the next request to its host opens a new one."""
        conn.close()
        for key, kept in list(self.open.items()):
            if kept is conn:
                del self.open[key]

    def close(self) -> None:
        """Close every connection (the worker ends)."""
        for conn in self.open.values():
            conn.close()
        self.open.clear()

    def drain(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        """Read a small answer (a redirect) to its end so the connection can be used again."""
        with contextlib.suppress(OSError, http.client.HTTPException):
            resp.read(64 * 1024)
        if not resp.isclosed() or resp.will_close:
            resp.close()
            self.drop(conn)


class Flow:
    """A response body being read: its socket, and the bytes read since the window began."""

    __slots__ = ("bytes", "host", "since", "sock", "too_slow")

    def __init__(self, sock: socket.socket | None, host: str, now: float) -> None:
        self.sock = sock
        self.host = host
        self.since = now
        self.bytes = 0
        self.too_slow: str | None = None  # why it was cut


class Flows:
    """The bodies being read by every worker, watched for the minimum speed (core/retry.py)."""

    def __init__(self, window: float) -> None:
        self.window = window  # --timeout: a body slower than MIN_SPEED over it is cut
        self.lock = threading.Lock()
        self.reading: list[Flow] = []
        self.received = 0  # bytes read by every worker: what the pacer measures (pace.py)

    def cut_slow(self, now: float) -> None:
        """End every body slower than MIN_SPEED over the last window (its reader retries)."""
        with self.lock:
            flows = list(self.reading)
        for flow in flows:
            if now - flow.since < self.window:
                continue
            if flow.bytes < MIN_SPEED * self.window and flow.sock is not None and flow.too_slow is None:
                flow.too_slow = f"too slow: {flow.bytes} bytes in {now - flow.since:.0f} s from {flow.host}"
                with contextlib.suppress(OSError):
                    flow.sock.shutdown(socket.SHUT_RDWR)
            else:
                flow.since, flow.bytes = now, 0


class Worker:
    """One connection's loop over the schedule's ranges, until the run is done or stopped, or the
    run keeps fewer connections (`leave`, asked between ranges: never mid-body)."""

    def __init__(
        self, schedule: Schedule, flows: Flows, connector: Connector, pacer: Pacer, leave: Callable[[], bool]
    ) -> None:
        self.schedule = schedule
        self.flows = flows
        self.pacer = pacer
        self.leave = leave
        self.pool = Connections(schedule.policy.timeout, connector)
        self.buf = memoryview(bytearray(PIECE))

    def run(self) -> None:
        """Fetch ranges until there are none; a bug fails the run's files instead of hanging it."""
        try:
            while not self.leave() and (work := self.schedule.take()) is not None:
                self.fetch(*work)
        except BaseException as err:  # a bug here must fail the run, not hang it
            log.exception("transfer worker failed")
            with self.schedule.lock:
                self.schedule.fail_all(describe_error(err, 200))
        finally:
            self.pool.close()

    def fetch(self, f: PartialFile, r: Range) -> None:
        """Fetch range r of f; a failure backs the file off or fails it (schedule.py)."""
        schedule = self.schedule
        try:
            self._request(f, r)
        except Stale:
            pass
        except Retry as err:
            if err.is_busy:
                self.pacer.busy()
            schedule.retry_later(f, r.generation, err, r.url_index)
        except ModelctlError as err:
            with schedule.lock:
                if r.generation == f.generation:
                    schedule.fail(f, err)
        except DiskError as err:
            where = f"{f.job.rel_path}: writing {f.path} at {err.offset} of {f.size} bytes"
            with schedule.lock:
                schedule.fail(f, disk_error(err.err, where))
        finally:
            schedule.give_back(f, r)

    def _request(self, f: PartialFile, r: Range) -> None:
        """Ask for [r.start, r.end) (following redirects once per file) and receive it."""
        job, schedule = f.job, self.schedule
        fresh = False  # a kept-alive connection the server had closed gets one new connection
        renewed = False  # an expired redirect target is asked for again once per request
        for _ in range(MAX_REDIRECTS + 1):
            with schedule.lock:
                schedule.check(f, r)
                if r.start > 0 and f.etag is None:  # nothing to check a resume against: start over
                    schedule.restart(f, keep=r)
                url = f.resolved or job.urls[f.url_index]
                r.url_index = f.url_index
                resolved = f.resolved is not None
                start, end, etag = r.start, r.end, f.etag
            headers = _range_headers(job, url, start, end, etag)
            conn, target, reused = self.pool.get(url)
            try:
                conn.request("GET", target, headers=headers)
                resp = _first_byte(conn, self.pool.timeout)
            except (OSError, http.client.HTTPException) as err:
                self.pool.drop(conn)
                if reused and not fresh:
                    fresh = True
                    continue
                raise Retry(f"request failed: {describe_error(err, 200)}", is_busy=True) from None
            status = resp.status
            if status in REDIRECTS:
                location = resp.getheader("location")
                self.pool.drain(conn, resp)
                if not location:
                    raise DownloadError(f"{job.rel_path}: HTTP {status} redirect without a Location.")
                with schedule.lock:
                    if r.generation == f.generation:
                        f.resolved = urljoin(url, location)
                continue
            if status in (403, 410) and resolved and not renewed:  # a signed URL expired: ask again
                renewed = True
                self.pool.drain(conn, resp)
                with schedule.lock:
                    f.resolved = None
                continue
            self._receive_on(conn, f, r, resp, url)
            return
        raise DownloadError(
            f"{job.rel_path}: more than {MAX_REDIRECTS} redirects from {safe_url(job.urls[0])}."
        )

    def _receive_on(
        self,
        conn: http.client.HTTPConnection,
        f: PartialFile,
        r: Range,
        resp: http.client.HTTPResponse,
        url: str,
    ) -> None:
        with self.schedule.lock:
            f.host = host_of(url)
        try:
            self._receive(f, r, resp, url)
        finally:
            if resp.isclosed() and not resp.will_close:
                pass  # read to its end: the connection serves the next range
            else:
                resp.close()  # its file object holds the socket open past conn.close()
                self.pool.drop(conn)

    def _receive(self, f: PartialFile, r: Range, resp: http.client.HTTPResponse, url: str) -> None:
        job, status = f.job, resp.status
        _refuse(f, r, resp, url, self.schedule)
        etag = resp.getheader("etag")
        if status == 206:
            until = self._accept_range(f, r, resp, url, etag)
        elif status == 200:
            with self.schedule.lock:
                self.schedule.check(f, r)
                if f.done or len(f.todo) > 1 or r.start > 0:  # range ignored, or If-Range failed
                    self.schedule.restart(f, keep=r)
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
        self._body(f, r, resp, until)

    def _accept_range(
        self, f: PartialFile, r: Range, resp: http.client.HTTPResponse, url: str, etag: str | None
    ) -> int:
        """A 206: check it is the range asked for, of the same file; return where it ends."""
        job, schedule = f.job, self.schedule
        first, last, total = content_range(resp.getheader("content-range"))
        if total != job.size:
            raise Retry(
                f"server says the file is {total} bytes (Content-Range), the Hub listed {job.size}", 0.0
            )
        if first != r.start or last is None or not first <= last < job.size:
            raise Retry(f"server sent bytes {first}-{last} of {total}, not {r.start}-{r.end - 1}", 0.0)
        with schedule.lock:
            schedule.check(f, r)
            if f.etag is None:
                # No ETag (some mirrors, plain servers): "" says ranges were seen without one.
                # No If-Range can guard the stitch then; the hash checked before publishing
                # does, so the bytes are kept and the file is still split.
                f.begin(url, etag or "")
            elif (etag or "") != f.etag:  # the file changed: never stitch
                schedule.restart(f, keep=r)
                raise Retry("the file changed on the server (new ETag); fetching again from zero", 0.0)
            if not f.single and not f.rangeable:
                f.rangeable = True
                schedule.cond.notify_all()  # idle workers may split it now
        return last + 1

    def _body(self, f: PartialFile, r: Range, resp: http.client.HTTPResponse, until: int) -> None:
        """Write the response's bytes at their offsets until the range (which may shrink) ends."""
        raw = getattr(resp.fp, "raw", None)  # the socket under http.client's buffered reader
        flow = Flow(getattr(raw, "_sock", None), f.host or "", time.monotonic())
        with self.flows.lock:
            self.flows.reading.append(flow)
        try:
            self._read_body(f, r, resp, until, flow)
        finally:
            with self.flows.lock:
                self.flows.reading.remove(flow)

    def _read_body(
        self, f: PartialFile, r: Range, resp: http.client.HTTPResponse, until: int, flow: Flow
    ) -> None:
        job, view = f.job, self.buf
        pos = r.start
        while True:
            # r.end is read without the lock: a thief only moves it down to at least r.start +
            # split_size (see Schedule._steal), beyond the one piece this loop reads before writing it.
            stop_at = min(r.end, until)
            if pos >= stop_at:
                break
            if flow.too_slow:  # cut: what arrived is written, the rest is retried
                raise Retry(f"{flow.too_slow} at {pos} of {job.size} bytes")
            try:
                n = resp.readinto(view[: min(PIECE, stop_at - pos)])
            except (OSError, http.client.HTTPException) as err:
                raise _lost(flow, err, pos, job.size) from None
            if not n:
                if flow.too_slow:
                    raise Retry(f"{flow.too_slow} at {pos} of {job.size} bytes")
                raise Retry(f"connection closed at {pos} of {job.size} bytes")
            flow.bytes += n
            self.flows.received += n  # unlocked: a lost update only blurs the pacer's estimate
            self._write(f, r, view[:n], pos)
            pos += n
            self.schedule.events.file_advance(job, n)
        if pos == until == job.size and resp.length is None and resp.read(1):
            with self.schedule.lock:
                self.schedule.check(f, r)
                self.schedule.restart(f, keep=r)
            raise Retry(f"server sent more than the {job.size} bytes the Hub listed")

    def _write(self, f: PartialFile, r: Range, data: memoryview, pos: int) -> None:
        """Write one piece at pos unless the file started over meanwhile; advance the range."""
        schedule = self.schedule
        with schedule.lock:
            schedule.check(f, r)
            f.writing += 1
        written = False
        try:
            f.write(data, pos)
            written = True
        finally:
            with schedule.lock:
                f.writing -= 1
                grew = False
                if written:
                    before = f.frontier()
                    f.add_done(pos, pos + len(data))
                    f.received += len(data)
                    r.start = pos + len(data)
                    if r.start >= r.end and r in f.todo:
                        f.todo.remove(r)
                    grew = f.frontier() > before
                if grew or f.writing == 0:
                    f.cond.notify_all()  # the hashing thread, or a restart waiting for writers


def _first_byte(conn: http.client.HTTPConnection, timeout: float) -> http.client.HTTPResponse:
    """The response's head, waited for FIRST_BYTE times the read timeout: a mirror that fills its
    cache from the origin before it answers is busy, not dead. Once bytes flow, the body's reads
    have the plain timeout (and the minimum speed: Flows)."""
    sock = conn.sock
    if sock is not None:
        sock.settimeout(timeout * FIRST_BYTE)
    resp = conn.getresponse()
    if sock is not None:
        sock.settimeout(timeout)
    return resp


def _range_headers(job: FileJob, url: str, start: int, end: int, etag: str | None) -> dict[str, str]:
    """The job's headers for url, with Range for [start, end) and If-Range for the file's ETag."""
    headers = job.headers(url)
    if job.size > 0:
        headers["range"] = f"bytes={start}-{end - 1}"
        if etag:
            headers["if-range"] = etag
    return headers


def _refuse(f: PartialFile, r: Range, resp: http.client.HTTPResponse, url: str, schedule: Schedule) -> None:
    """Raise for an answer that carries no bytes of the file: retry, start over, or fail."""
    job, status = f.job, resp.status
    if (again := retry_for_status(status, resp.getheader("retry-after"))) is not None:
        raise again
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
            hint="Pass {0} (or set HF_TOKEN) with access to this repo.",
            steps=(option("token", "hf_..."),),
            api_hint="Pass token='hf_...' to ModelManager.from_config (or set HF_TOKEN) with access to this repo.",
        )
    if status == 416:  # our range does not fit the file the server has: start over
        with schedule.lock:
            schedule.check(f, r)
            schedule.restart(f, keep=r)
        raise Retry("HTTP 416: range not satisfiable, restarting from zero", 0.0)


def _lost(flow: Flow, err: BaseException, pos: int, size: int) -> Retry:
    """Why a body read failed: cut for being slow, a read timeout, or a lost connection."""
    if flow.too_slow:
        return Retry(f"{flow.too_slow} at {pos} of {size} bytes")
    if isinstance(err, (socket.timeout, TimeoutError)):
        return Retry(f"stalled: no data for the read timeout at {pos} of {size} bytes", is_busy=True)
    return Retry(f"connection lost at {pos} of {size} bytes ({describe_error(err, 200)})")
