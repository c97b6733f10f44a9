"""The Hub side: the only module that imports huggingface_hub.

It resolves a revision to a commit and lists the commit's files with sizes and hashes, so that
HF_ENDPOINT, HF_TOKEN / `hf auth login` and proxies keep the meaning huggingface_hub gives them,
and it turns huggingface_hub's exceptions into ours. huggingface_hub is imported inside the
functions: `modelctl --help` and `modelctl list` must not pay ~200 ms for it.

Every metadata request goes through `_get`: huggingface_hub's HTTP session (its proxies, offline
mode, user agent) and error classes, but our timeout, no retries of its own (retry.py has the one
retry loop; `retry_reason` tells it which failures are worth another attempt) and the token only
for a host that `HubAccess.token_for` allows.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from modelctl.core.errors import (
    ConfigurationError,
    DownloadError,
    MissingModelError,
    ModelctlError,
    Step,
    describe_error,
    in_chain,
    option,
)
from modelctl.core.logs import redact
from modelctl.core.record import RepoFile, Snapshot
from modelctl.core.retry import MIN_SPEED, retry_for_status
from modelctl.net import tls

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_REDIRECTS = 5
MAX_TREE_PAGES = 1000  # the Hub pages 1000 entries: a million files; more is a server looping on us
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@contextmanager
def _quiet_import() -> Iterator[None]:
    """Import huggingface_hub without its FutureWarning that HF_HUB_ENABLE_HF_TRANSFER is deprecated:
    modelctl accepts that variable (its own engine splits files; `doctor` says so)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HF_HUB_ENABLE_HF_TRANSFER", category=FutureWarning)
        yield


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (default port filled in): what the token is bound to."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed port or IPv6 literal matches no endpoint
        return ("", url, None)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


@dataclass(frozen=True)
class HubAccess:
    """Where the Hub is (an ordered list: a mirror first, say) and who we are; resolved once."""

    endpoints: tuple[str, ...]
    token: str | None = None
    timeout: float = 30.0
    token_endpoints: tuple[str, ...] = ()  # the endpoints whose scheme+host+port may get the token

    def starting_with(self, endpoint: str) -> HubAccess:
        """The same endpoints, `endpoint` first (the one that answered the metadata)."""
        rest = tuple(e for e in self.endpoints if e != endpoint)
        return replace(self, endpoints=(endpoint, *rest))

    def token_for(self, url: str) -> str | None:
        """The token if `url` is on the scheme, host and port of an endpoint allowed it, else None."""
        if self.token and origin(url) in {origin(e) for e in self.token_endpoints}:
            return self.token
        return None

    def file_urls(self, repo_id: str, commit: str, path: str) -> tuple[str, ...]:
        """The resolve URL of one file at each endpoint, in order."""
        with _quiet_import():
            from huggingface_hub import hf_hub_url

        return tuple(hf_hub_url(repo_id, path, revision=commit, endpoint=e) for e in self.endpoints)

    def headers_for(self, url: str) -> dict[str, str]:
        """Headers for a file request (each redirect hop asks again): the token as `token_for` says."""
        headers = {"user-agent": "modelctl", "accept-encoding": "identity"}
        token = self.token_for(url)
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def __repr__(self) -> str:  # never show the token, even in a debug traceback
        token = "***" if self.token else None
        return f"HubAccess(endpoints={self.endpoints!r}, token={token}, token_endpoints={self.token_endpoints!r})"


def hub_access(
    endpoints: Sequence[str] = (),
    token: str | None = None,
    timeout: float = 30.0,
    *,
    registry_endpoints: Sequence[tuple[str, bool]] = (),
) -> HubAccess:
    """Endpoints: --endpoint (repeatable) > HF_ENDPOINT > the registry's `endpoints:` > huggingface.co.

    Token: --token > HF_TOKEN > huggingface_hub's stored login. It goes to endpoints named by
    --endpoint or HF_ENDPOINT, to huggingface.co, and to registry endpoints that allow it: each
    is (url, is_token_sent), registry.py's `Endpoint` (`token:`, default true only for https
    huggingface.co hosts).
    """
    env = os.environ.get("HF_ENDPOINT")
    explicit = tuple(endpoints) or ((env,) if env else ())
    pairs = [(e, True) for e in explicit] or list(registry_endpoints) or [(DEFAULT_ENDPOINT, True)]
    sends: dict[str, bool] = {}
    for url, is_token_sent in pairs:
        sends.setdefault(url.rstrip("/"), bool(is_token_sent))  # a repeated URL: its first entry
    chosen = tuple(sends)
    for endpoint in chosen:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"Endpoint {endpoint!r} is not an http(s) URL.",
                hint="Pass {0} or set HF_ENDPOINT to one.",
                steps=(option("endpoint", "https://host[:port]"),),
                api_hint="Pass endpoint='https://host[:port]' to ModelManager.from_config, or set HF_ENDPOINT.",
            )
    if token is None:
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or _stored_token()
    return HubAccess(chosen, token or None, timeout, tuple(e for e in chosen if sends[e]))


def _stored_token() -> str | None:
    with _quiet_import():
        from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # a broken token file or OIDC setup must not stop public downloads
        return None


def fetch_snapshot(access: HubAccess, repo_id: str, revision: str, *, command: Step) -> Snapshot:
    """Resolve revision → commit and list its files, failing over along the endpoints.

    An endpoint that refuses the connection, does not resolve, times out or answers 5xx is
    skipped for the next; an answer (even "not found") from a working endpoint is final.
    """
    failures: list[str] = []
    for index, endpoint in enumerate(access.endpoints):
        try:
            return _fetch_from(endpoint, access, repo_id, revision, command=command)
        except DownloadError as err:
            skip = err.is_retryable or _is_unresolved(err)
            if not skip or index == len(access.endpoints) - 1:
                if failures:
                    err.message += "\nEarlier endpoints failed too: " + "; ".join(failures)
                raise
            failures.append(f"{endpoint}: {err.message}")
    raise AssertionError("unreachable: at least one endpoint")


def _fetch_from(endpoint: str, access: HubAccess, repo_id: str, revision: str, *, command: Step) -> Snapshot:
    """model_info's commit, then the commit's tree, as HfApi asks for them (same URLs)."""
    with translate_errors(
        repo_id,
        revision,
        command=command,
        endpoint=endpoint,
        has_token=bool(access.token_for(endpoint)),
        is_token_withheld=bool(access.token) and not access.token_for(endpoint),
    ):
        info = _json(_get(access, f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"))
        commit = info.get("sha") if isinstance(info, dict) else None
        if not isinstance(commit, str) or not _SHA1_RE.match(commit):
            raise DownloadError(
                f"The Hub at {endpoint} answered revision '{revision}' of {repo_id} "
                f"without a commit id (got {commit!r}).",
                hint="Check that HF_ENDPOINT points at a Hugging Face Hub or a mirror of it.",
            )
        files = _list_tree(access, endpoint, repo_id, commit)
    return Snapshot(repo_id, revision, commit, tuple(sorted(files, key=lambda f: f.path)), endpoint)


def _list_tree(access: HubAccess, endpoint: str, repo_id: str, commit: str) -> list[RepoFile]:
    """Every file of the commit, following the tree's `Link: <…>; rel="next"` pages.

    We page ourselves instead of calling HfApi.list_repo_tree: that follows a `next` link to any
    host with the same Authorization header, wraps each page in http_backoff (up to 5 retries of
    its own, ~23 s against a 500) and passes no timeout, and none of the three can be switched
    off through its arguments. A next page on another scheme, host or port than the endpoint's
    is refused rather than fetched without the token: the real Hub pages on its own host, so such
    a link is a misconfigured mirror or proxy the user should hear about, and a silently
    token-less page would fail later as a confusing "not found" for a private repo.
    """
    url: str | None = (
        f"{endpoint}/api/models/{repo_id}/tree/{quote(commit, safe='')}?recursive=true&expand=false"
    )
    seen: set[str] = set()
    files: list[RepoFile] = []
    while url is not None:
        if url in seen or len(seen) >= MAX_TREE_PAGES:
            raise DownloadError(
                f"The Hub at {endpoint} keeps paging the file listing of {repo_id}@{commit[:12]} "
                f"({len(seen)} pages, back to {_redact(url)}).",
                hint="Check that the endpoint is a Hugging Face Hub or a mirror of it.",
            )
        seen.add(url)
        response = _get(access, url)
        entries = _json(response)
        if not isinstance(entries, list):
            raise DownloadError(
                f"The Hub at {endpoint} answered the file listing of {repo_id}@{commit[:12]} "
                f"with {type(entries).__name__}, not a list.",
                hint="Check that the endpoint is a Hugging Face Hub or a mirror of it.",
            )
        files += [
            _remote_file(repo_id, e) for e in entries if not isinstance(e, dict) or e.get("type") == "file"
        ]
        link = response.links.get("next", {}).get("url")
        url = urljoin(str(response.url), link) if link else None
        if url is not None and origin(url) != origin(endpoint):
            raise DownloadError(
                f"The Hub at {endpoint} sent the next page of the file listing of {repo_id} to "
                f"another host ({_site(url)}); modelctl follows pages only on the endpoint's own "
                "scheme, host and port, so that the token never leaves it.",
                hint="The endpoint (a mirror or proxy?) must page on its own URL: fix its public "
                "URL setting, or use another endpoint.",
            )
    return files


def _get(access: HubAccess, url: str) -> Any:
    """GET one metadata URL: no retries, our timeout, the token per hop (redirects are ours too)."""
    with _quiet_import():
        from huggingface_hub import hf_raise_for_status

    session = _session()
    for _ in range(MAX_REDIRECTS + 1):
        headers = access.headers_for(url)  # the one place that decides where the token goes
        del headers["accept-encoding"]  # JSON may come compressed; file bytes may not
        request = session.build_request("GET", url, headers=headers, timeout=access.timeout)
        try:
            response = session.send(request, stream=True, follow_redirects=False)
        except Exception as err:  # the HTTP client's own classes: recognised by what they wrap
            ours = _connection_error(err, url)
            if ours is None:
                raise
            raise ours from err
        if response.has_redirect_location:
            response.close()
            url = urljoin(str(response.url), response.headers["location"])
            continue
        response.stream = _watched(response.stream, _site(url), access.timeout)
        response.read()  # closes the response
        hf_raise_for_status(response)
        return response
    raise DownloadError(f"More than {MAX_REDIRECTS} redirects for {_redact(url)}.")


def _watched(stream: Any, site: str, window: float) -> Any:
    """The body `stream` cut with a retryable DownloadError once it is slower than MIN_SPEED.

    The read timeout bounds only the wait for each piece; a listing that trickles a byte a
    second would keep the run forever. The rule is the engine's for file bytes: fewer than
    MIN_SPEED·window bytes in a window of --timeout seconds. httpx2 has no such setting, so the
    response's stream is wrapped (a SyncByteStream is what Response.stream is documented to be).
    """
    with _quiet_import():
        from httpx2 import SyncByteStream

    class Watched(SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            since, count = time.monotonic(), 0
            for piece in stream:
                count += len(piece)
                now = time.monotonic()
                if now - since >= window:
                    if count < MIN_SPEED * window:
                        raise DownloadError(
                            f"The Hub's answer was too slow: {count} bytes in {now - since:.0f} s "
                            f"from {site} (less than {MIN_SPEED} bytes a second).",
                            hint="Check the network or the endpoint; another endpoint or a later "
                            "run may be faster.",
                            is_retryable=True,
                        )
                    since, count = now, 0
                yield piece

        def close(self) -> None:
            stream.close()

    return Watched()


_CLIENT_LOCK = threading.Lock()
_client: tuple[tuple[Any, ...], Any] | None = None  # (the environment it was made for, the client)


def _session() -> Any:
    """huggingface_hub's HTTP session, or, when a CA variable is set, one like it trusting those CAs.

    huggingface_hub's client (httpx2) reads only SSL_CERT_FILE / SSL_CERT_DIR, and the file first;
    tls.py's order (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, then those) must hold for metadata as for
    file bytes. The client is built as get_session()'s is (its class, event hooks: offline mode,
    request ids) with `verify=tls.ssl_context()`, and kept while the trust and proxy variables are
    unchanged (a client reads the proxy variables when made). huggingface_hub's own global session,
    which an embedding program may have configured with set_client_factory, is left alone.
    """
    with _quiet_import():
        from huggingface_hub import get_session

    global _client
    base = get_session()
    if not tls.is_configured():
        return base
    key = (tls.trust_settings(), *(os.environ.get(v) for v in _PROXY_VARIABLES))
    with _CLIENT_LOCK:
        if _client is None or _client[0] != key:
            client = type(base)(
                verify=tls.ssl_context(),
                event_hooks=base.event_hooks,
                follow_redirects=base.follow_redirects,
                timeout=None,
            )
            if _client is not None:  # the environment changed (tests do this): the old one is done
                _client[1].close()
            _client = (key, client)
        return _client[1]


_PROXY_VARIABLES = tuple(
    v for name in ("https_proxy", "http_proxy", "all_proxy", "no_proxy") for v in (name, name.upper())
)


def _connection_error(err: Exception, url: str) -> ModelctlError | None:
    """A certificate failure or a proxy asking for credentials, as ours; None for any other error."""
    if tls.find_certificate_error(err) is not None:
        return tls.certificate_error(err, url)
    if type(err).__name__ == "ProxyError" and str(err).startswith("407"):  # httpx's CONNECT refused
        value = next((os.environ[v] for v in _PROXY_VARIABLES[:2] if os.environ.get(v)), "")
        proxy = urlsplit(value if "://" in value else f"http://{value}")
        shown = f"{proxy.hostname}:{proxy.port}" if proxy.port else (proxy.hostname or "of HTTPS_PROXY")
        return tls.proxy_auth_error(shown, _site(url), has_credentials=proxy.username is not None)
    return None


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError as err:
        raise DownloadError(
            f"{_redact(str(response.url))} answered HTTP {response.status_code} with something "
            f"that is not JSON ({response.headers.get('content-type', 'no content type')}).",
            hint="Check that HF_ENDPOINT points at a Hugging Face Hub or a mirror of it, not a login page.",
        ) from err


def _remote_file(repo_id: str, entry: Mapping[str, Any]) -> RepoFile:
    """One `type: file` entry of the tree JSON (the fields HfApi's RepoFile reads)."""
    try:
        path, size, blob_id, lfs = entry["path"], entry["size"], entry["oid"], entry.get("lfs")
        sha256 = lfs["oid"] if lfs is not None else None
    except (KeyError, TypeError, AttributeError) as err:
        raise DownloadError(f"The Hub listed a malformed entry for {repo_id}: {str(entry)[:200]}") from err
    if not isinstance(path, str) or type(size) is not int or size < 0 or not isinstance(blob_id, str):
        raise DownloadError(
            f"The Hub listed {repo_id}/{path} with a malformed size or id: {str(entry)[:200]}"
        )
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256_RE.match(sha256)):
        raise DownloadError(f"The Hub listed {repo_id}/{path} with a malformed sha256 {sha256!r}.")
    return RepoFile(path=path, size=size, blob_id=blob_id, sha256=sha256)


def _site(url: str) -> str:
    """scheme://host[:port] of a URL, for messages (no path, query or credentials)."""
    scheme, host, port = origin(url)
    default = _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def _redact(url: str) -> str:
    return redact(url.split("?")[0])


def _is_unresolved(err: BaseException) -> bool:
    """Whether a DNS lookup failed somewhere in the exception's chain (no retry helps)."""
    return in_chain(err, socket.gaierror) is not None


def _token_words(
    command: Step, endpoint: str, has_token: bool, is_token_withheld: bool
) -> tuple[str, tuple[Step, ...], str]:
    """What a "not found" hint adds about the token: its words, their steps, the API's words."""
    if is_token_withheld:  # a registry mirror without `token: true`
        words = (
            f"; the token is not sent to {endpoint}: give it `token: true` under `endpoints:` if it should be"
        )
        return words, (), ""
    if has_token:
        return "", (), ""
    api_words = ", or pass token='hf_...' to ModelManager.from_config if it is private"
    return ", or run {0} if it is private", (command.adding("token hf_..."),), api_words


@contextmanager
def translate_errors(
    repo_id: str,
    revision: str,
    *,
    command: Step,
    endpoint: str,
    has_token: bool,
    is_token_withheld: bool = False,
) -> Iterator[None]:
    """Turn huggingface_hub and HTTP-client errors into ModelctlErrors with a next step."""
    with _quiet_import():
        from huggingface_hub import errors as hf

    token_hint, token_steps, api_token_hint = _token_words(command, endpoint, has_token, is_token_withheld)
    try:
        yield
    except ModelctlError:
        raise
    except hf.GatedRepoError as err:
        if is_token_withheld:
            raise DownloadError(
                f"{repo_id} is gated at {endpoint}, and the token is not sent there (HTTP {_status(err)}).",
                hint="Give that endpoint `token: true` under `endpoints:` in the registry if it should get it.",
            ) from err
        raise DownloadError(
            f"{repo_id} is gated: your token has no access to it (HTTP {_status(err)}).",
            hint="Accept the terms on the repo's page, then run {0} or `hf auth login`.",
            steps=(command.adding("token hf_..."),),
            api_hint="Accept the terms on the repo's page, then pass token='hf_...' to "
            "ModelManager.from_config (or set HF_TOKEN, or `hf auth login`).",
        ) from err
    except hf.RepositoryNotFoundError as err:
        raise MissingModelError(
            f"Repository {repo_id} was not found at {endpoint} (HTTP {_status(err)}).",
            hint=f"Check repo_id in the registry{token_hint}.",
            steps=token_steps,
            api_hint=None if is_token_withheld else f"Check repo_id in the registry{api_token_hint}.",
        ) from err
    except hf.RevisionNotFoundError as err:
        raise MissingModelError(
            f"Revision '{revision}' of {repo_id} was not found at {endpoint}.",
            hint="Check `revision:` in the registry, or pass {0} with a branch, tag or commit.",
            steps=(option("revision"),),
            api_hint="Check `revision:` of the model in the registry (a branch, tag or commit).",
        ) from err
    except hf.RemoteEntryNotFoundError as err:
        raise MissingModelError(f"{repo_id}@{revision}: {err}") from err
    except hf.OfflineModeIsEnabled as err:
        raise DownloadError(
            f"huggingface_hub is in offline mode and cannot reach {endpoint}.",
            hint="Run {0}.",
            steps=(command._replace(env="HF_HUB_OFFLINE=0"),),
            api_hint="Unset HF_HUB_OFFLINE (or set it to 0) before huggingface_hub is imported.",
        ) from err
    except hf.HfHubHTTPError as err:
        api_hint = None if is_token_withheld else api_token_hint
        raise _answer_error(err, repo_id, revision, endpoint, (token_hint, token_steps), api_hint) from err
    except Exception as err:
        # Connection refused, DNS, TLS, timeouts: huggingface_hub lets its HTTP client's errors
        # through, and httpx2's do not derive from OSError, so they are recognised by module.
        if not isinstance(err, (OSError, ValueError)) and not type(err).__module__.startswith("httpx"):
            raise
        if _is_unresolved(err):  # retrying a name that does not resolve only adds minutes
            raise DownloadError(
                f"The Hub's host {urlsplit(endpoint).hostname} ({endpoint}) does not resolve: "
                f"{describe_error(err)}",
                hint="Check the endpoint's spelling ({0}, HF_ENDPOINT or `endpoints:` in the "
                "registry) and the machine's DNS.",
                steps=(option("endpoint"),),
                api_hint="Check the endpoint's spelling (endpoint= of ModelManager.from_config, HF_ENDPOINT "
                "or `endpoints:` in the registry) and the machine's DNS.",
            ) from err
        raise DownloadError(
            f"Cannot reach the Hub at {endpoint} for {repo_id}: {describe_error(err)}",
            hint="Check the network and HF_ENDPOINT; to use only what is on disk run {0}.",
            steps=(command.adding("offline"),),
            api_hint="Check the network and HF_ENDPOINT; to use only what is on disk pass offline=True "
            "to ModelManager.from_config.",
            is_retryable=True,
        ) from err


def _answer_error(
    err: Exception,
    repo_id: str,
    revision: str,
    endpoint: str,
    token: tuple[str, tuple[Step, ...]],
    api_token_hint: str | None,
) -> ModelctlError:
    """The error for an HTTP answer huggingface_hub names no better: a plain 404, or a status
    retry_for_status may call worth another attempt. token: the hint's words about a token and
    their steps; api_token_hint None: the CLI's hint stands."""
    status = _status(err)
    if status == "404":  # a plain 404, no X-Error-Code (a simple mirror): repo or revision unknown
        return MissingModelError(
            f"{repo_id}@{revision} was not found at {endpoint} (HTTP 404): "
            "the repository or that revision is not there.",
            hint=f"Check `repo_id:` and `revision:` of the model in the registry{token[0]}.",
            steps=token[1],
            api_hint=None
            if api_token_hint is None
            else f"Check `repo_id:` and `revision:` of the model in the registry{api_token_hint}.",
        )
    response = getattr(err, "response", None)
    headers = response.headers if response is not None else {}
    again = retry_for_status(int(status), headers.get("retry-after")) if status.isdigit() else None
    return DownloadError(
        f"The Hub at {endpoint} answered HTTP {status} for {repo_id}@{revision}.",
        hint="Try again later; if it persists, check HF_ENDPOINT and your token.",
        is_retryable=again is not None,
        retry_delay=again.delay if again is not None else None,
    )


def _status(err: Any) -> str:
    response = getattr(err, "response", None)
    return str(getattr(response, "status_code", "?"))


def retry_reason(err: Exception) -> str | None:
    """Why a metadata call is worth another attempt (retry.retry_call's retry_on), or None.

    translate_errors marks what is: 408, 429, 5xx and a Hub that cannot be reached.
    """
    return err.message if isinstance(err, DownloadError) and err.is_retryable else None
