"""Interleaved timing of verify vs hashlib (one core) vs sha256sum, and cached verify vs list."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import write_random

import modelctl.storage as storage_module
from modelctl.storage import Manifest, ManifestFile, write_manifest

CACHE = Path(os.environ.get("MODELCTL_BENCH_DATA", "/tmp/modelctl-bench-verify"))
ONE_CORE = """
import hashlib, sys
for name in sys.argv[1:]:
    h = hashlib.sha256()
    with open(name, 'rb', buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(view):
            h.update(view[:n])
    print(h.hexdigest(), name)
"""


def make_data(total_mb: int) -> dict[str, tuple[int, str]]:
    """Four files (~total_mb) of random bytes, generated once; returns name → (size, sha256)."""
    index = CACHE / "index.json"
    if index.exists():
        known = json.loads(index.read_text())
        if known.get("total_mb") == total_mb:
            return {k: tuple(v) for k, v in known["files"].items()}  # type: ignore[misc]
    shutil.rmtree(CACHE, ignore_errors=True)
    (CACHE / "model").mkdir(parents=True)
    sizes = {"model-00001.bin": 0.4, "model-00002.bin": 0.3, "model-00003.bin": 0.2, "extra.bin": 0.1}
    files = {}
    for name, share in sizes.items():
        size = int(total_mb * share) * 1024 * 1024
        sha256 = write_random(CACHE / "model" / name, size)
        files[name] = (size, sha256)
    index.write_text(json.dumps({"total_mb": total_mb, "files": files}))
    return files


def timed(cmd: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    files = make_data(args.size_mb)
    total = sum(size for size, _ in files.values())
    work = Path(tempfile.mkdtemp(prefix="modelctl-bench-verify-"))
    try:
        (work / "models").mkdir()
        folder = work / "models" / "bench"
        folder.mkdir()
        for name in files:  # hard links: same inodes and page cache, no copy
            os.link(CACHE / "model" / name, folder / name)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        records = []
        for name, (size, sha) in files.items():
            st = (folder / name).stat()
            records.append(ManifestFile(name, size, sha, None, True, now, st.st_mtime_ns, st.st_ino))
        write_manifest(folder, Manifest("bench/model", "main", "0" * 40, tuple(records), now))
        registry = "models:\n  - id: bench\n    repo_id: bench/model\n"
        registry += "".join(
            f"  - id: other-{i}\n    repo_id: bench/other-{i}\n    required: false\n" for i in range(9)
        )
        (work / "models.yaml").write_text(registry)
        env = {**os.environ, "MODELCTL_HOME": str(work / "home")}
        paths = [str(folder / name) for name in files]
        modelctl = shutil.which("modelctl") or "modelctl"
        # Byte-compile the package, as a wheel install would (PYTHONDONTWRITEBYTECODE is set here).
        package = os.path.dirname(storage_module.__file__)
        subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
        for path in paths:  # warm the page cache: every tool reads from memory
            with open(path, "rb") as f:
                while f.read(8 << 20):
                    pass
        timed([modelctl, "verify", "bench"], work, env)  # fills the verification cache
        commands = {
            "modelctl verify --no-cache": [modelctl, "verify", "bench", "--level", "sha256", "--no-cache"],
            "hashlib, one core": [sys.executable, "-c", ONE_CORE, *paths],
            "sha256sum": ["sha256sum", *paths],
            "modelctl verify (cached)": [modelctl, "verify", "--all"],
            "modelctl list": [modelctl, "list"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, work, env))
        med = {name: statistics.median(s) for name, s in samples.items()}
        verify = med["modelctl verify --no-cache"]
        print(
            f"{total / 1e9:.2f} GB in {len(files)} files, page cache warm, {args.rounds} interleaved rounds, "
            f"{os.cpu_count()} cores\n"
        )
        print("| tool | median s | GB/s | modelctl speed-up over it |")
        print("|---|---:|---:|---:|")
        for name in ("modelctl verify --no-cache", "hashlib, one core", "sha256sum"):
            print(
                f"| {name} | {med[name]:.2f} | {total / med[name] / 1e9:.2f} | {med[name] / verify:.2f}x |"
                if name != "modelctl verify --no-cache"
                else f"| {name} | {med[name]:.2f} | {total / med[name] / 1e9:.2f} | 1.00x |"
            )
        cached, listing = med["modelctl verify (cached)"], med["modelctl list"]
        print("\n| cached re-verify | median s | ratio to `modelctl list` |\n|---|---:|---:|")
        print(f"| modelctl verify --all (cached) | {cached:.3f} | {cached / listing:.2f} |")
        print(f"| modelctl list | {listing:.3f} | 1.00 |")
        print("\nTargets: verify >= 1.8x one-core hashlib, >= 4x sha256sum; cached re-verify <= 1.2x list.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
