"""HTTP for file transfers: what a file job is, connections (proxies), partial-file sidecars.

engine.py fetches the bytes (ranges over several connections, resume, hashing, atomic publish);
this module holds what it and the planner share: FileJob, the connection to a
URL through the environment's proxy, and which partial downloads can be resumed.

Written on http.client rather than huggingface_hub's download functions because those check only
the size of what they receive and restart orphaned partials from zero; and rather than httpx
(which huggingface_hub uses) because reading 1 MiB at a time with `readinto` into one reused
buffer streamed 500-750 MB/s on loopback here against 210-280 MB/s for httpx's iter_raw
(see bench/download for the side-by-side numbers).
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import ssl
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from modelctl.core.errors import DownloadError, MissingModelError, describe_error
from modelctl.core.record import FileResult
from modelctl.core.retry import Retry, RetryPolicy, retry_call, retry_for_status
from modelctl.net import tls
from modelctl.store.storage import partial_path, ranges_path, read_ranges, sidecar_path

MAX_REDIRECTS = 10

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileJob:
    """One file to fetch: where from, where to, and what its bytes must hash to."""

    urls: tuple[str, ...]  # the file at each endpoint, in order of preference
    folder: Path  # the model folder
    dest: Path
    rel_path: str
    size: int
    sha256: str | None  # LFS files: the check
    blob_id: str  # git blob sha1 (of the content for non-LFS files: the check; of the pointer for LFS)
    commit: str
    headers: Callable[[str], dict[str, str]] = field(compare=False, repr=False)


class TransferEvents(Protocol):
    """What the engine reports while it works (from worker threads); output/progress.py shows it."""

    def file_start(self, job: FileJob, offset: int) -> None: ...
    def file_advance(self, job: FileJob, nbytes: int) -> None: ...
    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None: ...
    def file_done(self, job: FileJob, result: FileResult) -> None: ...


@functools.cache
def _sync_file_range() -> Any:
    """libc's sync_file_range (Linux), or None; looked up on first use. os has no binding for it,
    hence ctypes: dlopen(NULL) gives the symbols of the running Python, libc's among them
    (ctypes.util.find_library would run `ldconfig -p` in a subprocess first)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
        fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        return fn
    except (OSError, AttributeError):
        return None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing this range now (SYNC_FILE_RANGE_WRITE does not wait).

    Without it a VM with GBs of dirty-page headroom writes nothing until the fsync before publish,
    so the whole disk write happened after the download: measured 2.4-2.9 s -> 1.5 s for 1.5 GB.
    """
    sync_file_range = _sync_file_range()
    if sync_file_range is not None:
        sync_file_range(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE


def resumable_sidecar(
    folder: Path, rel: str, size: int, sha256: str | None, blob_id: str | None
) -> dict[str, Any] | None:
    """The sidecar of rel's partial file, if it describes these very bytes and can be resumed.

    Version 1 (one stream: the partial's size is what it holds) and 2 (partial.py: the range
    log says which bytes are written) are both resumed.
    """
    try:
        meta = json.loads(sidecar_path(folder, rel).read_text(encoding="utf-8"))
        partial_size = partial_path(folder, rel).stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("version") not in (1, 2):
        return None
    same = (meta.get("path"), meta.get("size"), meta.get("sha256"), meta.get("blob_id")) == (
        rel,
        size,
        sha256,
        blob_id,
    )
    return meta if same and isinstance(meta.get("etag"), str) and partial_size <= size else None


def resumable_bytes(folder: Path, rel: str, size: int, sha256: str | None, blob_id: str | None) -> int | None:
    """Bytes of rel's partial download that a fetch would keep, or None."""
    meta = resumable_sidecar(folder, rel, size, sha256, blob_id)
    if meta is None:
        return None
    if meta.get("version") == 2:
        return sum(end - start for start, end in read_ranges(ranges_path(folder, rel), size))
    try:
        return partial_path(folder, rel).stat().st_size
    except OSError:
        return None


def connect(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for url, through the environment's proxy (HTTP(S)_PROXY, NO_PROXY) if one applies."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DownloadError(f"Refusing to fetch {safe_url(url)}: only http and https are supported.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname or "", parts.port
    proxy = urllib.request.getproxies().get(parts.scheme)
    via = (
        urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxy and not urllib.request.proxy_bypass(host)
        else None
    )
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        # tls: the CAs of REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE / SSL_CERT_FILE / SSL_CERT_DIR, and
        # certificate errors and a proxy's 407 raised as ours at connect (not retried as OSErrors)
        context: ssl.SSLContext = tls.ssl_context()
        if via is None:
            return tls.VerifiedHTTPSConnection(host, port, timeout=timeout, context=context), target
        conn = tls.VerifiedHTTPSConnection(
            via.hostname or "", via.port or 8080, timeout=timeout, context=context
        )
        tunnel_headers = {}
        auth = _basic(via)  # HTTPS_PROXY=http://user:pass@proxy:port
        if auth is not None:
            tunnel_headers["Proxy-Authorization"] = auth
        # CONNECT through the proxy (with its credentials, if any), then TLS with the host
        conn.set_tunnel(host, port or 443, tunnel_headers)
        return conn, target
    if via is None:
        return http.client.HTTPConnection(host, port, timeout=timeout), target
    conn = _ProxiedConnection(via.hostname or "", via.port or 8080, timeout=timeout)
    conn.proxy_authorization = _basic(via)
    return conn, url  # a plain-HTTP proxy takes the absolute URL


class _ProxiedConnection(http.client.HTTPConnection):
    """A connection to a plain-HTTP proxy: its credentials (if any) go with every request."""

    proxy_authorization: str | None = None

    def putrequest(
        self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False
    ) -> None:
        super().putrequest(method, url, skip_host, skip_accept_encoding)
        if self.proxy_authorization is not None:
            self.putheader("Proxy-Authorization", self.proxy_authorization)


def _basic(via: Any) -> str | None:
    """The Proxy-Authorization of a proxy URL with user:password@ (None without)."""
    if via.username is None:
        return None
    from base64 import b64encode
    from urllib.parse import unquote

    userpass = f"{unquote(via.username)}:{unquote(via.password or '')}"
    return "Basic " + b64encode(userpass.encode()).decode("ascii")


def proxy_refused(url: str) -> DownloadError:
    """A plain-HTTP proxy answered 407: its credentials are missing or wrong (not worth retrying)."""
    proxy = urllib.request.getproxies().get(urlsplit(url).scheme, "")
    via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    given = ", and rejected the ones given" if via.username is not None else ""
    return DownloadError(
        f"The proxy {host_of(proxy) if '://' in proxy else proxy} refused the request for {safe_url(url)}: "
        f"it wants credentials (HTTP 407 Proxy Authentication Required){given}.",
        hint="Put the proxy's user and password in its URL: HTTP_PROXY=http://USER:PASSWORD@host:port "
        "(percent-encode special characters), or add the host to NO_PROXY if it needs no proxy.",
    )


def plain_headers(url: str) -> dict[str, str]:
    """Headers for a URL that is not a Hub endpoint (a registry `url:` file): never the token."""
    return {"user-agent": "modelctl", "accept-encoding": "identity"}


def content_length(url: str, policy: RetryPolicy) -> int:
    """The size of the file at url, by a HEAD request (redirects followed, retried as transfers are).

    A url file whose registry entry gives no `size:` is asked this when planning: the engine
    needs the size before the first byte (disk space, resume, the record).
    """

    def attempt(number: int, target: int) -> int:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            conn, path = connect(current, policy.timeout)
            try:
                try:
                    conn.request("HEAD", path, headers=plain_headers(current))
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as err:
                    raise Retry(f"HEAD {safe_url(current)} failed: {describe_error(err, 200)}") from None
                status = resp.status
                if status in (301, 302, 303, 307, 308) and resp.getheader("location"):
                    current = urljoin(current, resp.getheader("location") or "")
                    continue
                if (again := retry_for_status(status, resp.getheader("retry-after"))) is not None:
                    raise again
                if status == 404:
                    raise MissingModelError(
                        f"{safe_url(url)} was not found (HTTP 404).",
                        hint="Check the `url:` of the model in the registry.",
                    )
                length = resp.getheader("content-length") or ""
                if status != 200 or not length.isdigit():
                    raise DownloadError(
                        f"Cannot tell the size of {safe_url(url)} (HTTP {status}, no Content-Length).",
                        hint="Give the file's size in bytes as `size:` in the registry.",
                    )
                return int(length)
            finally:
                conn.close()
        raise DownloadError(f"More than {MAX_REDIRECTS} redirects from {safe_url(url)}.")

    try:
        return retry_call(attempt, policy)
    except Retry as err:
        raise DownloadError(
            f"Cannot tell the size of {safe_url(url)}: {err.reason}.",
            hint="Check the URL and the network, or give the file's size as `size:` in the registry.",
        ) from None


def content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """Parse 'bytes FIRST-LAST/TOTAL' → (FIRST, LAST, TOTAL); None where absent or '*'."""
    if not value or not value.startswith("bytes "):
        return None, None, None
    span, _, total = value[6:].partition("/")
    first, _, last = span.partition("-")
    return (
        int(first) if first.isdigit() else None,
        int(last) if last.isdigit() else None,
        int(total) if total.isdigit() else None,
    )


def host_of(url: str) -> str:
    """host[:port] of a URL, for messages and reports: never its user or password."""
    return urlsplit(url).netloc.rpartition("@")[2]


def safe_url(url: str) -> str:
    """A URL fit for messages: no query string (signed URLs carry credentials there), no userinfo."""
    parts = urlsplit(url.split("?", 1)[0])
    return parts._replace(netloc=host_of(url)).geturl() if "@" in parts.netloc else parts.geturl()
