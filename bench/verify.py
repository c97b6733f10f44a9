"""Interleaved timing of verify vs hashlib (one core) vs sha256sum, and cached verify vs list.

Two shapes of model, each its own table:
  mixed  four files of 40/30/20/10 % of --size-mb (a usual sharded model)
  equal  three files of --equal-mb each: per-file threads on 2 cores take the time of 2 files
         here; hashing pieces handed between threads takes 1.5 (hashing.hash_files)
"""

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

import modelctl.store.storage as storage_module
from modelctl.core.record import Record, RepoFile, write_record

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
VERIFY = "modelctl verify --no-cache"
ONE = "hashlib, one core"
CACHED = "modelctl verify (cached)"


def shape_sizes(shape: str, args: argparse.Namespace) -> dict[str, int]:
    """name → bytes of each file of the shape."""
    if shape == "mixed":
        shares = {"model-00001.bin": 0.4, "model-00002.bin": 0.3, "model-00003.bin": 0.2, "extra.bin": 0.1}
        return {name: int(args.size_mb * share) * 1024 * 1024 for name, share in shares.items()}
    return {f"model-0000{i}-of-00003.bin": args.equal_mb * 1024 * 1024 for i in (1, 2, 3)}


def make_data(shape: str, sizes: dict[str, int]) -> dict[str, tuple[int, str]]:
    """The shape's files of random bytes, generated once; returns name → (size, sha256)."""
    folder = CACHE / shape
    index = folder / "index.json"
    if index.exists():
        known = json.loads(index.read_text())
        if known.get("sizes") == sizes:
            return {k: tuple(v) for k, v in known["files"].items()}  # type: ignore[misc]
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "model").mkdir(parents=True)
    files = {name: (size, write_random(folder / "model" / name, size)) for name, size in sizes.items()}
    index.write_text(json.dumps({"sizes": sizes, "files": files}))
    return files


def timed(cmd: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return took


def make_project(work: Path, shape: str, files: dict[str, tuple[int, str]]) -> list[str]:
    """A project whose model `bench` is the shape's files (hard links) with a record; their paths."""
    (work / "models").mkdir()
    folder = work / "models" / "bench"
    folder.mkdir()
    for name in files:  # hard links: same inodes and page cache, no copy
        os.link(CACHE / shape / "model" / name, folder / name)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries = tuple(RepoFile(name, size, sha, "0" * 40) for name, (size, sha) in files.items())
    write_record(folder, Record("bench/model", "main", "0" * 40, entries, now))
    registry = "models:\n  - id: bench\n    repo_id: bench/model\n"
    registry += "".join(
        f"  - id: other-{i}\n    repo_id: bench/other-{i}\n    required: false\n" for i in range(9)
    )
    (work / "models.yaml").write_text(registry)
    paths = [str(folder / name) for name in files]
    for path in paths:  # warm the page cache: every tool reads from memory
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    return paths


def run_shape(shape: str, args: argparse.Namespace, modelctl: str) -> None:
    files = make_data(shape, shape_sizes(shape, args))
    total = sum(size for size, _ in files.values())
    work = Path(tempfile.mkdtemp(prefix=f"modelctl-bench-verify-{shape}-"))
    try:
        paths = make_project(work, shape, files)
        env = {**os.environ, "MODELCTL_HOME": str(work / "home")}
        timed([modelctl, "verify", "bench"], work, env)  # fills the verification cache
        commands = {
            VERIFY: [modelctl, "verify", "bench", "--level", "sha256", "--no-cache"],
            ONE: [sys.executable, "-c", ONE_CORE, *paths],
        }
        if shape == "mixed":
            commands["sha256sum"] = ["sha256sum", *paths]
            commands["modelctl list"] = [modelctl, "list"]
            commands[CACHED] = [modelctl, "verify", "--all"]
        else:
            commands[CACHED] = [modelctl, "verify", "bench"]  # a run's fixed cost: nothing to hash
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd, work, env))
        med = {name: statistics.median(s) for name, s in samples.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sizes = sorted({size for size, _ in files.values()}, reverse=True)
    what = f"{len(files)} files of {', '.join(f'{s / 2**20:.0f}' for s in sizes)} MiB" + (
        " each" if len(sizes) == 1 else ""
    )
    print(
        f"\n### {shape}: {total / 1e9:.2f} GB in {what}\n\npage cache warm, {args.rounds} interleaved "
        f"rounds, {os.cpu_count()} cores, end to end (each tool is a new process)\n"
    )
    verify = med[VERIFY]
    print("| tool | median s | GB/s | modelctl verify's speed-up over it |")
    print("|---|---:|---:|---:|")
    for name in (VERIFY, ONE, "sha256sum"):
        if name in med:
            print(f"| {name} | {med[name]:.2f} | {total / med[name] / 1e9:.2f} | {med[name] / verify:.2f}x |")
    cached = med[CACHED]
    if shape == "mixed":
        listing = med["modelctl list"]
        print("\n| cached re-verify | median s | ratio to `modelctl list` |\n|---|---:|---:|")
        print(f"| modelctl verify --all (cached) | {cached:.3f} | {cached / listing:.2f} |")
        print(f"| modelctl list | {listing:.3f} | 1.00 |")
        print("\nTargets: verify >= 1.8x one-core hashlib, >= 4x sha256sum; cached re-verify <= 1.2x list.")
    else:
        hashing = verify - cached
        print(
            f"\nA run's fixed cost (start-up, registry, record; `modelctl verify` with nothing to hash): "
            f"{cached:.2f} s. Without it verify takes {hashing:.2f} s, "
            f"{med[ONE] / hashing:.2f}x the one-core loop (ideal on {os.cpu_count()} cores: "
            f"{min(os.cpu_count() or 1, len(files)) * 1.0:.1f}x).\n"
            "\nTarget: verify >= 1.8x one-core hashlib, end to end."
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=2048, help="total of the mixed shape")
    parser.add_argument("--equal-mb", type=int, default=512, help="each of the equal shape's 3 files")
    parser.add_argument("--shape", choices=("all", "mixed", "equal"), default="all")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    modelctl = shutil.which("modelctl") or "modelctl"
    # Byte-compile the package, as a wheel install would (PYTHONDONTWRITEBYTECODE is set here).
    package = os.path.dirname(storage_module.__file__)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
    print("## modelctl verify")
    for shape in ("mixed", "equal"):
        if args.shape in ("all", shape):
            run_shape(shape, args, modelctl)


if __name__ == "__main__":
    main()
