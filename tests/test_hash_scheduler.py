"""hashing.hash_files: pieces of files handed between threads give each file's own digests."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from modelctl.core.hashing import (
    CHUNK,
    GIT_SHA1,
    MAX_OPEN,
    PIECE,
    ChangedWhileReadError,
    Hasher,
    HashTask,
    hash_files,
)


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def put(folder: Path, sizes: Iterable[int], seed: int = 0) -> dict[Path, bytes]:
    rng = random.Random(seed)
    files = {}
    for i, size in enumerate(sizes):
        path = folder / f"f{i:03d}-{size}.bin"
        files[path] = rng.randbytes(size)
        path.write_bytes(files[path])
    return files


def tasks_for(files: dict[Path, bytes], algos: tuple[str, ...] = ("sha256", GIT_SHA1)) -> list[HashTask]:
    return [HashTask(path, Hasher(algos, len(data)), len(data)) for path, data in files.items()]


SMALL = (0, 1, 2, 3, 7, 8, 9, 100, 4095, 4096, 4097, 3 * 4096 + 5, 20_000, 65_537)


@pytest.mark.parametrize(
    ("workers", "piece", "sizes"),
    [
        (1, PIECE, (0, 5, CHUNK - 1, CHUNK, CHUNK + 1, PIECE, PIECE + 1, 2 * PIECE + CHUNK + 3)),
        (2, PIECE, (0, 5, CHUNK - 1, CHUNK, CHUNK + 1, PIECE, PIECE + 1, 2 * PIECE + CHUNK + 3)),
        (3, 4096, SMALL),
        (8, 7, SMALL[:10]),  # tiny pieces: thousands of hand-overs between 8 threads
        (16, 1000, (3 * CHUNK + 17, 2 * CHUNK, 1, 0)),  # a piece smaller than a read
    ],
)
def test_digests_equal_hashlib_of_whole_file(
    tmp_path: Path, workers: int, piece: int, sizes: tuple[int, ...]
) -> None:
    files = put(tmp_path, sizes)
    tasks = tasks_for(files)
    assert hash_files(tasks, workers, piece=piece) == sum(sizes)
    for task in tasks:
        data = files[task.path]
        assert task.error is None
        assert task.hasher.length == len(data)
        assert task.hasher.hexdigests() == {
            "sha256": hashlib.sha256(data).hexdigest(),
            GIT_SHA1: git_sha1(data),
        }


class ExclusiveHasher(Hasher):
    """A Hasher that records an update entered while another is still running on it."""

    def __init__(self, algos: Iterable[str], size: int | None = None) -> None:
        super().__init__(algos, size)
        self.busy = threading.Lock()
        self.overlaps = 0
        self.threads: set[int] = set()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            super().update(chunk)
            return
        try:
            self.threads.add(threading.get_ident())
            time.sleep(0.0001)  # let the other workers run while this one holds the file
            super().update(chunk)
        finally:
            self.busy.release()


def test_no_two_workers_hash_one_file_at_once(tmp_path: Path) -> None:
    files = put(tmp_path, (3000, 2999, 2500, 1777, 1500, 64))
    tasks = [HashTask(p, ExclusiveHasher(["sha256"]), len(d)) for p, d in files.items()]
    hash_files(tasks, 4, piece=13)  # fewer workers than files: a file returned goes to another
    hashers = [t.hasher for t in tasks if isinstance(t.hasher, ExclusiveHasher)]
    assert [h.overlaps for h in hashers] == [0] * len(files)
    assert [t.hasher.hexdigest("sha256") for t in tasks] == [
        hashlib.sha256(d).hexdigest() for d in files.values()
    ]
    # The files did move between threads (else the test above proves nothing).
    assert max(len(h.threads) for h in hashers) > 1


class LoggingHasher(Hasher):
    """A Hasher that logs (name, bytes hashed before) of each update into a shared list."""

    def __init__(self, name: str, log: list[tuple[str, int]], size: int) -> None:
        super().__init__(["sha256"], size)
        self.name, self.log = name, log

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self.log.append((self.name, self.length))
        super().update(chunk)


def test_each_piece_goes_to_the_file_with_most_bytes_left(tmp_path: Path) -> None:
    sizes = {"a": 10_000, "b": 34_000, "c": 21_500, "d": 0, "e": 999}
    log: list[tuple[str, int]] = []
    tasks = []
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
        tasks.append(HashTask(tmp_path / name, LoggingHasher(name, log, size), size))
    hash_files(tasks, 1, piece=1000)  # one worker: no file is held by another, so always the maximum
    left = dict(sizes)
    for name, done in log:
        assert done == sizes[name] - left[name]
        assert left[name] == max(left.values()), (name, left)
        left[name] = max(left[name] - 1000, 0)
    assert left == dict.fromkeys(sizes, 0) and len(log) == sum(-(-s // 1000) for s in sizes.values())


class ChangingHasher(Hasher):
    """A Hasher that runs `change` once, after its first update: the file changes while hashed."""

    def __init__(self, size: int, change: object) -> None:
        super().__init__(["sha256", GIT_SHA1], size)
        self.change = change

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        super().update(chunk)
        if callable(self.change):
            self.change()
            self.change = None


def test_a_file_that_shrinks_or_grows_mid_way_is_hashed_to_its_end(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(10_000)
    shrinks, grows, other = tmp_path / "shrinks", tmp_path / "grows", tmp_path / "other"
    for path in (shrinks, grows, other):
        path.write_bytes(data)

    def shrink() -> None:
        os.truncate(shrinks, 3000)

    def grow() -> None:
        with grows.open("ab") as f:
            f.write(b"more" * 1000)

    tasks = [
        HashTask(shrinks, ChangingHasher(10_000, shrink), 10_000),
        HashTask(grows, ChangingHasher(10_000, grow), 10_000),
        HashTask(other, Hasher(["sha256"]), 10_000),
    ]
    assert hash_files(tasks, 2, piece=1000) == 3000 + 14_000 + 10_000
    # As Hasher.read: every byte up to EOF, whatever the size was; git-sha1 keeps the stat's size.
    assert tasks[0].hasher.hexdigest("sha256") == hashlib.sha256(data[:3000]).hexdigest()
    assert tasks[1].hasher.hexdigest("sha256") == hashlib.sha256(data + b"more" * 1000).hexdigest()
    header = b"blob 10000\0"
    assert tasks[1].hasher.hexdigest(GIT_SHA1) == hashlib.sha1(header + data + b"more" * 1000).hexdigest()
    assert tasks[2].hasher.hexdigest("sha256") == hashlib.sha256(data).hexdigest()
    # Such a digest describes no one version of the file: the task says so, and has no stat to
    # record a check under.
    assert [type(t.error) for t in tasks] == [ChangedWhileReadError, ChangedWhileReadError, type(None)]
    assert [t.stat is None for t in tasks] == [True, True, False]
    assert tasks[2].stat is not None and tasks[2].stat.st_ino == other.stat().st_ino


def test_unreadable_files_keep_their_error_and_the_others_are_hashed(tmp_path: Path) -> None:
    files = put(tmp_path, (50_000, 40_000, 30_000, 20_000))
    big, vanishes, gone, small = files
    gone.unlink()  # gone before hashing starts
    folder = tmp_path / "a-folder"
    folder.mkdir()

    def remove() -> None:
        vanishes.unlink()  # gone mid-run, before its first piece: longest first hashes `big` first

    tasks = [
        HashTask(big, ChangingHasher(50_000, remove), 50_000),
        HashTask(vanishes, Hasher(["sha256"]), 40_000),
        HashTask(gone, Hasher(["sha256"]), 30_000),
        HashTask(small, Hasher(["sha256"]), 20_000),
        HashTask(folder, Hasher(["sha256"]), 4096),
    ]
    assert hash_files(tasks, 1, piece=4096) == 50_000 + 20_000
    assert [t.error.errno if t.error else None for t in tasks] == [
        None,
        errno.ENOENT,
        errno.ENOENT,
        None,
        errno.EISDIR,
    ]
    assert tasks[1].error is not None and tasks[1].error.strerror == "No such file or directory"
    assert tasks[0].hasher.hexdigest("sha256") == hashlib.sha256(files[big]).hexdigest()
    assert tasks[3].hasher.hexdigest("sha256") == hashlib.sha256(files[small]).hexdigest()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_open_files_stay_bounded_with_many_started_files(tmp_path: Path) -> None:
    import resource

    files = put(tmp_path, [3000] * 150)  # longest-left-first alone would start (open) all 150
    tasks = tasks_for(files, ("sha256",))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # New files get the lowest free numbers: leave MAX_OPEN + 8 of them below the limit.
    used, free, limit = {int(fd) for fd in os.listdir("/proc/self/fd")}, 0, 0
    while free < MAX_OPEN + 8:
        free += limit not in used
        limit += 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        hash_files(tasks, 4, piece=1000)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [t.error for t in tasks] == [None] * len(tasks)
    assert [t.hasher.hexdigest("sha256") for t in tasks] == [
        hashlib.sha256(d).hexdigest() for d in files.values()
    ]
