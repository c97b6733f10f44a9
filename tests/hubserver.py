"""A Hub-compatible HTTP server on 127.0.0.1 for tests: generated repos, fault knobs, counters.

It answers exactly what huggingface_hub and modelctl ask for:
  GET  /api/models/{repo}/revision/{rev}        model info with the commit sha
  GET  /api/models/{repo}/tree/{rev}[/{path}]   the file listing (sizes, blob ids, LFS sha256)
  HEAD/GET /{repo}/resolve/{rev}/{path}         file bytes, with X-Repo-Commit, ETag,
                                                X-Linked-Etag / X-Linked-Size, Range → 206
  404s carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound), gated repos 401/403
  with GatedRepo. Optionally LFS files redirect to a "CDN" on another host name (localhost).
API knobs: api_failures (500s), tree_status, tree_stall, tree_trickle_after/tree_trickle, plain_errors,
tree_links (pagination).
Faults are set per file path and apply to the next `times` GET requests of that file.
"""

from __future__ import annotations

import hashlib
import json
import random
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".onnx")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    revisions: dict[str, str] = field(default_factory=dict)  # name → commit
    token: str | None = None  # gated: this token is required
    lfs: set[str] = field(default_factory=set)
    listed_sizes: dict[str, int] = field(default_factory=dict)  # lie about sizes in the tree
    extra_listing: list[dict[str, Any]] = field(default_factory=list)  # hostile tree entries

    def __post_init__(self) -> None:
        if not self.lfs:
            self.lfs = {p for p in self.files if p.endswith(LFS_SUFFIXES)}
        digest = hashlib.sha1(self.repo_id.encode())
        for path in sorted(self.files):
            digest.update(path.encode() + hashlib.sha256(self.files[path]).digest())
        self.commit = digest.hexdigest()
        self.revisions.setdefault("main", self.commit)
        self.revisions.setdefault(self.commit, self.commit)

    def entry(self, path: str) -> dict[str, Any]:
        data = self.files[path]
        size = self.listed_sizes.get(path, len(data))
        item: dict[str, Any] = {"type": "file", "path": path, "size": size}
        if path in self.lfs:
            item["oid"] = git_blob_sha1(lfs_pointer(data))
            item["lfs"] = {
                "oid": hashlib.sha256(data).hexdigest(),
                "size": size,
                "pointerSize": len(lfs_pointer(data)),
            }
        else:
            item["oid"] = git_blob_sha1(data)
        return item

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path in self.lfs else git_blob_sha1(data)


@dataclass
class Fault:
    """Misbehaviour for the next `times` GETs of one file (None: every request)."""

    times: int | None = 1
    status: int | None = None  # answer this status instead of the file
    retry_after: str | None = None
    cut_after: int | None = None  # close the connection after this many body bytes
    stall_after: int | None = None  # then sleep `stall` seconds mid-body
    stall: float = 0.0
    flip_at: int | None = None  # flip one byte at this file offset
    length_delta: int = 0  # Content-Length off by this much (and the body too)
    extra: bytes = b""  # bytes after the file's own
    ignore_range: bool = False  # answer 200 with the whole file to a Range request
    range_shift: int = 0  # answer a Range request from this many bytes off the asked start
    total_delta: int = 0  # the total in Content-Range off by this much (a wrong size)
    trickle_after: int | None = None  # then send one byte every `trickle` seconds
    trickle: float = 0.5
    skip: int = 0  # let this many GETs through untouched first


class Hold:
    """GETs of one file wait here before any byte is sent, until `release()`: a test decides when
    a download may go on (an event, never a deadline). `arrived` is set by the first GET to wait."""

    def __init__(self, *, skip: int = 0) -> None:
        self.arrived = threading.Event()
        self.opened = threading.Event()
        self.skip = skip  # let this many GETs through first
        self.waiting = 0  # GETs held so far
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Called by the server for each GET: hold it here, unless it is one of the first `skip`."""
        with self._lock:
            if self.skip > 0:
                self.skip -= 1
                return
            self.waiting += 1
        self.arrived.set()
        self.opened.wait()

    def release(self) -> None:
        self.opened.set()


@dataclass
class Request:
    method: str
    path: str
    host: str
    range: str | None
    if_range: str | None
    authorization: str | None
    status: int = 0
    body_bytes: int = 0
    at: float = field(default_factory=time.monotonic)
    client_port: int = 0  # the client's port: one per connection (keep-alive reuses it)


class HubServer:
    """Start with `with HubServer() as hub:`; `hub.url` is the endpoint."""

    def __init__(
        self,
        *,
        redirect_lfs: bool = False,
        chunk: int = 64 * 1024,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,  # serve HTTPS with this server context (tests/tlsfixture.py)
    ) -> None:
        self.repos: dict[str, Repo] = {}
        self.faults: dict[str, Fault] = {}
        self.requests: list[Request] = []
        self.redirect_lfs = redirect_lfs
        self.chunk = chunk
        self.delay = delay  # seconds to sleep after each chunk (slow server)
        self.support_range = True
        self.api_failures = 0  # answer the next N API (metadata) requests with HTTP 500
        self.api_retry_after: str | None = None  # ...then with 503 and this Retry-After instead
        self.tree_status: int | None = None  # answer every tree request with this (plain, no X-Error-Code)
        self.tree_stall = 0.0  # seconds to sleep before answering a tree request
        self.tree_trickle_after: int | None = None  # tree answers send this many bytes, then trickle
        self.tree_trickle = 0.2  # seconds between the trickled bytes
        self.plain_errors = False  # not-found answers as a simple mirror sends them: 404, no X-Error-Code
        self.holds: dict[str, Hold] = {}  # GETs of these files wait at their Hold
        self.send_etag = True  # False: file answers carry no ETag (a plain server or mirror)
        # Pagination: the tree is split into len(tree_links) + 1 pages; page `cursor` (0 without
        # one) carries `Link: <tree_links[cursor]>; rel="next"` while there is a next one.
        self.tree_links: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        if tls is not None:  # the handshake happens on the first read, in the request's own thread
            accept = self._httpd.get_request

            def get_request() -> tuple[Any, Any]:
                sock, address = accept()
                wrapped = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                sock.close()  # the husk wrap_socket detached: closed, it is never "unclosed" at GC
                return wrapped, address

            self._httpd.get_request = get_request  # type: ignore[method-assign]
            report = self._httpd.handle_error

            def handle_error(request: Any, client_address: Any) -> None:
                import sys  # a client refusing the certificate is a test's point, not a server error

                if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
                    report(request, client_address)

            self._httpd.handle_error = handle_error  # type: ignore[method-assign]
        self.scheme = "https" if tls is not None else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, repo: Repo) -> Repo:
        self.repos[repo.repo_id] = repo
        return repo

    def record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            fault = self.faults.get(path)
            if fault is None:
                return None
            if fault.skip > 0:
                fault.skip -= 1
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[path]
            return fault

    # ------------------------------------------------------------ what was served

    def file_gets(self, name: str | None = None) -> list[Request]:
        """GET requests for file bytes (resolve and CDN), optionally of one repo path."""
        return [
            r
            for r in self.requests
            if r.method == "GET"
            and ("/resolve/" in r.path or r.path.startswith("/cdn/"))
            and (name is None or unquote(r.path.split("?")[0]).endswith("/" + name))
        ]

    def body_bytes(self, name: str | None = None) -> int:
        return sum(r.body_bytes for r in self.file_gets(name))

    def served(self) -> dict[str, int]:
        """Body bytes served per repo file path, by its resolve requests."""
        out: dict[str, int] = {}
        for request in self.file_gets():
            if "/resolve/" in request.path:
                name = unquote(request.path.split("/resolve/", 1)[1].split("/", 1)[1].split("?")[0])
                out[name] = out.get(name, 0) + request.body_bytes
        return out

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        # -------------------------------------------------------- plumbing

        def _serve(self, *, head: bool) -> None:
            req = Request(
                self.command,
                self.path,
                self.headers.get("host", ""),
                self.headers.get("range"),
                self.headers.get("if-range"),
                self.headers.get("authorization"),
                client_port=self.client_address[1],
            )
            try:
                self._route(req, head)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                hub.record(req)

        def _send(
            self,
            req: Request,
            status: int,
            body: bytes = b"",
            headers: dict[str, str] | None = None,
            head: bool = False,
        ) -> None:
            req.status = status
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
                req.body_bytes += len(body)

        def _json(self, req: Request, data: Any) -> None:
            self._send(req, 200, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def _error(self, req: Request, status: int, code: str, head: bool = False) -> None:
            if hub.plain_errors and code != "GatedRepo":
                self._send(req, 404, b"Not Found", {"Content-Type": "text/plain"}, head)
                return
            body = json.dumps({"error": code}).encode()
            self._send(req, status, body, {"X-Error-Code": code, "Content-Type": "application/json"}, head)

        def _repo(self, req: Request, repo_id: str, head: bool = False) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(req, 401 if not req.authorization else 404, "RepoNotFound", head)
                return None
            if repo.token is not None and req.authorization != f"Bearer {repo.token}":
                self._error(req, 401 if not req.authorization else 403, "GatedRepo", head)
                return None
            return repo

        def _commit(self, req: Request, repo: Repo, rev: str, head: bool = False) -> str | None:
            commit = repo.revisions.get(unquote(rev))
            if commit is None:
                self._error(req, 404, "RevisionNotFound", head)
            return commit

        def _route(self, req: Request, head: bool) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            if path.startswith("/api/models/"):
                with hub._lock:
                    failing = hub.api_failures > 0
                    hub.api_failures -= 1 if failing else 0
                if failing and hub.api_retry_after is not None:
                    self._send(req, 503, b"busy", {"Retry-After": hub.api_retry_after})
                    return
                if failing:
                    self._send(req, 500, b"internal error")
                    return
                if hub.tree_stall and "/tree/" in path:
                    time.sleep(hub.tree_stall)
                if hub.tree_status is not None and "/tree/" in path:
                    self._send(req, hub.tree_status, b"plain error", {"Content-Type": "text/plain"})
                    return
                rest = path[len("/api/models/") :]
                for marker, fn in (("/revision/", self._info), ("/tree/", self._tree)):
                    if marker in rest:
                        repo_id, _, tail = rest.partition(marker)
                        fn(req, unquote(repo_id), tail, parse_qs(parts.query))
                        return
                self._error(req, 404, "NotFound")
                return
            if path.startswith("/cdn/"):
                self._cdn(req, path, head)
                return
            if "/resolve/" in path:
                repo_id, _, tail = path[1:].partition("/resolve/")
                rev, _, file_path = tail.partition("/")
                self._resolve(req, unquote(repo_id), rev, unquote(file_path), head)
                return
            self._error(req, 404, "NotFound", head)

        def _info(self, req: Request, repo_id: str, rev: str, query: dict[str, list[str]]) -> None:
            repo = self._repo(req, repo_id)
            if repo is None:
                return
            commit = self._commit(req, repo, rev)
            if commit is None:
                return
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            self._json(
                req,
                {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "siblings": siblings},
            )

        def _tree(self, req: Request, repo_id: str, tail: str, query: dict[str, list[str]]) -> None:
            repo = self._repo(req, repo_id)
            if repo is None:
                return
            rev, _, sub = tail.partition("/")
            commit = self._commit(req, repo, rev)
            if commit is None:
                return
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            prefix = unquote(sub).strip("/")
            entries: list[dict[str, Any]] = []
            folders: set[str] = set()
            for name in sorted(repo.files):
                if prefix and not name.startswith(prefix + "/"):
                    continue
                rel = name[len(prefix) + 1 :] if prefix else name
                if "/" in rel and not recursive:
                    folders.add((prefix + "/" if prefix else "") + rel.split("/")[0])
                    continue
                for i in range(rel.count("/")):
                    folders.add((prefix + "/" if prefix else "") + "/".join(rel.split("/")[: i + 1]))
                entries.append(repo.entry(name))
            entries += [
                {"type": "directory", "path": f, "oid": git_blob_sha1(f.encode())} for f in sorted(folders)
            ]
            entries += repo.extra_listing
            if hub.tree_links:
                cursor = int(query.get("cursor", ["0"])[0])
                pages = len(hub.tree_links) + 1
                page = entries[cursor * len(entries) // pages : (cursor + 1) * len(entries) // pages]
                link = {"Link": f'<{hub.tree_links[cursor]}>; rel="next"'} if cursor < pages - 1 else {}
                body = json.dumps(page).encode()
                self._send(req, 200, body, {"Content-Type": "application/json", **link})
                return
            if hub.tree_trickle_after is not None:
                body = json.dumps(entries).encode()
                self._send_trickled(req, body, hub.tree_trickle_after, hub.tree_trickle)
                return
            self._json(req, entries)

        def _send_trickled(self, req: Request, body: bytes, after: int, every: float) -> None:
            """A 200 JSON answer whose body after its first `after` bytes comes a byte every `every` s."""
            req.status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:after])
            self.wfile.flush()
            for i in range(after, len(body)):
                time.sleep(every)
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                req.body_bytes = i + 1

        def _resolve(self, req: Request, repo_id: str, rev: str, file_path: str, head: bool) -> None:
            repo = self._repo(req, repo_id, head)
            if repo is None:
                return
            commit = self._commit(req, repo, rev, head)
            if commit is None:
                return
            if file_path not in repo.files:
                self._error(req, 404, "EntryNotFound", head)
                return
            headers = {"X-Repo-Commit": commit, "ETag": f'"{repo.etag(file_path)}"', "Accept-Ranges": "bytes"}
            if file_path in repo.lfs:
                headers["X-Linked-Etag"] = headers["ETag"]
                headers["X-Linked-Size"] = str(len(repo.files[file_path]))
                if hub.redirect_lfs:
                    sha = hashlib.sha256(repo.files[file_path]).hexdigest()
                    location = f"{hub.scheme}://localhost:{hub.port}/cdn/{sha}/{quote(file_path)}?sig=secret"
                    req.status = 302
                    self.send_response(302)
                    for key, value in {**headers, "Location": location}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            self._body(req, file_path, repo.files[file_path], headers, head)

        def _cdn(self, req: Request, path: str, head: bool) -> None:
            sha = path.split("/")[2]
            for repo in hub.repos.values():
                for name, data in repo.files.items():
                    if hashlib.sha256(data).hexdigest() == sha:
                        self._body(req, name, data, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"}, head)
                        return
            self._error(req, 404, "EntryNotFound", head)

        def _body(self, req: Request, name: str, data: bytes, headers: dict[str, str], head: bool) -> None:
            if not hub.send_etag:
                headers = {k: v for k, v in headers.items() if k not in ("ETag", "X-Linked-Etag")}
            hold = None if head else hub.holds.get(name)
            if hold is not None:
                hold.wait()
            fault = None if head else hub.take_fault(name)
            if fault and fault.status:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._send(req, fault.status, b"busy", extra)
                return
            if fault and fault.flip_at is not None:
                data = bytearray(data)
                data[fault.flip_at] ^= 0xFF
                data = bytes(data)
            if fault and fault.extra:
                data = data + fault.extra
            start, status = 0, 200
            rng = self.headers.get("range")
            if_range = self.headers.get("if-range")
            honours = hub.support_range and not (fault and fault.ignore_range)
            if (
                rng
                and honours
                and rng.startswith("bytes=")
                and (if_range is None or if_range == headers.get("ETag"))
            ):
                first, _, last = rng[6:].partition("-")
                start = int(first) if first.isdigit() else 0
                start = max(0, start + (fault.range_shift if fault else 0))
                if start >= len(data):
                    self._send(req, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                end = min(int(last) + 1, len(data)) if last.isdigit() else len(data)
                status = 206
                total = len(data) + (fault.total_delta if fault else 0)
                headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{total}"}
                data = data[:end]
            body = memoryview(data)[start:]
            length = len(body) + (fault.length_delta if fault else 0)
            req.status = status
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(max(length, 0)))
            self.end_headers()
            if head:
                return
            if fault and fault.length_delta < 0:
                body = body[: max(length, 0)]
            sent = 0
            while sent < len(body):
                piece = body[sent : sent + hub.chunk]
                if fault and fault.cut_after is not None and sent + len(piece) > fault.cut_after:
                    piece = piece[: max(0, fault.cut_after - sent)]
                    self.wfile.write(piece)
                    req.body_bytes += len(piece)
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault and fault.trickle_after is not None and sent >= fault.trickle_after:
                    piece = piece[:1]
                    time.sleep(fault.trickle)
                if fault and fault.stall_after is not None and sent >= fault.stall_after:
                    time.sleep(fault.stall)
                    fault.stall_after = None
                self.wfile.write(piece)
                sent += len(piece)
                req.body_bytes += len(piece)
                if hub.delay:
                    time.sleep(hub.delay)

    return Handler


# --------------------------------------------------------------------------- realistic files


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]], seed: int = 0) -> bytes:
    """A valid safetensors file: 8-byte header length, JSON header, then the tensors' data."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "F64": 8}
    rng = random.Random(seed)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data = bytearray()
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += rng.randbytes(n)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


def gguf_bytes(tensors: dict[str, list[int]], seed: int = 0) -> bytes:
    """A valid GGUF v3 file with F32 tensors, one string metadata key, 32-byte alignment."""

    def string(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    rng = random.Random(seed)
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 1))
    out += string("general.architecture") + struct.pack("<I", 8) + string("test")
    offset = 0
    blobs = []
    for name, shape in tensors.items():
        n = 4
        for dim in shape:
            n *= dim
        out += string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", 0, offset)
        blob = rng.randbytes(n)
        blobs.append(blob + b"\0" * (-len(blob) % 32))
        offset += len(blobs[-1])
    out += b"\0" * (-len(out) % 32)
    for blob in blobs:
        out += blob
    return bytes(out)


def model_files(big_mb: int = 3, seed: int = 1) -> dict[str, bytes]:
    """A small model repo: JSON configs, a tokenizer, safetensors, a GGUF and one multi-MB binary."""
    rng = random.Random(seed)
    return {
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.gguf filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"# test model\n",
        "config.json": json.dumps({"model_type": "test", "hidden_size": 16, "seed": seed}).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "vocab": {f"t{i}": i for i in range(200)}}).encode(),
        "model.safetensors": safetensors_bytes(
            {"embed.weight": ("F32", [64, 16]), "lm_head.weight": ("F16", [16, 64])}, seed
        ),
        "model-q4.gguf": gguf_bytes({"token_embd.weight": [16, 32], "output.weight": [32, 8]}, seed),
        "weights/big.bin": rng.randbytes(big_mb * 1024 * 1024),
    }
