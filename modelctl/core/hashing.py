"""Digests: the algorithms modelctl knows, one hasher for all of them, and hashing a file.

Every digest modelctl computes goes through `Hasher`: while a download streams (transfer.py),
when a file on disk is checked (verify.py, download.py, loader.py) and for `modelctl checksum`.
hashlib is imported when a Hasher is made: the registry parses checksums here, and `modelctl
list` does not hash. `hash_files` hashes many files on every core, piece by piece.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from hashlib import _Hash
    from io import FileIO

# The digests a user may pin (models.yaml `checksums:`, `modelctl checksum --algo`, ModelLoader's
# checksum=), in order of preference, each with the length of its hex digest. Any name that
# hashlib.new knows can be added here.
ALGORITHMS = {"sha256": 64, "sha1": 40, "md5": 32}
# git's blob id: sha1 over "blob <size>\0" + the content. The Hub's id of a file it does not keep
# in LFS, so the only check such a file has.
GIT_SHA1 = "git-sha1"
CHUNK = 1 << 20  # 1 MiB reads: ~1.45 GB/s sha256 here, smaller reads are slower
# hash_files: the bytes a worker hashes before it hands the file back (~4 ms of sha256 here), and
# how many started files may be open at once (longest-left-first would otherwise open them all).
PIECE = 8 << 20
MAX_OPEN = 32

_HEX_RE = re.compile(r"^[0-9a-f]+$")


class Checksum(NamedTuple):
    """A pinned digest from models.yaml, e.g. "sha256:<hex>"."""

    algo: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algo}:{self.hexdigest}"


def parse_checksum(text: str) -> Checksum | None:
    """Parse "algo:hex" (algo one of ALGORITHMS, hex of the right length); None if malformed."""
    algo, sep, hexdigest = text.strip().partition(":")
    algo, hexdigest = algo.lower(), hexdigest.lower()
    if not sep or ALGORITHMS.get(algo) != len(hexdigest) or not _HEX_RE.match(hexdigest):
        return None
    return Checksum(algo, hexdigest)


class Hasher:
    """Several digests of one stream of bytes, fed chunk by chunk: the bytes are read once.

    size: the length of the whole content, needed only by git-sha1 (its header names it).
    """

    def __init__(self, algos: Iterable[str], size: int | None = None) -> None:
        import hashlib

        self._hashes: dict[str, _Hash] = {}
        for algo in algos:
            if algo == GIT_SHA1:
                if size is None:
                    raise ValueError("git-sha1 needs the content's size")
                self._hashes[algo] = hashlib.sha1(b"blob %d\0" % size)
            else:
                self._hashes[algo] = hashlib.new(algo)
        self.length = 0  # bytes fed so far

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        for h in self._hashes.values():
            h.update(chunk)
        self.length += len(chunk)

    def read(self, f: FileIO) -> os.stat_result:
        """Feed an open file from where it is to EOF; return its stat, unchanged while read (`read_stat`).

        1 MiB reads with readinto into one reused buffer, unbuffered: measured fastest here
        (verify's loop): no bytes object per chunk, no copy through io's buffer.
        """
        before = os.fstat(f.fileno())
        view = memoryview(bytearray(CHUNK))
        while n := f.readinto(view):
            self.update(view[:n])
        return read_stat(before, os.fstat(f.fileno()), Path(str(f.name)))

    def hexdigest(self, algo: str) -> str:
        return self._hashes[algo].hexdigest()

    def hexdigests(self) -> dict[str, str]:
        return {algo: h.hexdigest() for algo, h in self._hashes.items()}


class ChangedWhileReadError(OSError):
    """The file's size or mtime changed while it was hashed: its digest describes no one version."""


def read_stat(before: os.stat_result, after: os.stat_result, path: Path) -> os.stat_result:
    """The stat a digest may be recorded under: the open file's own (fstat), unchanged while read.

    A check is recorded by (inode, size, mtime_ns); taking them from a `stat` of the path before
    or after hashing would vouch for whatever inode sits there then (another process may have
    renamed a file into place meanwhile), not for the bytes hashed.
    """
    if (before.st_ino, before.st_size, before.st_mtime_ns) != (
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
    ):
        raise ChangedWhileReadError(errno.EAGAIN, "changed while it was being hashed", str(path))
    return after


def hash_file(path: Path, algos: Iterable[str]) -> tuple[dict[str, str], os.stat_result]:
    """{algo: hex digest} of a file, read once, and the stat of the inode read (`read_stat`).

    OSError if it cannot be read, ChangedWhileReadError if it changed while read.
    """
    algos = tuple(algos)
    with path.open("rb", buffering=0) as f:
        hasher = Hasher(algos, os.fstat(f.fileno()).st_size if GIT_SHA1 in algos else None)
        st = hasher.read(f)
    return hasher.hexdigests(), st


# --------------------------------------------------------------------------- many files, every core


@dataclass(eq=False)
class HashTask:
    """One file for hash_files: its Hasher (fed the whole content, to EOF) and the error, if any.

    size: what the file held when the task was made; it orders the work (the read goes to EOF
    whatever the size is now, as Hasher.read does).
    """

    path: Path
    hasher: Hasher
    size: int
    error: OSError | None = None  # open or read failed; hasher.length bytes were hashed before
    stat: os.stat_result | None = None  # the inode hashed, unchanged while read (read_stat)
    _file: FileIO | None = field(default=None, init=False, repr=False)
    _opened: os.stat_result | None = field(default=None, init=False, repr=False)

    @property
    def bytes_left(self) -> int:
        return max(self.size - self.hasher.length, 0)

    def _hash_piece(self, view: memoryview, piece: int) -> bool:
        """Feed the next `piece` bytes (past the stat's size: on to EOF); True when the file is done."""
        try:
            if self._file is None:
                self._file = self.path.open("rb", buffering=0)
                self._opened = os.fstat(self._file.fileno())
            budget = piece
            while n := self._file.readinto(view):
                self.hasher.update(view[:n])
                budget -= n
                if budget <= 0 and self.hasher.length < self.size:
                    return False  # more to come: another worker may take the next piece
            assert self._opened is not None
            self.stat = read_stat(self._opened, os.fstat(self._file.fileno()), self.path)
            return True
        except OSError as err:
            self.error = err
            return True

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Schedule:
    """Which file each worker hashes next: the one with the most bytes left that nobody holds.

    A file is held by at most one worker at a time (it is in neither queue while held), so its
    hash objects are fed in order; they move between threads only through this lock.
    """

    def __init__(self, tasks: Sequence[HashTask], max_open: int) -> None:
        self._lock = threading.Lock()
        self._new = sorted(tasks, key=lambda t: t.size)  # not opened yet; the biggest is popped
        self._ready: list[tuple[int, int, HashTask]] = []  # heap of (-bytes left, n, task): opened, free
        self._count = 0  # heap tie-break: tasks never compare
        self._open = 0
        self._max_open = max_open
        self.is_stopped = False

    def take(self) -> HashTask | None:
        """The next file to hash a piece of; None when every file left is held by another worker."""
        import heapq

        with self._lock:
            if self.is_stopped:
                return None
            left = -self._ready[0][0] if self._ready else -1
            if self._new and self._open < self._max_open and self._new[-1].size > left:
                self._open += 1
                return self._new.pop()
            return heapq.heappop(self._ready)[2] if self._ready else None

    def give_back(self, task: HashTask, is_finished: bool) -> None:
        import heapq

        if is_finished:
            task._close()
        with self._lock:
            if is_finished:
                self._open -= 1
            else:
                self._count += 1
                heapq.heappush(self._ready, (-task.bytes_left, self._count, task))

    def work(self, piece: int) -> None:
        """One worker: hash pieces until no free file is left (held ones stay with their holder)."""
        view = memoryview(bytearray(min(CHUNK, piece)))  # reused: no bytes object per read
        while (task := self.take()) is not None:
            is_finished = True
            try:
                is_finished = task._hash_piece(view, piece)
            finally:
                self.give_back(task, is_finished)


def hash_files(tasks: Sequence[HashTask], workers: int | None = None, *, piece: int = PIECE) -> int:
    """Hash every task's file on `workers` threads (default: one per core); return the bytes read.

    sha256 is sequential within a file, but its state can move to another thread between pieces:
    each worker takes the file with the most bytes left that no other worker holds, hashes its
    next `piece` bytes and hands it back. So every core stays busy to the end (3 equal files on 2
    cores take the time of 1.5 files, not 2). Threads suffice: reads and hashlib's updates of
    more than 2 KiB release the GIL. An OSError is kept in its task's `error`, never raised.
    """
    from concurrent.futures import ThreadPoolExecutor

    if piece < 1:
        raise ValueError("piece must be at least 1 byte")
    count = min(workers or os.cpu_count() or 2, len(tasks))
    schedule = _Schedule(tasks, max(MAX_OPEN, 2 * count))
    try:
        if count == 1:
            schedule.work(piece)
        elif count > 1:
            with ThreadPoolExecutor(count, thread_name_prefix="modelctl-hash") as pool:
                futures = [pool.submit(schedule.work, piece) for _ in range(count)]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    schedule.is_stopped = True  # e.g. Ctrl-C: workers stop after their piece
                    raise
    finally:
        for task in tasks:
            task._close()  # only after a failure: a finished file is closed by give_back
    return sum(task.hasher.length for task in tasks)
