"""nginx serves a static Hub tree; modelctl, hf, curl and hf_transfer+sha256 fetch the same files.

Everything stays on 127.0.0.1: the hf CLI's PyPI update check is turned off, and https traffic of
every tool is pointed at a dead local proxy, so a request meant for the outside fails here instead.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _data import write_random

DATA = Path(os.environ.get("MODELCTL_BENCH_DATA", "/tmp/modelctl-bench-hub"))
REPO = "bench/model"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TIME = "/usr/bin/time"  # GNU time (Debian's `time`), for the peak RSS
# Shares of --size-mb: the default 1450 MiB gives 760 MB + 426 MB + 334 MB, plus two small JSONs.
SHARES = {"model-00001.safetensors": 0.5, "model-00002.safetensors": 0.28, "model-00003.bin": 0.22}
MODELCTL, HF, CURL, HF_TRANSFER, CURL_SYNC = (
    "modelctl download",
    "hf download --local-dir",
    "curl -o, one file after another",
    "hf_transfer.download + sha256 pass",
    "(reference) curl -o, then `sync` on its files",
)
# Run as `python -c`: hf_transfer (8 connections, 10 MiB ranges) per file, then hashlib over it.
HF_TRANSFER_SCRIPT = """
import hashlib, sys, time, hf_transfer
base, out = sys.argv[1], sys.argv[2]
fetching = hashing = 0.0
for name in sys.argv[3:]:
    target = f"{out}/{name}"
    start = time.perf_counter()
    hf_transfer.download(f"{base}/{name}", target, max_files=8, chunk_size=10 * 1024 * 1024,
                         parallel_failures=2, max_retries=2)
    middle = time.perf_counter()
    h = hashlib.sha256()
    with open(target, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(view):
            h.update(view[:n])
    fetching += middle - start
    hashing += time.perf_counter() - middle
    print(h.hexdigest(), name)
print("split", fetching, hashing)
"""

Files = dict[str, dict[str, object]]


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_model(total_mb: int) -> Files:
    """Generate the files once; reuse them while the index and the sizes on disk match."""
    index = DATA / "index.json"
    if index.exists():
        known = json.loads(index.read_text())
        files: Files = known.get("files", {})
        sizes_ok = all(
            (DATA / "files" / name).is_file() and (DATA / "files" / name).stat().st_size == meta["size"]
            for name, meta in files.items()
        )
        if known.get("total_mb") == total_mb and files and sizes_ok:
            return files
    shutil.rmtree(DATA, ignore_errors=True)
    (DATA / "files").mkdir(parents=True)
    files = {}
    for name, share in SHARES.items():
        size = int(total_mb * share) << 20
        sha256 = write_random(DATA / "files" / name, size)
        files[name] = {"size": size, "sha256": sha256, "lfs": True}
    small = {
        "config.json": {"model_type": "bench", "hidden_size": 4096},
        "tokenizer.json": {"vocab": list(range(5000))},
    }
    for name, content in small.items():
        path = DATA / "files" / name
        path.write_text(json.dumps(content))
        files[name] = {
            "size": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "lfs": False,
        }
    for name in files:
        files[name]["blob"] = git_blob_sha1(DATA / "files" / name)
    index.write_text(json.dumps({"total_mb": total_mb, "files": files}))
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def static_hub(files: Files, work: Path, port: int) -> tuple[Path, str]:
    """Write the Hub's API answers as JSON files and an nginx.conf with its resolve headers; start nginx.

    What huggingface_hub 2.4 needs (file_download.get_hf_file_metadata and
    _get_metadata_or_catch_error): a HEAD on /resolve/ answering X-Repo-Commit (else
    FileMetadataError), X-Linked-Etag or ETag, and X-Linked-Size or Content-Length; no
    X-Xet-Hash (that would switch it to Xet). snapshot_download first asks
    /api/models/{repo}/revision/main, then /api/models/{repo}/tree/{commit}?recursive=true.
    """
    commit = hashlib.sha1(json.dumps(files, sort_keys=True).encode()).hexdigest()
    www = work / "www"
    tree = []
    for name, meta in files.items():
        entry: dict[str, object] = {"type": "file", "path": name, "size": meta["size"], "oid": meta["blob"]}
        if meta["lfs"]:
            entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}
        tree.append(entry)
    info = {
        "id": REPO,
        "modelId": REPO,
        "sha": commit,
        "private": False,
        "siblings": [{"rfilename": n} for n in files],
    }
    locations = []
    api = www / "api" / "models" / REPO
    (api / "revision").mkdir(parents=True)
    (api / "tree").mkdir(parents=True)
    for rev in ("main", commit):
        (api / "revision" / rev).write_text(json.dumps(info))
        (api / "tree" / rev).write_text(json.dumps(tree))
        resolve = www / REPO / "resolve" / rev
        resolve.mkdir(parents=True)
        for name, meta in files.items():
            (resolve / name).symlink_to(DATA / "files" / name)
            etag = meta["sha256"] if meta["lfs"] else meta["blob"]
            headers = [
                f'add_header X-Repo-Commit "{commit}" always;',
                f"add_header ETag '\"{etag}\"' always;",
            ]
            if meta["lfs"]:
                headers += [
                    f"add_header X-Linked-Etag '\"{etag}\"' always;",
                    f'add_header X-Linked-Size "{meta["size"]}" always;',
                ]
            locations.append(f"location = /{REPO}/resolve/{rev}/{name} {{ etag off; {' '.join(headers)} }}")
    logs = work / "logs"
    logs.mkdir()
    conf = work / "nginx.conf"
    body = "\n".join("    " + loc for loc in locations)
    # /api/ serves the JSON files by path; nginx ignores the query string (?recursive=true&expand=...).
    conf.write_text(
        f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {logs}/error.log;
events {{ worker_connections 256; }}
http {{
  log_format bench '$request_method $uri $status $body_bytes_sent';
  access_log {logs}/access.log bench;
  sendfile on; tcp_nopush on;
  client_body_temp_path {logs}/body; proxy_temp_path {logs}/proxy; fastcgi_temp_path {logs}/fcgi;
  uwsgi_temp_path {logs}/uwsgi; scgi_temp_path {logs}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location ^~ /api/ {{ default_type application/json; }}
{body}
  }}
}}
"""
    )
    subprocess.run([NGINX, "-e", str(logs / "error.log"), "-c", str(conf), "-p", str(work)], check=True)
    return conf, commit


def wait_for(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nginx did not listen on 127.0.0.1:{port}")


@dataclass
class Run:
    seconds: float
    rss_kib: int
    stdout: str


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Wall seconds and peak RSS (KiB) of one command, its children included.

    GNU time measures the RSS: wait4() straight from this process would not do, since a child
    exec'd from a fork of Python starts its maxrss at this process's own peak (the kernel carries
    the old mm's high-water mark over exec), and this process may have held a large file.
    """
    with (
        tempfile.NamedTemporaryFile() as rss,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        start = time.perf_counter()
        proc = subprocess.run(
            [TIME, "-f", "%M", "-o", rss.name, *cmd], env=env, cwd=cwd, stdout=out, stderr=err, check=False
        )
        took = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            tail = err.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{tail}")
        return Run(took, int(Path(rss.name).read_text().split()[-1]), out.read().decode(errors="replace"))


def digests(folder: Path, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        h = hashlib.sha256()
        with (folder / name).open("rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        out[name] = h.hexdigest()
    return out


def requests_since(log: Path, offset: int) -> tuple[str, int]:
    """Summary of the access log lines after offset: 'N x METHOD kind status'; and the new offset."""
    time.sleep(0.2)  # nginx logs a request when it finalizes it, which may be after the client exits
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode().splitlines()
        end = f.tell()
    kinds: collections.Counter[str] = collections.Counter()
    for line in lines:
        method, uri, status, _ = line.split(" ")
        api = uri.startswith(f"/api/models/{REPO}/")
        kind = uri.split("/")[5] if api else "resolve" if "/resolve/" in uri else uri
        kinds[f"{method} {kind} {status}"] += 1
    return ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items())), end


@dataclass
class Workload:
    title: str
    names: list[str]
    model: str  # the registry entry modelctl downloads
    samples: dict[str, list[Run]] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)


def tools(w: Workload, all_names: list[str], base: str) -> dict[str, Callable[[Path], list[str]]]:
    """Each tool's command line, writing w.names into <dir>/bench."""
    modelctl = shutil.which("modelctl") or "modelctl"
    hf = shutil.which("hf") or "hf"
    # the whole model as a user would ask for it; one file by name (hf_hub_download, no snapshot)
    hf_files = [] if w.names == all_names else w.names
    return {
        MODELCTL: lambda d: [modelctl, "download", w.model, "--to", str(d), "--quiet"],
        HF: lambda d: [hf, "download", REPO, *hf_files, "--local-dir", str(d / "bench")],
        CURL: lambda d: ["sh", "-c", " && ".join(f"curl -sfS -o {d}/bench/{n} {base}/{n}" for n in w.names)],
        HF_TRANSFER: lambda d: [sys.executable, "-c", HF_TRANSFER_SCRIPT, base, str(d / "bench"), *w.names],
        # not one of the four: curl with its bytes made durable, as modelctl's fsync does
        CURL_SYNC: lambda d: [
            "sh",
            "-c",
            " && ".join(f"curl -sfS -o {d}/bench/{n} {base}/{n}" for n in w.names)
            + " && sync "
            + " ".join(f"{d}/bench/{n}" for n in w.names),
        ],
    }


def fresh(*paths: Path) -> None:
    """Remove earlier outputs and flush the disk, so no run pays for the previous one's writeback."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    os.sync()


def check(
    w: Workload,
    commands: dict[str, Callable[[Path], list[str]]],
    files: Files,
    env: dict[str, str],
    work: Path,
    out: Path,
) -> None:
    """One untimed run per tool: bytes identical to the source (sha256), requests seen by nginx.

    It also warms the server's page cache: every timed run reads the source files from memory.
    """
    expected = {n: str(files[n]["sha256"]) for n in w.names}
    log = work / "logs" / "access.log"
    offset = log.stat().st_size
    for name, make in commands.items():
        target = out / "check"
        fresh(target, Path(env["HF_HOME"]), Path(env["MODELCTL_HOME"]))
        (target / "bench").mkdir(parents=True)
        timed(make(target), env, work / "project")
        got = digests(target / "bench", w.names)
        if got != expected:
            bad = [n for n in w.names if got[n] != expected[n]]
            raise SystemExit(f"{name} wrote different bytes for {bad}: {got} != {expected}")
        w.requests[name], offset = requests_since(log, offset)
    fresh(out)


def measure(
    workloads: list[Workload],
    commands: list[dict[str, Callable[[Path], list[str]]]],
    env: dict[str, str],
    work: Path,
    out: Path,
    rounds: int,
) -> None:
    """Interleaved: in each round every workload runs every tool once, in the same order."""
    for round_ in range(rounds):
        for w, cmds in zip(workloads, commands, strict=True):
            for name, make in cmds.items():
                target = out / f"{round_}"
                fresh(target, Path(env["HF_HOME"]), Path(env["MODELCTL_HOME"]))
                (target / "bench").mkdir(parents=True)
                w.samples.setdefault(name, []).append(timed(make(target), env, work / "project"))
    fresh(out)


def hf_transfer_split(runs: list[Run]) -> tuple[float, float]:
    """Median seconds hf_transfer spent downloading, and hashing, over the runs."""
    splits = [line.split()[1:] for r in runs for line in r.stdout.splitlines() if line.startswith("split ")]
    return statistics.median(float(s[0]) for s in splits), statistics.median(float(s[1]) for s in splits)


def report(w: Workload, files: Files, rounds: int) -> list[tuple[str, str, bool]]:
    """Print the workload's table; return (target, measured, met) rows."""
    total = sum(int(files[n]["size"]) for n in w.names)
    med = {n: statistics.median(r.seconds for r in runs) for n, runs in w.samples.items()}
    mine = med[MODELCTL]
    print(f"\n#### {w.title}: {total / 1e9:.2f} GB in {len(w.names)} file(s), {rounds} rounds\n")
    print("| tool | median s | each round, s | MB/s | modelctl's speed relative to it | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in w.samples.items():
        secs = [r.seconds for r in runs]
        rss = max(r.rss_kib for r in runs) / 1024
        label = f"**{name}**" if name == MODELCTL else name
        print(
            f"| {label} | {med[name]:.2f} | {' '.join(f'{x:.2f}' for x in secs)} | {total / med[name] / 1e6:.0f} "
            f"| {med[name] / mine:.2f}x | {rss:.0f} |"
        )
    fetching, hashing = hf_transfer_split(w.samples[HF_TRANSFER])
    print(
        f"\nhf_transfer alone: {fetching:.2f} s ({total / fetching / 1e6:.0f} MB/s), then its sha256 pass "
        f"{hashing:.2f} s; requests seen by nginx in the checking run:\n"
    )
    for name, summary in w.requests.items():
        if name == CURL_SYNC:
            continue
        print(f"- {name}: {summary}")
    peak = max(r.rss_kib for r in w.samples[MODELCTL]) / 1024
    hf_ratio, curl_ratio = med[HF] / mine, med[CURL] / mine
    durable = f" (vs curl + sync: {med[CURL_SYNC] / mine:.2f}x)"
    return [
        (f"{w.title}: modelctl >= 1.5x hf's throughput", f"{hf_ratio:.2f}x", hf_ratio >= 1.5),
        (f"{w.title}: modelctl >= 0.8x curl's throughput", f"{curl_ratio:.2f}x{durable}", curl_ratio >= 0.8),
        (f"{w.title}: modelctl peak RSS <= 100 MB", f"{peak:.0f} MB", peak <= 100),
    ]


def versions() -> str:
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1]
    hub, transfer = (importlib.metadata.version(p) for p in ("huggingface_hub", "hf_transfer"))
    return f"nginx {nginx}, huggingface_hub {hub}, hf_transfer {transfer}, curl {curl}, Python {sys.version.split()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1450, help="total size of the model in MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="where the fresh target folders go (default: a temp dir on /tmp's filesystem); "
        "e.g. /dev/shm to leave the disk out",
    )
    args = parser.parse_args()
    files = make_model(args.size_mb)
    names = sorted(files)
    largest = max(names, key=lambda n: int(files[n]["size"]))
    work = Path(tempfile.mkdtemp(prefix="modelctl-bench-dl-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    conf, commit = static_hub(files, work, port)
    try:
        wait_for(port)
        out = (args.out_dir or work) / f"out-{os.getpid()}"
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(out.parent)], capture_output=True, text=True)
        project = work / "project"
        project.mkdir()
        (project / "models.yaml").write_text(
            f"models:\n  - id: bench\n    repo_id: {REPO}\n"
            f"  - id: bench-big\n    repo_id: {REPO}\n    files: [{largest}]\n    local_dir: bench\n"
        )
        env = {
            **os.environ,
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(work / "hf-home"),
            "MODELCTL_HOME": str(work / "mc-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # else `hf` asks pypi.org on every run with a fresh HF_HOME
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            # a dead local proxy for https: anything meant for the outside fails here, never leaves
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        for name in (
            "HF_HUB_ENABLE_HF_TRANSFER",
            "HF_TOKEN",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ):
            env.pop(name, None)
        base = f"{endpoint}/{REPO}/resolve/main"
        workloads = [
            Workload("Whole model", names, "bench"),
            Workload(f"One file ({largest})", [largest], "bench-big"),
        ]
        commands = [tools(w, names, base) for w in workloads]
        for w, cmds in zip(workloads, commands, strict=True):
            check(w, cmds, files, env, work, out)
        measure(workloads, commands, env, work, out, args.rounds)
        flags = f"--size-mb {args.size_mb} --rounds {args.rounds}"
        flags += f" --out-dir {args.out_dir}" if args.out_dir else ""
        print(
            f"\n### Download throughput (`bench/download {flags}`)\n\n"
            f"nginx on 127.0.0.1 serves a static Hub tree (commit {commit[:12]}) of random bytes; each run "
            f"writes into a fresh folder on {fs.stdout.strip() or '?'} ({out.parent}; earlier output deleted, "
            "then `sync`), the tools "
            "interleaved in each round; the source files stay in the server's page cache. Every tool's output "
            f"was checked byte-identical (sha256) to the source before timing. {os.cpu_count()} cores; "
            f"{versions()}. modelctl sha256-verifies while streaming and fsyncs each file; `hf` checks sizes "
            "only; curl checks nothing."
        )
        targets = [row for w in workloads for row in report(w, files, args.rounds)]
        print("\n| target | measured | met |\n|---|---:|:---:|")
        for target, measured, met in targets:
            print(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    finally:
        stop = [NGINX, "-e", str(work / "logs" / "error.log"), "-c", str(conf), "-p", str(work), "-s", "stop"]
        subprocess.run(stop, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
        if args.out_dir:
            shutil.rmtree(args.out_dir / f"out-{os.getpid()}", ignore_errors=True)


if __name__ == "__main__":
    main()
