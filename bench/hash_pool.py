"""Threads vs processes for parallel file hashing (run after bench/verify, which makes the data).

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


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            digest.update(view[:n])
    return digest.hexdigest()


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/modelctl-bench-verify/model")
    files = sorted((str(p) for p in folder.iterdir() if p.is_file()), key=os.path.getsize, reverse=True)
    total = sum(os.path.getsize(f) for f in files)
    for f in files:  # warm the page cache
        sha256_file(f)
    pools: dict[str, type[Executor] | None] = {
        "one core": None,
        "threads": ThreadPoolExecutor,
        "processes": ProcessPoolExecutor,
    }
    samples: dict[str, list[float]] = {name: [] for name in pools}
    for _ in range(5):
        for name, pool in pools.items():
            start = time.perf_counter()
            if pool is None:
                [sha256_file(f) for f in files]
            else:
                with pool(max_workers=os.cpu_count()) as executor:
                    list(executor.map(sha256_file, files))
            samples[name].append(time.perf_counter() - start)
    print(
        f"{total / 1e9:.2f} GB in {len(files)} files, 5 interleaved rounds\n\n| pool | median s | GB/s |\n|---|---:|---:|"
    )
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {total / median / 1e9:.2f} |")


if __name__ == "__main__":
    main()
