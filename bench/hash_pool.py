"""Parallel file hashing in one process: a thread or a process per file vs pieces handed between
threads (hashing.hash_files, what verify does). Run after bench/verify, which makes the data; the
default folder is its "equal" shape (3 equal files: per-file pools end with one core idle).

.venv-bench/bin/python bench/hash_pool.py [FOLDER]
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from modelctl.core.hashing import Hasher, HashTask, hash_files


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


def sha256_pieces(files: list[str]) -> list[str]:
    tasks = [HashTask(Path(f), Hasher(["sha256"]), os.path.getsize(f)) for f in files]
    hash_files(tasks)
    return [task.hasher.hexdigest("sha256") for task in tasks]


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/modelctl-bench-verify/equal/model")
    files = sorted((str(p) for p in folder.iterdir() if p.is_file()), key=os.path.getsize, reverse=True)
    total = sum(os.path.getsize(f) for f in files)
    expected = [sha256_file(f) for f in files]  # also warms the page cache
    pools: dict[str, type[Executor] | None] = {
        "one core": None,
        "a thread per file": ThreadPoolExecutor,
        "a process per file": ProcessPoolExecutor,
        "pieces between threads (hash_files)": None,
    }
    samples: dict[str, list[float]] = {name: [] for name in pools}
    for _ in range(5):
        for name, pool in pools.items():
            start = time.perf_counter()
            if name == "one core":
                digests = [sha256_file(f) for f in files]
            elif pool is None:
                digests = sha256_pieces(files)
            else:
                with pool(max_workers=os.cpu_count()) as executor:
                    digests = list(executor.map(sha256_file, files))
            samples[name].append(time.perf_counter() - start)
            assert digests == expected, name
    print(
        f"{total / 1e9:.2f} GB in {len(files)} files, page cache warm, 5 interleaved rounds, "
        f"{os.cpu_count()} cores\n\n| pool | median s | GB/s | speed-up over one core |\n|---|---:|---:|---:|"
    )
    one = statistics.median(samples["one core"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {total / median / 1e9:.2f} | {one / median:.2f}x |")


if __name__ == "__main__":
    main()
