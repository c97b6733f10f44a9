"""ModelLoader: load models in a service, repair them when loading shows corruption, report health.

Seed 002's model loader (AFIRGen's model servers), its API as that team wrote it, generalised: a
model is a local file or folder (`path=`, checked for existence, size, permissions and an optional
checksum, no registry or Hub needed), or a registry model (`model=`, ensured: verified and repaired
from the Hub before its loader runs). When a loader raises an error that looks like corruption,
a registry model's files are verified again without the cache and repaired, and the load is tried
again with backoff (0.5 s, 1 s, 2 s, …). Other errors are retried up to `retry_count` attempts in
all, then reported.

    loader = ModelLoader(model_dir=Path("./models"), validate_checksums=True)
    loader.register_model(ModelConfig(
        name="summariser", path=loader.model_dir / "summariser.gguf", loader_func=load_gguf,
        expected_checksum="<sha256 hex>", loader_kwargs={"n_ctx": 2048},
    ))
    loader.register_model(ModelConfig(name="llm", model="qwen25-omni-3b-gguf", loader_func=load_gguf))
    loader.load_all_models()           # {name: loaded}; never raises for a failed load
    llm = loader.get_model("llm")      # ModelLoadError (a RuntimeError) if it is not loaded
    loader.get_health_status()         # {"status": "healthy" | "degraded" | "unhealthy", ...}
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelctl.core.errors import BadChecksumError, ConfigurationError, MissingModelError, ModelctlError
from modelctl.core.hashing import ALGORITHMS, hash_file, parse_checksum
from modelctl.core.retry import Retry, RetryPolicy, retry_call

# Substrings (lower case) of loader errors that mean "the file is damaged", not "the code is wrong",
# as the real readers word them. Extend per model with ModelConfig(corruption_patterns=[...]) or
# globally by appending here.
CORRUPTION_PATTERNS: list[str] = [
    "safetensor",  # safetensors: "SafetensorError: Error while deserializing header: header too large"
    "deserializing header",
    "header too large",
    "header too small",
    "invalid header",
    "incomplete metadata",  # safetensors on a cut file: "incomplete metadata, file not fully covered"
    "unexpected eof",
    "unexpected end",
    "eof while parsing",  # tokenizers (serde_json) on a cut tokenizer.json
    "invalid load key",  # pickle / torch.load on a damaged file
    "truncated",
    "corrupt",
    "bad magic",
    "invalid magic",
    "magic invalid",  # gguf's GGUFReader: "GGUF magic invalid"
    "not a gguf",
    "cannot reshape array of size",  # gguf's reader on a truncated file (numpy views of the tensors)
    "must be a divisor of the total size",  # gguf's reader: a cut tensor's last bytes
    "unpack requires a buffer",  # struct on a cut binary header
    "failed to load model",  # llama.cpp (llama-cpp-python: "Failed to load model from file: …")
    "expecting value",  # json.JSONDecodeError on an empty or cut file
    "unterminated string",
    "invalid utf-8",
    "crc",
]

PENDING, LOADED, FAILED = "pending", "loaded", "failed"
SEED_BACKOFF = 0.5  # seed 002's waits, 0.5 s, 1 s, 2 s: its contract, not modelctl's backoff
_NAMES = sorted(ALGORITHMS)
_ALGOS_TEXT = f"{', '.join(_NAMES[:-1])} or {_NAMES[-1]}"  # "md5, sha1 or sha256"


class ModelLoadError(ModelctlError, RuntimeError):
    """A registered model is not available: not loaded yet, or its loader failed.

    A RuntimeError too: seed 002's endpoints catch `(ValueError, RuntimeError)` around get_model.
    """


class _Stopped(Exception):
    """The loader raised SystemExit or the like: it meant to stop, so it is not retried."""


@dataclass
class ModelConfig:
    """One model to load: seed 002's ModelConfig, plus `model` (a registry id) and patterns.

    path: the file or folder handed to loader_func (a relative path is relative to the working
    folder, as in seed 002). model: a registry model id instead of a path: it is ensured first,
    and loader_func gets its file when the model is one file (`files:` selecting one), else its
    folder. expected_checksum: hex of checksum_algorithm (md5, sha1, sha256), or "algo:hex".
    retry_count: load attempts in all (>= 1); it also bounds the repairs after corrupt-looking
    load errors.
    """

    name: str
    path: Path | str | None = None
    loader_func: Callable[..., Any] | None = None
    required: bool = True
    expected_checksum: str | None = None
    checksum_algorithm: str = "sha256"
    retry_count: int = 1
    loader_kwargs: dict[str, Any] | None = None
    model: str | None = None
    corruption_patterns: list[str] | None = None


@dataclass
class _Entry:
    config: ModelConfig
    path: Path | None
    checksum: str | None  # "algo:hex"
    patterns: tuple[str, ...]
    status: str = PENDING
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 0
    rechecks: int = 0  # verifications without the cache after corrupt-looking load errors
    repairs: int = 0  # times the model's files were actually replaced before a load

    @property
    def name(self) -> str:
        return self.config.name


class ModelLoader:
    """Register models with their loader functions; load them (in parallel); report health.

    model_dir: the models' base folder (`loader.model_dir / "x.gguf"`); logger: where loads,
    retries and repairs are logged (default logger "modelctl.loader"); validate_checksums: check
    each path model's expected_checksum before loading it. manager: the ModelManager for
    registry models (default: the registry found as the CLI finds it, when first needed).
    backoff_base: the first retry's wait in seconds, doubling with each.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        logger: logging.Logger | None = None,
        validate_checksums: bool = True,
        *,
        manager: Any = None,
        backoff_base: float = SEED_BACKOFF,
    ) -> None:
        if manager is None and model_dir is not None and not isinstance(model_dir, (str, os.PathLike)):
            manager, model_dir = model_dir, None  # ModelLoader(manager): a ModelManager given first
        self.model_dir = Path(model_dir) if model_dir is not None else Path(".")
        self.logger = logger or logging.getLogger(__name__)
        self.validate_checksums = validate_checksums
        self.manager = manager
        self.backoff_base = backoff_base
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def register_model(self, config: ModelConfig) -> None:
        """Register a model; ConfigurationError for a config that cannot work (nothing loads yet)."""
        name = config.name
        if config.loader_func is None:
            raise ConfigurationError(f"{name}: ModelConfig needs loader_func (a function of the path).")
        if (config.model is None) == (config.path is None):
            raise ConfigurationError(f"{name}: give exactly one of model= (a registry id) or path=.")
        checksum = None
        if config.expected_checksum is not None:
            text = config.expected_checksum.strip()
            checksum = text if ":" in text else f"{config.checksum_algorithm.lower()}:{text}"
            if parse_checksum(checksum) is None:
                raise ConfigurationError(
                    f"{name}: expected_checksum {config.expected_checksum!r} is not the hex digest of "
                    f"{config.checksum_algorithm!r} (or algo:hex; {_ALGOS_TEXT})."
                )
            if config.model is not None:
                raise ConfigurationError(
                    f"{name}: expected_checksum pins one file; a registry model (model=) is verified "
                    "file by file (pin files with `checksums:` in the registry)."
                )
        path = Path(config.path) if config.path is not None else None
        if checksum is not None and path is not None and path.is_dir():
            raise _checksum_on_directory(name, path)
        if name in self._entries:
            raise ConfigurationError(f"{name} is already registered.")
        self._entries[name] = _Entry(
            config,
            path,
            checksum,
            tuple(p.lower() for p in [*CORRUPTION_PATTERNS, *(config.corruption_patterns or [])]),
        )

    def load_all_models(self, parallel: bool = True, max_workers: int | None = None) -> dict[str, bool]:
        """Load every registered model; return {name: loaded}. Never raises for a failed load."""
        entries = list(self._entries.values())
        if parallel and len(entries) > 1:
            with ThreadPoolExecutor(max_workers=max_workers or min(4, len(entries))) as pool:
                list(pool.map(self._load, entries))
        else:
            for entry in entries:
                self._load(entry)
        return {e.name: e.status == LOADED for e in entries}

    def get_model(self, name: str) -> Any:
        """The loaded object; ModelLoadError (a RuntimeError) naming the status and the load error."""
        entry = self._entries.get(name)
        if entry is None:
            raise ModelLoadError(
                f"Model {name!r} is not registered (known: {', '.join(self._entries) or 'none'}).",
                hint="Register it with register_model(ModelConfig(...)) before load_all_models().",
            )
        if entry.status != LOADED:
            because = f"\nLoading failed with: {entry.error}" if entry.error else ""
            raise ModelLoadError(
                f"Model {name!r} is not available (status: {entry.status}).{because}",
                hint="Call load_all_models() first; get_health_status() lists every model's error.",
            )
        return entry.value

    def get_health_status(self) -> dict[str, Any]:
        """healthy: all loaded; degraded: only optional models failed; unhealthy: a required one did.

        Seed 002's keys (status, message, models_loaded, loaded_count, total_count, errors), then
        load_seconds and repairs (times a model's files were replaced before a load).
        """
        entries = list(self._entries.values())
        loaded = [e for e in entries if e.status == LOADED]
        failed_required = [e.name for e in entries if e.status != LOADED and e.config.required]
        failed_optional = [e.name for e in entries if e.status != LOADED and not e.config.required]
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

    @staticmethod
    def calculate_checksum(path: Path | str, algorithm: str = "sha256") -> str:
        """The hex digest of a file (md5, sha1 or sha256), read once."""
        algo = algorithm.lower()
        if algo not in ALGORITHMS:
            raise ConfigurationError(f"Unknown checksum algorithm {algorithm!r}: use {_ALGOS_TEXT}.")
        return hash_file(Path(path), (algo,))[0][algo]

    _calculate_checksum = calculate_checksum  # the name seed 002's README shows for generating checksums

    # ------------------------------------------------------------------ internals

    def _manager(self) -> Any:
        with self._lock:
            if self.manager is None:
                from modelctl.api import ModelManager  # a registry model only: local files need no registry

                self.manager = ModelManager.from_config()
            return self.manager

    def _load(self, entry: _Entry) -> None:
        start = time.monotonic()
        entry.error = None
        config = entry.config
        assert config.loader_func is not None
        load = config.loader_func
        kwargs = dict(config.loader_kwargs or {})
        attempts = max(1, config.retry_count)
        policy = RetryPolicy(attempts=attempts, backoff_base=self.backoff_base, jitter=False)
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
                    return load(target, **kwargs)
                except KeyboardInterrupt:
                    raise  # Ctrl-C stops the program, not one load
                except Exception as err:  # a user's loader may raise anything; it is recorded
                    entry.error = f"{type(err).__name__}: {err}"
                    delay = policy.delay(entry.attempts + entry.rechecks)  # 0.5, 1, 2 s: no jitter
                    if (
                        self._looks_corrupt(entry, err)
                        and config.model is not None
                        and entry.rechecks < attempts
                    ):
                        # A repair is tried whatever attempts are left; retry_count bounds repairs too.
                        entry.rechecks += 1
                        is_damaged = True
                        self.logger.warning(
                            "%s: the load looks like corruption (%s); verifying", entry.name, entry.error
                        )
                        raise Retry(entry.error, delay, is_extra=True) from err
                    again = f"; trying again in {delay:.1f} s" if number < attempts else ""
                    self.logger.warning(
                        "%s: load attempt %d failed: %s%s", entry.name, number, entry.error, again
                    )
                    raise Retry(entry.error, delay) from err
                except BaseException as err:  # SystemExit & co: the loader meant to stop; not retried
                    entry.error = f"{type(err).__name__}: {err}"
                    raise _Stopped from err

            # Attempts count across load_all_models() calls: a model that used them up gets one more.
            entry.value = retry_call(attempt, policy, first=entry.attempts + 1)
            entry.status, entry.error = LOADED, None
        except (Retry, _Stopped):  # out of attempts, or told to stop: entry.error says why
            entry.status = FAILED
        except ModelctlError as err:
            entry.status, entry.error = FAILED, err.message
        finally:
            entry.seconds = time.monotonic() - start
        if entry.status == LOADED:
            self.logger.info("Loaded model %r in %.2f s", entry.name, entry.seconds)
        else:
            self.logger.error("Model %r failed to load: %s", entry.name, entry.error)

    def _prepare(self, entry: _Entry, *, use_cache: bool) -> Path:
        """The path to load: an ensured registry model (its file or folder), or a checked path."""
        model = entry.config.model
        if model is not None:
            manager = self._manager()
            spec = manager.get_model_spec(model)
            report = manager.ensure([spec.id], use_cache=use_cache)
            folder: Path = manager.paths_of(report)[spec.id]
            if report.repaired.get(spec.id):
                entry.repairs += 1
                self.logger.info("%s: repaired %s", entry.name, ", ".join(report.repaired[spec.id]))
            expected = next(v.expected for v in report.after.models if v.spec.id == spec.id)
            return folder / expected[0] if len(expected) == 1 else folder
        path = entry.path
        assert path is not None
        if not path.exists():
            raise MissingModelError(f"Model file not found: {path}")
        if not os.access(path, os.R_OK):
            raise BadChecksumError(f"Model file is not readable (permission denied): {path}")
        if path.is_file() and path.stat().st_size == 0:
            raise BadChecksumError(f"Model file is empty (0 bytes): {path}")
        if entry.checksum is not None and self.validate_checksums:
            if path.is_dir():  # it became one after register_model()
                raise _checksum_on_directory(entry.name, path)
            pin = parse_checksum(entry.checksum)
            assert pin is not None
            actual = hash_file(path, (pin.algo,))[0][pin.algo]
            if actual != pin.hexdigest:
                raise BadChecksumError(
                    f"Checksum mismatch! Expected: {pin.hexdigest}, Got: {actual}\n"
                    f"File may be corrupted or tampered with: {path}"
                )
        return path

    @staticmethod
    def _looks_corrupt(entry: _Entry, err: BaseException) -> bool:
        text = f"{type(err).__name__}: {err}".lower()
        return any(pattern in text for pattern in entry.patterns)


def _checksum_on_directory(name: str, path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"{name}: expected_checksum pins one file's bytes, but {path} is a directory.",
        hint="Register a file with expected_checksum, a folder without it, or a registry model "
        "(model=), which is verified file by file.",
    )
