"""A file's hashing thread: hash the written prefix as it grows, then publish the file or start over.

The prefix is read back from the page cache (no second read from disk) while later ranges still
arrive, and the file is published (fsync, rename, the folder's fsync) only when its sha256, or
git blob sha1, matches what the Hub listed. A mismatch starts the file over once; a second one
fails it and removes its partial (a server or proxy that corrupts data).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from modelctl.core.errors import BadChecksumError, DownloadError, describe_error, disk_error
from modelctl.core.hashing import GIT_SHA1, Hasher
from modelctl.core.record import FileResult
from modelctl.net.partial import ACTIVE, PIECE, PUBLISHING, PartialFile
from modelctl.net.schedule import Schedule
from modelctl.net.transfer import start_writeback

WRITEBACK = 32 << 20  # ask the kernel to start writing every 32 MiB of verified prefix

log = logging.getLogger(__name__)


def start_hashing(schedule: Schedule, f: PartialFile) -> None:
    """Start f's hashing thread (a daemon: Ctrl-C never waits for it)."""
    name = f"hash {f.job.rel_path}"
    threading.Thread(target=_hash, args=(schedule, f), name=name, daemon=True).start()


def _hash(schedule: Schedule, f: PartialFile) -> None:
    """Hash the contiguous prefix as it grows; at the end, publish or start over."""
    try:
        _hash_prefix(schedule, f)
    except BaseException as err:  # a bug here must fail the file, not hang the run
        log.exception("hashing %s failed", f.job.rel_path)
        with schedule.lock:
            schedule.fail(f, DownloadError(f"{f.job.rel_path}: internal error: {describe_error(err, 200)}"))


def _hash_prefix(schedule: Schedule, f: PartialFile) -> None:
    job = f.job
    view = memoryview(bytearray(PIECE))
    algos = ("sha256",) if job.sha256 is not None else ("sha256", GIT_SHA1)
    generation, hasher, hashed, flushed = -1, Hasher(algos, job.size), 0, 0
    while True:
        with schedule.lock:
            while True:
                if f.state != ACTIVE or schedule.stop.is_set():
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
            _finish(schedule, f, generation, hasher)


def _finish(schedule: Schedule, f: PartialFile, generation: int, hasher: Hasher) -> None:
    job = f.job
    if job.sha256 is not None:
        actual = hasher.hexdigest("sha256")
        ok, expected, got = actual == job.sha256, f"sha256:{job.sha256}", f"sha256:{actual}"
    else:
        actual = hasher.hexdigest(GIT_SHA1)
        ok, expected, got = actual == job.blob_id, f"git-sha1:{job.blob_id}", f"git-sha1:{actual}"
    with schedule.lock:
        if generation != f.generation or f.state != ACTIVE or f.todo:
            return
        if not ok:
            attempt = _mismatch(schedule, f, expected, got)
        else:
            f.state = PUBLISHING
    if not ok:
        if attempt is not None:
            schedule.events.file_retry(
                job, attempt, 0.0, f"hash mismatch (got {got}); fetching again from zero"
            )
        return
    try:
        st = _publish(f)
    except OSError as err:
        with schedule.lock:
            f.state = ACTIVE
            schedule.fail(f, disk_error(err, f"{job.rel_path}: publishing {job.dest}"))
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
    schedule.events.file_done(job, result)  # before the run can be seen finished: its line comes first
    schedule.published(f, result)


def _mismatch(schedule: Schedule, f: PartialFile, expected: str, got: str) -> int | None:
    """Under the lock: the bytes hash wrong. Start over once (the attempt's number); fail the
    second time, removing the partial (None)."""
    job = f.job
    f.mismatches += 1
    log.warning("%s: hash mismatch, expected %s, got %s", job.rel_path, expected, got)
    if f.mismatches >= 2:
        schedule.fail(
            f,
            BadChecksumError(
                f"{job.rel_path}: the downloaded bytes do not match the Hub's hash twice in a row "
                f"(expected {expected}, got {got}); nothing was published.",
                hint="The server or a proxy is corrupting data; try another HF_ENDPOINT or network.",
            ),
        )
        for path in (f.path, f.sidecar, f.log_path):
            path.unlink(missing_ok=True)
        return None
    schedule.restart(f)
    return f.failures + f.mismatches


def _publish(f: PartialFile) -> os.stat_result:
    """Make the verified bytes durable, then give them their name; return the inode's stat.

    fsync before the rename: after a power cut a file under its real name must hold the
    verified bytes, not zeros (a later verify trusts an unchanged size+mtime+inode). The
    stat is of the open file that was hashed: the record's check is of these bytes, not of
    whatever the name holds by the time the record is written. The folder's fsync, which
    makes the rename itself durable, is sync_folders', once per folder at the end of the run
    and before any record names the file: 400 small files paid 400 of them.
    """
    os.fsync(f.fd)
    st = os.fstat(f.fd)
    f.close()
    os.replace(f.path, f.job.dest)
    f.sidecar.unlink(missing_ok=True)
    f.log_path.unlink(missing_ok=True)
    return st


def sync_folders(folders: Iterable[Path]) -> None:
    """fsync each folder once: the renames of the files published into it are durable."""
    for path in folders:
        try:
            folder = os.open(path, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as err:
            raise disk_error(err, f"{path}: making its published files durable") from None
