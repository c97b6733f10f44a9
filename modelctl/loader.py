"""ModelLoader: load models in a service, repair them when loading shows corruption, report health.

A service's model loader, generalised: each registered model is ensured (verified, repaired) before
its loader runs; when a loader raises an error that looks like corruption, the model's files are
verified again without the cache and repaired, and the load is retried with backoff. Other errors
are retried `retries` times in all, then reported.

    loader = ModelLoader()                       # or ModelLoader(ModelManager.from_config(...))
    loader.register("llm", model="qwen25-omni-3b-gguf", loader=load_gguf, loader_kwargs={"n_ctx": 2048})
    loader.register("vocab", path="assets/vocab.json", loader=load_json, required=False)
    loader.load_all()
    llm = loader.get("llm")
    loader.health()   # {"status": "healthy" | "degraded" | "unhealthy", ...}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelctl.errors import BadChecksumError, ConfigurationError, MissingModelError, ModelctlError
from modelctl.hashing import ALGORITHMS, hash_file, parse_checksum
from modelctl.retry import BACKOFF_BASE, Retry, RetryPolicy, backoff_delay, retry_call

# Substrings (lower case) of loader errors that mean "the file is damaged", not "the code is wrong".
# Extend per loader with register(..., corruption_patterns=[...]) or globally by appending here.
CORRUPTION_PATTERNS: list[str] = [
    "safetensor",  # safetensors_rust.SafetensorError: header, offsets, incomplete buffer
    "header too large",
    "invalid header",
    "incomplete metadata",
    "unexpected eof",
    "unexpected end",
    "invalid load key",  # pickle / torch.load on a damaged file
    "truncated",
    "corrupt",
    "bad magic",
    "invalid magic",
    "not a gguf",
    "failed to load model",  # llama.cpp's message for an unreadable GGUF
    "expecting value",  # json.JSONDecodeError on an empty or cut file
    "unterminated string",
    "invalid utf-8",
    "crc",
]

PENDING, LOADED, FAILED = "pending", "loaded", "failed"
_NAMES = sorted(ALGORITHMS)
_ALGOS_TEXT = f"{', '.join(_NAMES[:-1])} or {_NAMES[-1]}"  # "md5, sha1 or sha256"


class ModelLoadError(ModelctlError):
    """A registered model is not available: not loaded yet, or its loader failed."""


class _Stopped(Exception):
    """The loader raised SystemExit or the like: it meant to stop, so it is not retried."""


@dataclass
class _Entry:
    name: str
    model: str | None
    path: Path | None
    loader: Callable[..., Any]
    required: bool
    retries: int
    loader_kwargs: dict[str, Any]
    checksum: str | None
    patterns: tuple[str, ...]
    status: str = PENDING
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 0
    repairs: int = 0


@dataclass
class ModelLoader:
    """Register models with their loader functions; load them (in parallel); report health."""

    manager: Any = None  # a ModelManager; made from the default registry when first needed
    backoff_base: float = BACKOFF_BASE
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(
        self,
        name: str,
        *,
        loader: Callable[..., Any],
        model: str | None = None,
        path: str | Path | None = None,
        required: bool = True,
        retries: int = 1,
        loader_kwargs: Mapping[str, Any] | None = None,
        checksum: str | None = None,
        corruption_patterns: list[str] | None = None,
    ) -> None:
        """Register `name`: a registry model id (model=) or a file/folder (path=), and its loader.

        loader(path, **loader_kwargs) returns the loaded object. retries: attempts in all (>= 1).
        checksum: "sha256:<hex>" (or another algorithm of hashing.ALGORITHMS) of a path= file,
        checked before loading.
        """
        if (model is None) == (path is None):
            raise ConfigurationError(f"{name}: give exactly one of model= (a registry id) or path=.")
        if checksum is not None and parse_checksum(checksum) is None:
            raise ConfigurationError(f"{name}: checksum {checksum!r} is not algo:hex ({_ALGOS_TEXT}).")
        if checksum is not None and path is not None and Path(path).is_dir():
            raise _checksum_on_directory(name, Path(path))
        if name in self._entries:
            raise ConfigurationError(f"{name} is already registered.")
        self._entries[name] = _Entry(
            name,
            model,
            Path(path) if path is not None else None,
            loader,
            required,
            max(1, retries),
            dict(loader_kwargs or {}),
            checksum,
            tuple(p.lower() for p in [*CORRUPTION_PATTERNS, *(corruption_patterns or [])]),
        )

    def load_all(self, parallel: bool = True, max_workers: int | None = None) -> dict[str, bool]:
        """Load every registered model; return {name: loaded}. Never raises for a failed load."""
        entries = list(self._entries.values())
        if parallel and len(entries) > 1:
            with ThreadPoolExecutor(max_workers=max_workers or min(4, len(entries))) as pool:
                list(pool.map(self._load, entries))
        else:
            for entry in entries:
                self._load(entry)
        return {e.name: e.status == LOADED for e in entries}

    def get(self, name: str) -> Any:
        """The loaded object; ModelLoadError naming the status and the load error otherwise."""
        entry = self._entries.get(name)
        if entry is None:
            raise MissingModelError(
                f"No model named {name!r} is registered (known: {', '.join(self._entries)})."
            )
        if entry.status != LOADED:
            because = f"; loading failed with: {entry.error}" if entry.error else ""
            raise ModelLoadError(
                f"Model {name!r} is not available (status: {entry.status}){because}",
                hint="Call load_all() first; health() lists every model's error.",
            )
        return entry.value

    def health(self) -> dict[str, Any]:
        """healthy: all loaded; degraded: only optional models failed; unhealthy: a required one did."""
        entries = list(self._entries.values())
        loaded = [e for e in entries if e.status == LOADED]
        failed_required = [e.name for e in entries if e.status != LOADED and e.required]
        failed_optional = [e.name for e in entries if e.status != LOADED and not e.required]
        if failed_required:
            status, message = "unhealthy", f"Required models not loaded: {', '.join(failed_required)}"
        elif failed_optional:
            status, message = "degraded", f"Optional models not loaded: {', '.join(failed_optional)}"
        else:
            status, message = "healthy", "All models loaded successfully"
        return {
            "status": status,
            "message": message,
            "models_loaded": {e.name: e.status == LOADED for e in entries},
            "loaded_count": len(loaded),
            "total_count": len(entries),
            "errors": {e.name: e.error for e in entries if e.error},
            "load_seconds": {e.name: round(e.seconds, 3) for e in entries},
            "repairs": {e.name: e.repairs for e in entries if e.repairs},
        }

    # ------------------------------------------------------------------ internals

    def _manager(self) -> Any:
        with self._lock:
            if self.manager is None:
                from modelctl.api import ModelManager

                self.manager = ModelManager.from_config()
            return self.manager

    def _load(self, entry: _Entry) -> None:
        start = time.monotonic()
        entry.error = None
        try:
            target = self._prepare(entry, use_cache=True)
            is_damaged = False  # the last load looked like corruption: verify and repair before the next

            def attempt(number: int, _: int) -> Any:
                nonlocal target, is_damaged
                if is_damaged:
                    target = self._prepare(entry, use_cache=False)  # hash everything again, repair
                    is_damaged = False
                entry.attempts = number
                try:
                    return entry.loader(target, **entry.loader_kwargs)
                except KeyboardInterrupt:
                    raise  # Ctrl-C stops the program, not one load
                except Exception as err:  # a user's loader may raise anything; it is recorded
                    entry.error = f"{type(err).__name__}: {err}"
                    if (
                        self._looks_corrupt(entry, err)
                        and entry.model is not None
                        and entry.repairs < entry.retries
                    ):
                        # A repair is tried whatever attempts are left; `retries` bounds repairs too.
                        entry.repairs += 1
                        is_damaged = True
                        delay = backoff_delay(entry.repairs, self.backoff_base)
                        raise Retry(entry.error, delay, is_extra=True) from err
                    raise Retry(entry.error) from err
                except BaseException as err:  # SystemExit & co: the loader meant to stop; not retried
                    entry.error = f"{type(err).__name__}: {err}"
                    raise _Stopped from err

            # Attempts count across load_all() calls: a model that used them up gets one more.
            policy = RetryPolicy(attempts=entry.retries, backoff_base=self.backoff_base)
            entry.value = retry_call(attempt, policy, first=entry.attempts + 1)
            entry.status, entry.error = LOADED, None
        except (Retry, _Stopped):  # out of attempts, or told to stop: entry.error says why
            entry.status = FAILED
        except ModelctlError as err:
            entry.status, entry.error = FAILED, f"{type(err).__name__}: {err.message}"
        finally:
            entry.seconds = time.monotonic() - start

    def _prepare(self, entry: _Entry, *, use_cache: bool) -> Path:
        """The path to load: an ensured registry model, or a checked file."""
        if entry.model is not None:
            return Path(self._manager().ensure_model(entry.model, use_cache=use_cache))
        assert entry.path is not None
        if not entry.path.exists():
            raise MissingModelError(f"{entry.name}: {entry.path} does not exist.")
        if entry.path.is_file() and entry.path.stat().st_size == 0:
            raise BadChecksumError(f"{entry.name}: {entry.path} is empty (0 bytes).")
        if entry.checksum is not None:
            if entry.path.is_dir():  # it became one after register()
                raise _checksum_on_directory(entry.name, entry.path)
            pin = parse_checksum(entry.checksum)
            assert pin is not None
            actual = hash_file(entry.path, (pin.algo,))[0][pin.algo]
            if actual != pin.hexdigest:
                raise BadChecksumError(
                    f"{entry.name}: checksum mismatch for {entry.path}: expected {pin}, got {pin.algo}:{actual}."
                )
        return entry.path

    @staticmethod
    def _looks_corrupt(entry: _Entry, err: BaseException) -> bool:
        text = f"{type(err).__name__}: {err}".lower()
        return any(pattern in text for pattern in entry.patterns)


def _checksum_on_directory(name: str, path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"{name}: checksum= pins one file's bytes, but {path} is a directory.",
        hint="Register a file with checksum=, a folder without it, or a registry model (model=), "
        "which is verified file by file.",
    )
