"""nginx serves a static Hub tree; modelctl, hf, curl, hf_transfer and aria2c fetch the same files.

Shapes (issue 12 item 5, issue 14 item 5), each an nginx server block over the same tree:
  loopback  plain HTTP on 127.0.0.1, one connection fills the link
  capped    `limit_rate 25m` per connection, as a CDN edge or a long round trip caps one stream
  tls       HTTPS with a throwaway CA (made here with openssl), handshakes counted per run
  kill      capped; modelctl is killed (SIGKILL) at ~40% of one file, then rerun: bytes refetched
  cached    loopback; the model already sits in an HF cache (HF_HUB_CACHE): bytes fetched, time
nginx logs `$connection $ssl_session_reused $status $body_bytes_sent $request` per request, so
every run reports its connections (TLS: handshakes) and the bytes served.

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
import signal
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

from modelctl.net.partial import PIECE

DATA = Path(os.environ.get("MODELCTL_BENCH_DATA", "/tmp/modelctl-bench-hub"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = "/usr/bin/openssl"
TIME = "/usr/bin/time"  # GNU time (Debian's `time`), for the peak RSS
MIB = 1 << 20
CHUNK = PIECE  # what one connection may be writing at a kill: the kill shape's allowance per connection
SHAPES = ("loopback", "capped", "tls", "kill", "cached")
MODELCTL, HF, CURL, HF_TRANSFER, ARIA2, ARIA2_16, CURL_SYNC = (
    "modelctl download",
    "hf download --local-dir",
    "curl -o, one connection, one file after another",
    "hf_transfer, 8 connections, then a sha256 pass",
    "aria2c -x8 -s8 -k16M -j4, then a sha256 pass",
    "aria2c -x16 -s16 -k1M -j4, then a sha256 pass",
    "(reference) curl -o, then `sync` on its files",
)
# The peers each shape's targets name (issue 12): a row's speed is given relative to each.
PEERS = {"loopback": (HF, CURL), "capped": (ARIA2, ARIA2_16), "tls": (HF, CURL)}
# Run as `python -c TOOL BASE OUT NAME...`: fetch with hf_transfer (8 connections, 10 MiB ranges,
# file by file) or aria2c (the whole list at once), then hashlib over every file, as modelctl
# verifies; prints each file's sha256 and the seconds spent fetching and hashing.
PEER_SCRIPT = """
import hashlib, os, subprocess, sys, time
tool, base, out, *names = sys.argv[1:]

def sha256(name):
    h = hashlib.sha256()
    with open(f"{out}/{name}", "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(view):
            h.update(view[:n])
    return h.hexdigest()

fetching = hashing = 0.0
if tool.startswith("aria2c"):
    start = time.perf_counter()
    urls = "".join(f"{base}/{n}\\n  out={n}\\n" for n in names)
    ca = [f"--ca-certificate={os.environ['SSL_CERT_FILE']}"] if "SSL_CERT_FILE" in os.environ else []
    split = ["-x16", "-s16", "-k1M"] if tool == "aria2c16" else ["-x8", "-s8", "-k16M"]
    subprocess.run(["aria2c", *split, "-j4", "-i", "-", "-d", out, "-q",
                    "--auto-file-renaming=false", "--allow-overwrite=true", *ca],
                   input=urls.encode(), check=True)
    middle = time.perf_counter()
    for name in names:
        print(sha256(name), name)
    fetching, hashing = middle - start, time.perf_counter() - middle
else:
    import hf_transfer
    for name in names:
        start = time.perf_counter()
        hf_transfer.download(f"{base}/{name}", f"{out}/{name}", max_files=8,
                             chunk_size=10 * 1024 * 1024, parallel_failures=2, max_retries=2)
        middle = time.perf_counter()
        print(sha256(name), name)
        fetching += middle - start
        hashing += time.perf_counter() - middle
print("split", fetching, hashing)
"""

Files = dict[str, dict[str, object]]


# --------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class FileSet:
    """Files of one repo that one registry entry (model_id) downloads."""

    name: str  # --files value, the registry id and the folder the tools write into
    repo: str
    files: Files  # every file of the repo
    names: list[str]  # the ones this set downloads
    commit: str = ""

    @property
    def size(self) -> int:
        return sum(int(str(self.files[n]["size"])) for n in self.names)


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_repo(folder: Path, sizes: dict[str, int]) -> Files:
    """Generate a repo's large files and two small JSONs once; reuse them while index and sizes match."""
    index = folder / "index.json"
    if index.exists():
        files: Files = json.loads(index.read_text())
        if set(files) == {*sizes, "config.json", "tokenizer.json"} and all(
            (folder / "files" / n).is_file()
            and (folder / "files" / n).stat().st_size == files[n]["size"]
            and sizes.get(n, files[n]["size"]) == files[n]["size"]
            for n in files
        ):
            return files
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "files").mkdir(parents=True)
    files = {}
    for name, size in sizes.items():
        files[name] = {"size": size, "sha256": write_random(folder / "files" / name, size), "lfs": True}
    small = {
        "config.json": {"model_type": "bench", "hidden_size": 4096},
        "tokenizer.json": {"vocab": list(range(5000))},
    }
    for name, content in small.items():
        path = folder / "files" / name
        path.write_text(json.dumps(content))
        files[name] = {"size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        files[name]["lfs"] = False
    for name in files:
        files[name]["blob"] = git_blob_sha1(folder / "files" / name)
    index.write_text(json.dumps(files))
    return files


SMALL_FILES, SMALL_SIZE = 400, 48 * 1024  # issue 22's shape: 400 x 48 KiB


def file_sets(chosen: list[str], size_mb: int) -> list[FileSet]:
    """one: a single large file of bench/model; model: all of bench/model (3 large files and 2 JSONs);
    small: bench/small, 400 files of 48 KiB (and 2 JSONs); mixed: bench/mixed, the earlier default
    (unequal files, 2.83 x --size-mb in all: 1450 MiB at 512)."""
    sets = []
    if {"one", "model"} & set(chosen):
        big = {f"model-0000{i}-of-00003.safetensors": size_mb * MIB for i in (1, 2, 3)}
        files = make_repo(DATA / "model", big)
        if "one" in chosen:
            sets.append(FileSet("one", "bench/model", files, [min(big)]))
        if "model" in chosen:
            sets.append(FileSet("model", "bench/model", files, sorted(files)))
    if "small" in chosen:  # many small files: what each file costs (requests, fsync, rename)
        files = make_repo(DATA / "small", {f"part-{i:03d}.bin": SMALL_SIZE for i in range(SMALL_FILES)})
        sets.append(FileSet("small", "bench/small", files, sorted(files)))
    if "mixed" in chosen:
        total = size_mb * 1450 / 512
        shares = {"model-00001.safetensors": 0.5, "model-00002.safetensors": 0.28, "model-00003.bin": 0.22}
        files = make_repo(DATA / "mixed", {n: int(total * s) * MIB for n, s in shares.items()})
        sets.append(FileSet("mixed", "bench/mixed", files, sorted(files)))
    return sets


def warm(sets: list[FileSet]) -> None:
    """Read every source file once, so each run reads them from the page cache (a warm server)."""
    for path in {DATA / s.repo.split("/")[1] / "files" / n for s in sets for n in s.names}:
        with path.open("rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Server:
    shape: str
    port: int
    scheme: str
    rate: str  # nginx limit_rate per connection, "" for none
    log: Path

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(work: Path) -> Path:
    """A throwaway CA and a certificate for 127.0.0.1/localhost signed by it; returns the CA's file."""
    tls = work / "tls"
    tls.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*a: str) -> None:
        subprocess.run([OPENSSL, *a], cwd=tls, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=modelctl bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "key.pem", "-out", "cert.csr", "-subj", "/CN=127.0.0.1")
    (tls / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    run("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return tls / "ca.pem"


def hub_locations(sets: list[FileSet], www: Path) -> tuple[list[str], dict[str, str]]:
    """Write the Hub's API answers as JSON files; return nginx locations with the resolve headers, and
    each repo's commit.

    What huggingface_hub 2.4 needs (file_download.get_hf_file_metadata and
    _get_metadata_or_catch_error): a HEAD on /resolve/ answering X-Repo-Commit (else
    FileMetadataError), X-Linked-Etag or ETag, and X-Linked-Size or Content-Length; no
    X-Xet-Hash (that would switch it to Xet). snapshot_download first asks
    /api/models/{repo}/revision/main, then /api/models/{repo}/tree/{commit}?recursive=true.
    """
    locations, commits = [], {}
    for repo, files in {s.repo: s.files for s in sets}.items():
        data = DATA / repo.split("/")[1] / "files"
        commit = hashlib.sha1(json.dumps(files, sort_keys=True).encode()).hexdigest()
        commits[repo] = commit
        tree = []
        for name, meta in files.items():
            entry: dict[str, object] = {
                "type": "file",
                "path": name,
                "size": meta["size"],
                "oid": meta["blob"],
            }
            if meta["lfs"]:
                entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}
            tree.append(entry)
        info = {"id": repo, "modelId": repo, "sha": commit, "private": False}
        info["siblings"] = [{"rfilename": n} for n in files]
        api = www / "api" / "models" / repo
        (api / "revision").mkdir(parents=True)
        (api / "tree").mkdir(parents=True)
        for rev in ("main", commit):
            (api / "revision" / rev).write_text(json.dumps(info))
            (api / "tree" / rev).write_text(json.dumps(tree))
            resolve = www / repo / "resolve" / rev
            resolve.mkdir(parents=True)
            for name, meta in files.items():
                (resolve / name).symlink_to(data / name)
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
                locations.append(
                    f"location = /{repo}/resolve/{rev}/{name} {{ etag off; {' '.join(headers)} }}"
                )
    return locations, commits


def start_nginx(
    sets: list[FileSet], shapes: list[str], work: Path, rate: str
) -> tuple[dict[str, Server], Path]:
    """One nginx, one server block (own port, own access log) per shape, all serving the same tree."""
    www = work / "www"
    locations, commits = hub_locations(sets, www)
    for i, s in enumerate(sets):
        sets[i] = FileSet(s.name, s.repo, s.files, s.names, commits[s.repo])
    logs = work / "logs"
    logs.mkdir()
    (work / "hub.conf").write_text(
        # /api/ serves the JSON files by path; nginx ignores the query string (?recursive=true&expand=...).
        "location ^~ /api/ { default_type application/json; }\n" + "\n".join(locations) + "\n"
    )
    servers, blocks = {}, []
    ca = make_ca(work) if "tls" in shapes else None
    for shape in shapes:
        scheme = "https" if shape == "tls" else "http"
        capped = shape in ("capped", "kill")
        server = Server(shape, free_port(), scheme, rate if capped else "", logs / f"{shape}.log")
        servers[shape] = server
        tls = (
            f"ssl_certificate {ca.parent}/cert.pem; ssl_certificate_key {ca.parent}/key.pem; "
            "ssl_session_cache shared:bench:1m;"
            if ca and shape == "tls"
            else ""
        )
        blocks.append(
            f"  server {{ listen 127.0.0.1:{server.port}{' ssl' if tls else ''}; root {www}; {tls}\n"
            f"    access_log {server.log} bench; {f'limit_rate {rate};' if capped else ''}\n"
            f"    include {work}/hub.conf; }}"
        )
    conf = work / "nginx.conf"
    blocks_text = "\n".join(blocks)
    conf.write_text(
        f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {logs}/error.log;
events {{ worker_connections 512; }}
http {{
  log_format bench '$connection $ssl_session_reused $status $body_bytes_sent $request';
  sendfile on; tcp_nopush on; keepalive_requests 10000;
  client_body_temp_path {logs}/body; proxy_temp_path {logs}/proxy; fastcgi_temp_path {logs}/fcgi;
  uwsgi_temp_path {logs}/uwsgi; scgi_temp_path {logs}/scgi;
{blocks_text}
}}
"""
    )
    subprocess.run([NGINX, "-e", str(logs / "error.log"), "-c", str(conf), "-p", str(work)], check=True)
    for server in servers.values():
        wait_for(server.port)
    return servers, conf


def wait_for(port: int) -> None:
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nginx did not listen on 127.0.0.1:{port}")


@dataclass(frozen=True)
class Request:
    """One access-log line."""

    connection: int  # nginx's connection serial number: distinct values = connections (TLS: handshakes)
    is_reused: bool  # TLS session resumed (an abbreviated handshake)
    status: int
    sent: int  # body bytes
    method: str
    uri: str


def read_log(log: Path, offset: int) -> tuple[list[Request], int]:
    """The requests logged after offset, and the new offset.

    nginx logs a request when it finalizes it, which may come after the client exits (a killed
    client: when nginx next writes to the socket), so wait until the log stops growing.
    """
    size, stable = -1, 0
    while stable < 2:
        time.sleep(0.15)
        now = log.stat().st_size
        stable = stable + 1 if now == size else 0
        size = now
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode().splitlines()
        end = f.tell()
    requests = []
    for line in lines:
        conn, reused, status, sent, method, uri, *_ = line.split(" ")
        requests.append(Request(int(conn), reused == "r", int(status), int(sent), method, uri.split("?")[0]))
    return requests, end


def summary(requests: list[Request]) -> str:
    """'N x METHOD kind status, ...' (kind: the API call, or resolve)."""
    kinds: collections.Counter[str] = collections.Counter()
    for r in requests:
        parts = r.uri.split("/")
        kind = parts[2] if r.uri.startswith("/api/") else "resolve" if "/resolve/" in r.uri else r.uri
        kind = parts[5] if r.uri.startswith("/api/models/") and len(parts) > 5 else kind
        kinds[f"{r.method} {kind} {r.status}"] += 1
    return ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items()))


def file_bytes(requests: list[Request], name: str) -> int:
    return sum(
        r.sent for r in requests if r.method == "GET" and "/resolve/" in r.uri and r.uri.endswith(f"/{name}")
    )


# --------------------------------------------------------------------------- the runs


@dataclass
class Run:
    seconds: float
    rss_kib: int
    stdout: str
    user: float = 0.0  # CPU seconds in the tool's own code, children included (GNU time %U)
    system: float = 0.0  # CPU seconds in the kernel on its behalf (%S)
    requests: list[Request] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len({r.connection for r in self.requests})

    @property
    def resumed(self) -> int:
        return len({r.connection for r in self.requests if r.is_reused})

    @property
    def served(self) -> int:
        return sum(r.sent for r in self.requests)


@dataclass
class Kill:
    """kill -9 at a fraction of one file, then the rerun."""

    served_before: int  # file bytes nginx sent before the kill: the most the client can have kept
    written_before: int  # bytes modelctl had written (wchar) when stopped: on disk, kill -9 or not
    connections_before: int
    rerun: Run
    refetched: int  # file bytes nginx sent in the rerun
    size: int

    @property
    def beyond_missing(self) -> int:
        """Refetched beyond what nginx had not yet sent (socket buffers count as kept: pessimistic)."""
        return self.refetched - (self.size - self.served_before)

    @property
    def beyond_written(self) -> int:
        """Refetched beyond what modelctl had not yet written: bytes it wrote and fetched again."""
        return self.refetched - (self.size - self.written_before)


@dataclass(frozen=True)
class Tool:
    name: str
    argv: Callable[[Path], list[str]]  # the command writing into the given model folder
    env: dict[str, str]
    connections: str | None = None  # modelctl: the MODELCTL_CONNECTIONS it ran with (None: unset)


@dataclass
class Workload:
    server: Server
    fileset: FileSet
    tools: list[Tool]
    samples: dict[str, list[Run]] = field(default_factory=dict)
    kills: dict[str, list[Kill]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        what = {
            "one": "one file",
            "model": "the whole model",
            "small": "400 small files",
            "mixed": "the mixed model",
        }[self.fileset.name]
        return f"{self.server.shape}, {what}"


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Wall seconds, CPU seconds and peak RSS (KiB) of one command, its children included.

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
            [TIME, "-f", "%U %S %M", "-o", rss.name, *cmd],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=err,
            check=False,
        )
        took = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            tail = err.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{tail}")
        user, system, rss_kib = Path(rss.name).read_text().split()[-3:]
        return Run(took, int(rss_kib), out.read().decode(errors="replace"), float(user), float(system))


def check_bytes(folder: Path, fs: FileSet, who: str) -> None:
    """Every file of the set byte-identical (sha256) to the source, or stop the bench."""
    for name in fs.names:
        h = hashlib.sha256()
        with (folder / name).open("rb", buffering=0) as f:
            buf = bytearray(8 << 20)
            view = memoryview(buf)
            while n := f.readinto(view):
                h.update(view[:n])
        if h.hexdigest() != fs.files[name]["sha256"]:
            raise SystemExit(f"{who} wrote different bytes for {folder / name}")


def fresh(*paths: Path) -> None:
    """Remove earlier outputs and flush the disk, so no run pays for the previous one's writeback."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    os.sync()
    time.sleep(1.0)  # let the kernel finish freeing the deleted files before the next timed run


def run_checked(w: Workload, tool: Tool, target: Path, project: Path) -> Run:
    """One timed run into a fresh folder, its bytes checked, the requests nginx saw."""
    fresh(target, Path(tool.env["HF_HOME"]), Path(tool.env["MODELCTL_HOME"]))
    (target / w.fileset.name).mkdir(parents=True)
    offset = w.server.log.stat().st_size
    run = timed(tool.argv(target), tool.env, project)
    check_bytes(target / w.fileset.name, w.fileset, f"{tool.name} ({w.title})")
    run.requests, _ = read_log(w.server.log, offset)
    return run


def written(pid: int) -> int:
    """Bytes the process passed to write() so far (/proc/<pid>/io), whatever its files' layout."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def run_kill(w: Workload, tool: Tool, target: Path, project: Path, fraction: float, rate_mb: float) -> Kill:
    """modelctl fetches one file on the capped link; SIGKILL once it wrote `fraction` of it; rerun."""
    fs = w.fileset
    name, size = fs.names[0], fs.size
    fresh(target, Path(tool.env["HF_HOME"]), Path(tool.env["MODELCTL_HOME"]))
    (target / fs.name).mkdir(parents=True)
    offset = w.server.log.stat().st_size
    proc = subprocess.Popen(
        tool.argv(target), env=tool.env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # wchar counts what modelctl wrote (a sparse or preallocated partial looks the same); the
    # deadline (one connection's time for the whole file) bounds a poll that sees nothing.
    deadline = time.monotonic() + size / (rate_mb * MIB) + 30
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if written(proc.pid) >= fraction * size:
                break
        except OSError:
            pass
        time.sleep(0.005)
    if proc.poll() is not None:
        raise SystemExit(f"{tool.name} ({w.title}) exited ({proc.returncode}) before it could be killed")
    # stopped first, so the count of bytes written is the final one (a write in progress completes)
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(0.05)
    wrote = written(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before, offset = read_log(w.server.log, offset)
    run = timed(tool.argv(target), tool.env, project)
    check_bytes(target / fs.name, fs, f"{tool.name} rerun after kill -9")
    run.requests, _ = read_log(w.server.log, offset)
    conns = len({r.connection for r in before if r.method == "GET" and r.uri.endswith(f"/{name}")})
    return Kill(file_bytes(before, name), wrote, conns, run, file_bytes(run.requests, name), size)


def hf_cache(fs: FileSet, work: Path) -> Path:
    """An HF cache holding the repo at its commit: blobs (hard links to the source, else copies),
    snapshots/<commit>/<name> -> ../../blobs/<id>, refs/main."""
    cache = work / "hf-cache"
    repo = cache / f"models--{fs.repo.replace('/', '--')}"
    if repo.exists():
        return cache
    for sub in ("blobs", f"snapshots/{fs.commit}", "refs"):
        (repo / sub).mkdir(parents=True)
    (repo / "refs" / "main").write_text(fs.commit)
    for name, meta in fs.files.items():
        blob = repo / "blobs" / str(meta["sha256"] if meta["lfs"] else meta["blob"])
        source = DATA / fs.repo.split("/")[1] / "files" / name
        try:
            os.link(source, blob)
        except OSError:
            shutil.copyfile(source, blob)
        (repo / "snapshots" / fs.commit / name).symlink_to(f"../../blobs/{blob.name}")
    return cache


def tools_for(
    server: Server, fs: FileSet, env: dict[str, str], connections: list[str], ca: Path | None, work: Path
) -> list[Tool]:
    """Each tool's command line and environment for one shape and file set, writing <dir>/<fs.name>."""
    modelctl = shutil.which("modelctl") or "modelctl"
    hf = shutil.which("hf") or "hf"
    env = {**env, "HF_ENDPOINT": server.endpoint}
    if ca:
        # modelctl, httpx (hf) and Python: SSL_CERT_FILE; requests: REQUESTS_CA_BUNDLE; curl: CURL_CA_BUNDLE
        env |= {"SSL_CERT_FILE": str(ca), "REQUESTS_CA_BUNDLE": str(ca), "CURL_CA_BUNDLE": str(ca)}
    if server.shape == "cached":
        env["HF_HUB_CACHE"] = str(hf_cache(fs, work))
    base = f"{server.endpoint}/{fs.repo}/resolve/main"
    sweep: list[str | None] = [*connections] if connections else [None]
    out = [
        Tool(
            MODELCTL if c is None else f"{MODELCTL}, MODELCTL_CONNECTIONS={c}",
            lambda d: [modelctl, "download", fs.name, "--to", str(d), "--quiet"],
            env if c is None else {**env, "MODELCTL_CONNECTIONS": c},
            c,
        )
        for c in (sweep if server.shape != "cached" else [None])
    ]
    if server.shape in ("kill", "cached"):
        return out

    def curl(d: Path) -> str:
        return " && ".join(f"curl -sfS -o {d}/{fs.name}/{n} {base}/{n}" for n in fs.names)

    # the whole model as a user would ask for it; one file by name (hf_hub_download, no snapshot)
    hf_files = [] if fs.names == sorted(fs.files) else fs.names

    def peer(tool: str, d: Path) -> list[str]:
        return [sys.executable, "-c", PEER_SCRIPT, tool, base, str(d / fs.name), *fs.names]

    out += [
        Tool(HF, lambda d: [hf, "download", fs.repo, *hf_files, "--local-dir", str(d / fs.name)], env),
        Tool(CURL, lambda d: ["sh", "-c", curl(d)], env),
        Tool(HF_TRANSFER, lambda d: peer("hf_transfer", d), env),
        Tool(ARIA2, lambda d: peer("aria2c", d), env),
    ]
    if server.shape == "capped":  # on a slow per-connection cap, aria2c's best is more connections
        out.append(Tool(ARIA2_16, lambda d: peer("aria2c16", d), env))
    if server.shape == "loopback":
        # not a peer: curl with its bytes made durable, as modelctl's fsync does
        def sync(d: Path) -> str:
            return f"{curl(d)} && sync " + " ".join(f"{d}/{fs.name}/{n}" for n in fs.names)

        out.append(Tool(CURL_SYNC, lambda d: ["sh", "-c", sync(d)], env))
    return out


def measure(
    workloads: list[Workload], out: Path, project: Path, rounds: int, args: argparse.Namespace
) -> None:
    """Interleaved: in each round every workload runs every tool once, the order rotated by one
    each round (the first run after a workload's setup or another tool's deleted output was
    measured slower here, whichever tool it was: no tool may always take that place)."""
    for round_ in range(rounds):
        for w in workloads:
            turn = round_ % len(w.tools)
            for tool in w.tools[turn:] + w.tools[:turn]:
                print(f"round {round_ + 1}/{rounds}: {w.title}: {tool.name}", file=sys.stderr, flush=True)
                target = out / str(round_)
                if w.server.shape == "kill":
                    kill = run_kill(w, tool, target, project, args.kill_at, args.rate_mb)
                    w.kills.setdefault(tool.name, []).append(kill)
                else:
                    w.samples.setdefault(tool.name, []).append(run_checked(w, tool, target, project))
                fresh(target)


# --------------------------------------------------------------------------- the report

Target = tuple[str, str, str]  # target, measured, met


def peer_split(runs: list[Run]) -> tuple[float, float] | None:
    """Median seconds a peer script spent downloading, and hashing, over the runs."""
    splits = [line.split()[1:] for r in runs for line in r.stdout.splitlines() if line.startswith("split ")]
    if not splits:
        return None
    return statistics.median(float(s[0]) for s in splits), statistics.median(float(s[1]) for s in splits)


def conn_label(tool: Tool) -> str:
    return "default" if tool.connections is None else tool.connections


def fmt(values: dict[str, float], unit: str = "x", digits: int = 2) -> str:
    """'1.23x', or '1: 0.50x, 8: 1.23x' over modelctl's settings."""
    return ", ".join(
        f"{v:.{digits}f}{unit}" if len(values) == 1 else f"{k}: {v:.{digits}f}{unit}"
        for k, v in values.items()
    )


def met_by(values: dict[str, float], ok: Callable[[float], bool]) -> str:
    """'yes' / 'yes for 8, 16' / '**no**' over modelctl's settings."""
    good = [k for k, v in values.items() if ok(v)]
    if len(good) == len(values):
        return "yes"
    return f"yes for {', '.join(good)}" if good else "**no**"


def report_runs(w: Workload, rounds: int) -> list[Target]:
    """Print a workload's table; return its target rows."""
    shape, total = w.server.shape, w.fileset.size
    med = {n: statistics.median(r.seconds for r in runs) for n, runs in w.samples.items()}
    peers = [p for p in PEERS.get(shape, ()) if p in med]
    tls = shape == "tls"
    print(f"\n#### {w.title}: {total / 1e9:.2f} GB in {len(w.fileset.names)} file(s), {rounds} round(s)\n")
    conns = "connections (TLS handshakes, resumed) per run" if tls else "connections per run"
    vs = "".join(f" | speed vs {p.split(',')[0].split(' -')[0]}" for p in peers)
    print(
        f"| tool | median s | each round, s | MB/s{vs} | CPU user + kernel s | {conns} | MB served | peak RSS MB |"
    )
    print("|---|---:|---:|---:|" + "---:|" * len(peers) + "---:|---:|---:|---:|")
    for name, runs in w.samples.items():
        secs = " ".join(f"{r.seconds:.2f}" for r in runs)
        rss = max(r.rss_kib for r in runs) / 1024
        ratios = "".join(f" | {med[p] / med[name]:.2f}x" for p in peers)
        c = "/".join(
            f"{r.connections} ({r.resumed} resumed)" if tls and r.connections else str(r.connections)
            for r in runs
        )
        served = statistics.median(r.served for r in runs) / 1e6
        cpu = (
            f"{statistics.median(r.user for r in runs):.2f} + {statistics.median(r.system for r in runs):.2f}"
        )
        label = f"**{name}**" if name.startswith(MODELCTL) else name
        print(
            f"| {label} | {med[name]:.2f} | {secs} | {total / med[name] / 1e6:.0f}{ratios} | {cpu} | {c} "
            f"| {served:.0f} | {rss:.0f} |"
        )
    for name in (HF_TRANSFER, ARIA2, ARIA2_16):
        split = peer_split(w.samples.get(name, []))
        if split:
            fetching, hashing = split
            print(
                f"\n{name.split(',')[0]} alone: {fetching:.2f} s ({total / fetching / 1e6:.0f} MB/s), "
                f"then its sha256 pass {hashing:.2f} s.",
                end="",
            )
    print("\n\nRequests nginx saw in the first round:\n")
    for name, runs in w.samples.items():
        if name != CURL_SYNC:
            print(f"- {name}: {summary(runs[0].requests)}")
    mine = {conn_label(t): t.name for t in w.tools if t.name.startswith(MODELCTL)}

    def ratio(peer: str) -> dict[str, float]:
        return {k: med[peer] / med[n] for k, n in mine.items()}

    rows: list[Target] = []
    whole = w.fileset.name in ("model", "mixed")
    if shape == "capped" and ARIA2 in med:
        speed = ratio(ARIA2)
        rows.append(
            (f"{w.title}: modelctl >= 1.0x aria2c -x8 -s8", fmt(speed), met_by(speed, lambda v: v >= 1.0))
        )
        best = min((p for p in (ARIA2, ARIA2_16) if p in med), key=lambda p: med[p])
        speed = ratio(best)
        rows.append(
            (
                f"{w.title}: modelctl >= 1.0x the best aria2c ({best.split(',')[0]})",
                fmt(speed),
                met_by(speed, lambda v: v >= 1.0),
            )
        )
    if shape == "loopback" and whole and HF in med:
        speed = ratio(HF)
        rows.append(
            (f"{w.title}: modelctl >= 1.5x hf download", fmt(speed), met_by(speed, lambda v: v >= 1.5))
        )
    if w.fileset.name == "small" and HF in med:  # issue 22: many small files in half hf's time
        speed = ratio(HF)
        rows.append(
            (f"{w.title}: modelctl <= 0.5x hf download's time", fmt(speed), met_by(speed, lambda v: v >= 2.0))
        )
    if shape == "loopback" and whole and CURL in med:  # --tools may leave a peer out
        speed = ratio(CURL)
        rows.append((f"{w.title}: modelctl >= 0.8x curl", fmt(speed), met_by(speed, lambda v: v >= 0.8)))
    if shape in ("loopback", "capped"):
        peaks = {k: max(x.rss_kib for x in w.samples[n]) / 1024 for k, n in mine.items()}
        rows.append(
            (
                f"{w.title}: modelctl peak RSS <= 100 MB",
                fmt(peaks, " MB", 0),
                met_by(peaks, lambda v: v <= 100),
            )
        )
    if tls:
        hs = {k: float(statistics.median(x.connections for x in w.samples[n])) for k, n in mine.items()}
        rows.append(
            (
                f"{w.title}: modelctl TLS handshakes per run ({len(w.fileset.names)} files)",
                fmt(hs, "", 0),
                "—",
            )
        )
    if shape == "cached":
        for n in mine.values():
            runs = w.samples[n]
            fetched = max(sum(file_bytes(x.requests, f) for f in w.fileset.names) for x in runs)
            t = med[n]
            rows.append(
                (
                    f"{w.title}: modelctl ready in < 1 s, no byte fetched",
                    f"{t:.2f} s, {fetched / MIB:.0f} MiB of files fetched",
                    "yes" if t < 1 and fetched == 0 else "**no**",
                )
            )
    return rows


def report_kills(w: Workload) -> list[Target]:
    size = w.fileset.size
    print(
        f"\n#### kill -9 mid-file on the capped link, then rerun: {w.fileset.names[0]}, {size / MIB:.0f} MiB\n\n"
        "served = file bytes nginx sent before the kill (an upper bound on what the client kept: bytes in "
        "socket buffers count as kept); written = bytes modelctl had written (/proc/<pid>/io wchar, read "
        "while it was stopped just before the kill); refetched = file bytes nginx sent in the rerun; "
        "refetched beyond missing = refetched - (size - served), and beyond written = refetched - "
        "(size - written). Runs of a row are separated by /.\n"
    )
    print("| tool | served before kill MiB | written before kill MiB | connections before | refetched MiB "
          "| refetched beyond missing MiB | beyond written MiB | rerun s | rerun connections |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows: list[Target] = []
    for name, kills in w.kills.items():

        def join(f: Callable[[Kill], str], kills: list[Kill] = kills) -> str:
            return " / ".join(f(k) for k in kills)

        print(
            f"| **{name}** | {join(lambda k: f'{k.served_before / MIB:.0f}')} "
            f"| {join(lambda k: f'{k.written_before / MIB:.0f}')} | {join(lambda k: str(k.connections_before))} "
            f"| {join(lambda k: f'{k.refetched / MIB:.0f}')} | {join(lambda k: f'{k.beyond_missing / MIB:.1f}')} "
            f"| {join(lambda k: f'{k.beyond_written / MIB:.1f}')} | {join(lambda k: f'{k.rerun.seconds:.2f}')} "
            f"| {join(lambda k: str(k.rerun.connections))} |"
        )
        worst = max(kills, key=lambda k: k.beyond_written - k.connections_before * CHUNK)
        allowed = max(worst.connections_before, 1) * CHUNK
        setting = name.removeprefix(MODELCTL).strip(", ") or "MODELCTL_CONNECTIONS unset"
        rows.append(
            (
                f"kill -9 at ~{round(100 * (worst.written_before / size), -1):.0f}% on the capped link, rerun "
                f"({setting}): refetched <= missing + connections x {CHUNK // 1024} KiB",
                f"refetched beyond missing: {worst.beyond_missing / MIB:.1f} MiB by nginx's count, "
                f"{worst.beyond_written / MIB:.1f} MiB beyond what was written "
                f"({worst.connections_before} connections)",
                "yes" if worst.beyond_written <= allowed else "**no**",
            )
        )
    print("\nRequests nginx saw in the first rerun:\n")
    for name, kills in w.kills.items():
        print(f"- {name}: {summary(kills[0].rerun.requests)}")
    return rows


def versions() -> str:
    nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1]
    aria2 = subprocess.run(["aria2c", "--version"], capture_output=True, text=True).stdout.split()[2]
    hub, transfer = (importlib.metadata.version(p) for p in ("huggingface_hub", "hf_transfer"))
    return (
        f"nginx {nginx}, huggingface_hub {hub}, hf_transfer {transfer}, aria2 {aria2}, curl {curl}, "
        f"Python {sys.version.split()[0]}"
    )


def page_cache_note() -> str:
    if os.access("/proc/sys/vm/drop_caches", os.W_OK):
        return "dropping the page cache is possible here but machine-wide, so not done: runs are warm"
    return "the page cache cannot be dropped here (not root): runs are warm"


def split_list(values: list[str]) -> list[str]:
    return [v for value in values for v in value.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape",
        action="extend",
        nargs="+",
        metavar="SHAPE",
        help=f"one of {', '.join(SHAPES)} or all; several allowed (default: all)",
    )
    parser.add_argument(
        "--files",
        action="extend",
        nargs="+",
        metavar="SET",
        help="one (a single large file), model (3 large files + 2 JSONs), small (400 files of 48 KiB), "
        "mixed (the earlier default: unequal files); several allowed (default: one model)",
    )
    parser.add_argument(
        "--size-mb", type=int, default=512, help="size of each large file in MiB (default 512)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--connections",
        metavar="N,N,...",
        help="run modelctl once per value with MODELCTL_CONNECTIONS=N, e.g. 1,4,8,16 (default: unset)",
    )
    parser.add_argument(
        "--tools",
        action="extend",
        nargs="+",
        metavar="TOOL",
        help="only these tools, by their first word: modelctl, hf, curl, hf_transfer, aria2c (default: all)",
    )
    parser.add_argument(
        "--rate", default="25m", help="capped shapes: nginx limit_rate per connection (default 25m)"
    )
    parser.add_argument(
        "--kill-at", type=float, default=0.4, help="kill shape: fraction written before kill -9"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="where the fresh target folders go (default: a temp dir on /tmp's filesystem); "
        "e.g. /dev/shm to leave the disk out",
    )
    args = parser.parse_args()
    shapes = split_list(args.shape or ["all"])
    shapes = list(SHAPES) if "all" in shapes else [s for s in SHAPES if s in shapes]
    chosen = split_list(args.files or ["one,model"])
    bad = [x for x in split_list(args.shape or []) if x not in (*SHAPES, "all")]
    bad += [x for x in chosen if x not in ("one", "model", "small", "mixed")]
    if bad or not shapes:
        parser.error(f"unknown shape or file set: {', '.join(bad) or '(none given)'}")
    connections = split_list([args.connections]) if args.connections else []
    unit = {"k": 1 / 1024, "m": 1.0, "g": 1024.0}.get(args.rate[-1:].lower(), 1 / MIB)
    args.rate_mb = float(args.rate.rstrip("kKmMgG")) * unit
    # the kill shape fetches one large file, whichever sets the other shapes use
    sets = file_sets([*chosen, "one"] if "kill" in shapes else chosen, args.size_mb)
    warm(sets)
    work = Path(tempfile.mkdtemp(prefix="modelctl-bench-dl-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    conf = work / "nginx.conf"
    try:
        servers, conf = start_nginx(sets, shapes, work, args.rate)
        out = (args.out_dir or work) / f"out-{os.getpid()}"
        fs_type = subprocess.run(["stat", "-f", "-c", "%T", str(out.parent)], capture_output=True, text=True)
        project = work / "project"
        project.mkdir()
        yaml = "models:\n"
        for s in sets:
            yaml += f"  - id: {s.name}\n    repo_id: {s.repo}\n"
            yaml += f"    files: [{', '.join(s.names)}]\n" if s.name == "one" else ""
        (project / "models.yaml").write_text(yaml)
        env = {
            **os.environ,
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
            "HF_HUB_CACHE",
            "HF_TOKEN",
            "MODELCTL_CONNECTIONS",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ):
            env.pop(name, None)
        ca = work / "tls" / "ca.pem"
        workloads = []
        for shape in shapes:
            server = servers[shape]
            for s in sets:
                if s.name != "one" if shape == "kill" else s.name not in chosen:
                    continue
                tools = tools_for(server, s, env, connections, ca if shape == "tls" else None, work)
                if args.tools:  # e.g. modelctl,aria2c: the slow peers (curl, hf) left out on a slow link
                    wanted = split_list(args.tools)
                    tools = [t for t in tools if t.name.split()[0].rstrip(",") in wanted]
                workloads.append(Workload(server, s, tools))
        measure(workloads, out, project, args.rounds, args)

        flags = " ".join(f"{a}" for a in sys.argv[1:]) or "(defaults)"
        print(
            f"\n### Download throughput by link shape (`bench/download {flags}`)\n\n"
            f"nginx on 127.0.0.1 serves a static Hub tree of random bytes, one server block per shape: "
            f"loopback (plain), capped (`limit_rate {args.rate}` per connection), tls (HTTPS, a throwaway CA "
            "given to the clients by SSL_CERT_FILE / REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE / aria2c "
            "--ca-certificate); kill (capped; modelctl killed with SIGKILL mid-file, then rerun); cached (loopback; "
            "the repo already in an HF cache at HF_HUB_CACHE, blobs hard-linked to the source). "
            "Each run writes into a fresh folder on "
            f"{fs_type.stdout.strip() or '?'} ({out.parent}; earlier output deleted, then `sync`), the tools "
            "interleaved in each round; every run's output was checked byte-identical (sha256) to the source "
            f"after timing. The source files are in the server's page cache ({page_cache_note()}). "
            f"{os.cpu_count()} cores; {versions()}. modelctl sha256-verifies while streaming and fsyncs each "
            "file; hf_transfer and aria2c are followed by a sha256 pass; `hf` checks sizes only; curl checks "
            "nothing. Connections are nginx's distinct `$connection` numbers in a run's log lines (a "
            "connection that never completed a request is not counted); under tls each is a handshake."
        )
        targets: list[Target] = []
        for w in workloads:
            targets += report_kills(w) if w.server.shape == "kill" else report_runs(w, args.rounds)
        print("\n| target | measured | met |\n|---|---:|:---:|")
        for target, measured, met in targets:
            print(f"| {target} | {measured} | {met} |")
    finally:
        stop = [NGINX, "-e", str(work / "logs" / "error.log"), "-c", str(conf), "-p", str(work), "-s", "stop"]
        if conf.exists():
            subprocess.run(stop, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
        if args.out_dir:
            shutil.rmtree(args.out_dir / f"out-{os.getpid()}", ignore_errors=True)


if __name__ == "__main__":
    main()
