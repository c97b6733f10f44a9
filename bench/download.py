"""nginx serves a static Hub tree; modelctl, hf, curl and hf_transfer+sha256 fetch the same files."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import write_random

DATA = Path(os.environ.get("MODELCTL_BENCH_DATA", "/tmp/modelctl-bench-hub"))
REPO = "bench/model"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HF_TRANSFER = """
import hashlib, sys, hf_transfer
base, out = sys.argv[1], sys.argv[2]
for name in sys.argv[3:]:
    target = f"{out}/{name}"
    hf_transfer.download(f"{base}/{name}", target, max_files=8, chunk_size=10 * 1024 * 1024,
                         parallel_failures=2, max_retries=2)
    h = hashlib.sha256()
    with open(target, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(view):
            h.update(view[:n])
    print(h.hexdigest(), name)
"""


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    h.update(path.read_bytes())
    return h.hexdigest()


def make_model(total_mb: int) -> dict[str, dict[str, object]]:
    """Generate the files once (reused while the index matches): one >= 700 MB, two more, JSONs."""
    index = DATA / "index.json"
    if index.exists():
        known = json.loads(index.read_text())
        if known.get("total_mb") == total_mb:
            return dict(known["files"])
    shutil.rmtree(DATA, ignore_errors=True)
    (DATA / "files").mkdir(parents=True)
    shares = {"model-00001.safetensors": 0.5, "model-00002.safetensors": 0.28, "model-00003.bin": 0.22}
    files: dict[str, dict[str, object]] = {}
    for name, share in shares.items():
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


def static_hub(files: dict[str, dict[str, object]], work: Path, port: int) -> Path:
    """The Hub's API answers as JSON files, and resolve paths with the Hub's headers, for nginx."""
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
    for rev in ("main", commit):
        api = www / "api" / "models" / REPO
        (api / "revision").mkdir(parents=True, exist_ok=True)
        (api / "tree").mkdir(parents=True, exist_ok=True)
        (api / "revision" / rev).write_text(json.dumps(info))
        (api / "tree" / rev).write_text(json.dumps(tree))
        resolve = www / REPO / "resolve" / rev
        resolve.mkdir(parents=True, exist_ok=True)
        for name, meta in files.items():
            link = resolve / name
            if not link.exists():
                link.symlink_to(DATA / "files" / name)
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
    conf.write_text(
        f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {logs}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on;
  client_body_temp_path {logs}/body; proxy_temp_path {logs}/proxy; fastcgi_temp_path {logs}/fcgi;
  uwsgi_temp_path {logs}/uwsgi; scgi_temp_path {logs}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location ^~ /api/ {{ default_type application/json; }}
    {chr(10).join("    " + loc for loc in locations)}
  }}
}}
"""
    )
    subprocess.run([NGINX, "-c", str(conf), "-p", str(work)], check=True)
    return conf


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, from GNU time) of one command."""
    rss_file = cwd / ".rss"
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    took = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return took, int(rss_file.read_text().split()[-1])


def digests(folder: Path, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        h = hashlib.sha256()
        with (folder / name).open("rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        out[name] = h.hexdigest()
    return out


def report(
    subset: list[str],
    model: str,
    files: dict[str, dict[str, object]],
    env: dict[str, str],
    project: Path,
    out: Path,
    base: str,
    modelctl: str,
    hf: str,
    rounds: int,
) -> None:
    """Time every tool on `subset`, interleaved, after checking each one's bytes; print a table."""
    total = sum(int(files[n]["size"]) for n in subset)
    tools = {
        "modelctl download": lambda d: [modelctl, "download", model, "--to", str(d), "--quiet"],
        "hf download --local-dir": lambda d: [hf, "download", REPO, *subset, "--local-dir", str(d / "bench")],
        "curl -o (one file at a time)": lambda d: [
            "sh",
            "-c",
            " && ".join(f"curl -sfS -o {d}/bench/{n} {base}/{n}" for n in subset),
        ],
        "hf_transfer + sha256 pass": lambda d: [
            sys.executable,
            "-c",
            HF_TRANSFER,
            base,
            str(d / "bench"),
            *subset,
        ],
    }
    expected = {n: str(files[n]["sha256"]) for n in subset}
    home = Path(env["HF_HOME"])
    for name, make in tools.items():  # correctness first, and a warm page cache on the server
        target = out / "check"
        shutil.rmtree(target, ignore_errors=True)
        (target / "bench").mkdir(parents=True)
        timed(make(target), env, project)
        got = digests(target / "bench", subset)
        if got != expected:
            raise SystemExit(f"{name} produced different bytes: {got} != {expected}")
        shutil.rmtree(target)
        shutil.rmtree(home, ignore_errors=True)
    samples: dict[str, list[float]] = {n: [] for n in tools}
    rss: list[int] = []
    for round_ in range(rounds):
        for name, make in tools.items():
            target = out / f"{round_}-{len(samples[name])}"
            (target / "bench").mkdir(parents=True)
            took, peak = timed(make(target), env, project)
            samples[name].append(took)
            if name == "modelctl download":
                rss.append(peak)
            shutil.rmtree(target)
            shutil.rmtree(home, ignore_errors=True)  # hf keeps metadata there; start it fresh too
    med = {n: statistics.median(s) for n, s in samples.items()}
    mine = med["modelctl download"]
    print(
        f"\n{total / 1e9:.2f} GB in {len(subset)} file(s) ({', '.join(subset) if len(subset) == 1 else 'the whole model'}), "
        f"nginx on 127.0.0.1, {rounds} interleaved rounds, {os.cpu_count()} cores, fresh folders on the same disk\n"
    )
    print("| tool | median s | MB/s | modelctl's throughput relative to it |")
    print("|---|---:|---:|---:|")
    for name in tools:
        print(f"| {name} | {med[name]:.2f} | {total / med[name] / 1e6:.0f} | {med[name] / mine:.2f}x |")
    print(
        f"\nmodelctl peak RSS: {max(rss) / 1024:.0f} MB (max over {len(rss)} runs); every tool's output was "
        "checked byte-identical (sha256) to the source before timing."
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1536)
    args = parser.parse_args()
    files = make_model(args.size_mb)
    names = sorted(files)
    work = Path(tempfile.mkdtemp(prefix="modelctl-bench-dl-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    conf = static_hub(files, work, port)
    try:
        project = work / "project"
        project.mkdir()
        largest = max(names, key=lambda n: int(files[n]["size"]))
        (project / "models.yaml").write_text(
            f"models:\n  - id: bench\n    repo_id: {REPO}\n"
            f"  - id: bench-big\n    repo_id: {REPO}\n    files: [{largest}]\n    local_dir: bench\n"
        )
        home = work / "hf-home"
        env = {
            **os.environ,
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "MODELCTL_HOME": str(work / "mc-home"),
        }
        env.pop("HF_HUB_ENABLE_HF_TRANSFER", None)
        env.pop("HF_TOKEN", None)
        modelctl = shutil.which("modelctl") or "modelctl"
        hf = shutil.which("hf") or "hf"
        out = work / "out"
        base = f"{endpoint}/{REPO}/resolve/main"
        for subset, model in ((names, "bench"), ([largest], "bench-big")):
            report(subset, model, files, env, project, out, base, modelctl, hf, args.rounds)
        print("\nTargets: >= 1.5x hf's throughput, >= 0.8x curl's, sha256 verified; peak RSS <= 100 MB.")
    finally:
        subprocess.run([NGINX, "-c", str(conf), "-p", str(work), "-s", "stop"], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
