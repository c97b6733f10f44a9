"""The Hub side: the only module that imports huggingface_hub.

It resolves a revision to a commit and lists the commit's files with sizes and hashes, so that
HF_ENDPOINT, HF_TOKEN / `hf auth login` and proxies keep the meaning huggingface_hub gives them,
and it turns huggingface_hub's exceptions into ours. huggingface_hub is imported inside the
functions: `modelctl --help` and `modelctl list` must not pay ~200 ms for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from modelctl.errors import ConfigurationError, DownloadError, MissingModelError, ModelctlError

DEFAULT_ENDPOINT = "https://huggingface.co"
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFile:
    """A file of a commit, as the Hub lists it."""

    path: str
    size: int
    blob_id: str  # git blob sha1 of the content (of the pointer file for LFS files)
    sha256: str | None  # LFS files: sha256 of the content

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class Snapshot:
    """A repo at one commit: what `download` will fetch from."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]
    endpoint: str | None = None  # where the metadata came from (None: from disk or models.lock)


@dataclass(frozen=True)
class HubAccess:
    """Where the Hub is (an ordered list: a mirror first, say) and who we are; resolved once."""

    endpoints: tuple[str, ...]
    token: str | None = None
    timeout: float = 30.0

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    def starting_with(self, endpoint: str) -> HubAccess:
        """The same endpoints, `endpoint` first (the one that answered the metadata)."""
        rest = tuple(e for e in self.endpoints if e != endpoint)
        return HubAccess((endpoint, *rest), self.token, self.timeout)

    def file_urls(self, repo_id: str, commit: str, path: str) -> tuple[str, ...]:
        """The resolve URL of one file at each endpoint, in order."""
        from huggingface_hub import hf_hub_url

        return tuple(hf_hub_url(repo_id, path, revision=commit, endpoint=e) for e in self.endpoints)

    def headers_for(self, url: str) -> dict[str, str]:
        """Headers for a file request: the token only goes to a configured endpoint's host."""
        headers = {"user-agent": "modelctl", "accept-encoding": "identity"}
        if self.token and urlsplit(url).netloc in {urlsplit(e).netloc for e in self.endpoints}:
            headers["authorization"] = f"Bearer {self.token}"
        return headers

    def __repr__(self) -> str:  # never show the token, even in a debug traceback
        return f"HubAccess(endpoints={self.endpoints!r}, token={'***' if self.token else None})"


def hub_access(
    endpoints: Sequence[str] = (),
    token: str | None = None,
    timeout: float = 30.0,
    *,
    registry_endpoints: Sequence[str] = (),
) -> HubAccess:
    """Endpoints: --endpoint (repeatable) > HF_ENDPOINT > the registry's `endpoints:` > huggingface.co.

    Token: --token > HF_TOKEN > huggingface_hub's stored login.
    """
    env = os.environ.get("HF_ENDPOINT")
    chosen = tuple(endpoints) or ((env,) if env else tuple(registry_endpoints)) or (DEFAULT_ENDPOINT,)
    chosen = tuple(dict.fromkeys(e.rstrip("/") for e in chosen))
    for endpoint in chosen:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"Endpoint {endpoint!r} is not an http(s) URL.",
                hint="Pass --endpoint https://host[:port] or set HF_ENDPOINT to one.",
            )
    if token is None:
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or _stored_token()
    return HubAccess(endpoints=chosen, token=token or None, timeout=timeout)


def _stored_token() -> str | None:
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # a broken token file or OIDC setup must not stop public downloads
        return None


def fetch_snapshot(access: HubAccess, repo_id: str, revision: str, *, command: str) -> Snapshot:
    """Resolve revision → commit and list its files, failing over along the endpoints.

    An endpoint that refuses the connection, times out or answers 5xx is skipped for the next;
    an answer (even "not found") from a working endpoint is final.
    """
    failures: list[str] = []
    for index, endpoint in enumerate(access.endpoints):
        try:
            return _fetch_from(endpoint, access, repo_id, revision, command=command)
        except DownloadError as err:
            if not err.is_retryable or index == len(access.endpoints) - 1:
                if failures:
                    err.message += "\nEarlier endpoints failed too: " + "; ".join(failures)
                raise
            failures.append(f"{endpoint}: {err.message}")
    raise AssertionError("unreachable: at least one endpoint")


def _fetch_from(endpoint: str, access: HubAccess, repo_id: str, revision: str, *, command: str) -> Snapshot:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=endpoint, token=access.token or False)
    with translate_errors(
        repo_id, revision, command=command, endpoint=endpoint, has_token=bool(access.token)
    ):
        info = api.model_info(repo_id, revision=revision, timeout=access.timeout)
        commit = info.sha or ""
        if not _SHA1_RE.match(commit):
            raise DownloadError(
                f"The Hub at {endpoint} answered revision '{revision}' of {repo_id} "
                f"without a commit id (got {commit!r}).",
                hint="Check that HF_ENDPOINT points at a Hugging Face Hub or a mirror of it.",
            )
        entries = api.list_repo_tree(repo_id, revision=commit, recursive=True)
        files = [_remote_file(repo_id, e) for e in entries if isinstance(e, RepoFile)]
    return Snapshot(repo_id, revision, commit, tuple(sorted(files, key=lambda f: f.path)), endpoint)


def _remote_file(repo_id: str, entry: Any) -> RemoteFile:
    sha256 = entry.lfs.sha256 if entry.lfs is not None else None
    if sha256 is not None and not _SHA256_RE.match(str(sha256)):
        raise DownloadError(f"The Hub listed {repo_id}/{entry.path} with a malformed sha256 {sha256!r}.")
    return RemoteFile(path=str(entry.path), size=int(entry.size), blob_id=str(entry.blob_id), sha256=sha256)


@contextmanager
def translate_errors(
    repo_id: str, revision: str, *, command: str, endpoint: str, has_token: bool
) -> Iterator[None]:
    """Turn huggingface_hub and HTTP-client errors into ModelctlErrors with a next step."""
    from huggingface_hub import errors as hf

    try:
        yield
    except ModelctlError:
        raise
    except hf.GatedRepoError as err:
        raise DownloadError(
            f"{repo_id} is gated: your token has no access to it (HTTP {_status(err)}).",
            hint=f"Accept the terms on the repo's page, then run `{command} --token hf_...` "
            "or `hf auth login`.",
        ) from err
    except hf.RepositoryNotFoundError as err:
        token_hint = "" if has_token else f", or run `{command} --token hf_...` if it is private"
        raise MissingModelError(
            f"Repository {repo_id} was not found at {endpoint} (HTTP {_status(err)}).",
            hint=f"Check repo_id in the registry{token_hint}.",
        ) from err
    except hf.RevisionNotFoundError as err:
        raise MissingModelError(
            f"Revision '{revision}' of {repo_id} was not found at {endpoint}.",
            hint="Check `revision:` in the registry, or pass --revision with a branch, tag or commit.",
        ) from err
    except hf.RemoteEntryNotFoundError as err:
        raise MissingModelError(f"{repo_id}@{revision}: {err}") from err
    except hf.OfflineModeIsEnabled as err:
        raise DownloadError(
            f"huggingface_hub is in offline mode and cannot reach {endpoint}.",
            hint=f"Run `HF_HUB_OFFLINE=0 {command}`.",
        ) from err
    except hf.HfHubHTTPError as err:
        status = _status(err)
        raise DownloadError(
            f"The Hub at {endpoint} answered HTTP {status} for {repo_id}@{revision}.",
            hint="Try again later; if it persists, check HF_ENDPOINT and your token.",
            is_retryable=status in ("408", "429") or status.startswith("5"),
        ) from err
    except Exception as err:
        # Connection refused, DNS, TLS, timeouts: huggingface_hub lets its HTTP client's errors
        # through, and httpx2's do not derive from OSError, so they are recognised by module.
        if not isinstance(err, (OSError, ValueError)) and not type(err).__module__.startswith("httpx"):
            raise
        raise DownloadError(
            f"Cannot reach the Hub at {endpoint} for {repo_id}: {_describe(err)}",
            hint=f"Check the network and HF_ENDPOINT; to use only what is on disk run `{command} --offline`.",
            is_retryable=True,
        ) from err


def _status(err: Any) -> str:
    response = getattr(err, "response", None)
    return str(getattr(response, "status_code", "?"))


def _describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def call_with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    on_retry: Callable[[int, float, str], None],
    sleep: Callable[[float], None],
) -> T:
    """Retry a metadata call on DownloadError (network, 5xx) with exponential backoff."""
    from modelctl.transfer import backoff_delay

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except DownloadError as err:
            if attempt == attempts or not err.is_retryable:
                raise
            delay = backoff_delay(attempt)
            on_retry(attempt, delay, err.message)
            sleep(delay)
    raise AssertionError("unreachable")
