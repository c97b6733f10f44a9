"""Seed 004's robust loader: a Hub repo by id, fetched by modelctl's engine, loaded by transformers.

    from modelctl import robust_model_download, load_model_and_tokenizer, ModelDownloadError

    tokenizer = robust_model_download("microsoft/deberta-v3-base", model_type="tokenizer")
    model, tokenizer = load_model_and_tokenizer("gpt2", model_type="causal_lm")

No registry is needed. The files transformers reads (configs, tokenizer files, and the weights:
safetensors, else PyTorch .bin) are downloaded as `modelctl download` does (resumed, verified
while streaming, reusing what the Hugging Face cache or modelctl's roots already hold) into the
user root, then published into the Hugging Face cache as huggingface_hub lays it out (hfcache.py),
so that transformers (here, with local_files_only) and `hf` find them again. transformers is an
optional extra: `pip install "modelctl[transformers]"`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelctl.api import spec_manager
from modelctl.core.errors import BadChecksumError, ConfigurationError, DownloadError, ModelctlError
from modelctl.core.record import read_record
from modelctl.core.registry import TRUE_WORDS, ModelSpec, repo_id_problem, revision_problem
from modelctl.core.settings import download_options
from modelctl.store.hfcache import check_snapshot, export_snapshot, repo_folder
from modelctl.store.storage import hf_cache_path

# model_type → the transformers Auto class that loads it (seed 004's three).
AUTO_CLASSES = {"auto": "AutoModel", "causal_lm": "AutoModelForCausalLM", "tokenizer": "AutoTokenizer"}
# What transformers reads besides weights: configs, vocabularies, merges, sentencepiece and tiktoken
# models, chat templates.
TOKENIZER_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")
WEIGHT_FILES = (("*.safetensors",), ("*.bin",))  # safetensors when the repo has them, else .bin


class ModelDownloadError(DownloadError):
    """A model could not be fetched, or is not cached in offline mode (seed 004's error).

    Its text holds the troubleshooting: where the cache is, the manual download command, and how
    to leave offline mode.
    """


def robust_model_download(
    model_name: str,
    model_type: str = "auto",
    max_retries: int = 3,
    timeout: float = 300,
    allow_offline: bool = False,
    token: str | None = None,
    **kwargs: Any,
) -> Any:
    """The transformers object for a Hub repo: AutoModel ("auto"), AutoModelForCausalLM
    ("causal_lm") or AutoTokenizer ("tokenizer"); kwargs go to from_pretrained (`revision` and
    `cache_dir` are honoured for the download too).

    max_retries: attempts per file; timeout: seconds to connect and for each read; allow_offline:
    only what is on disk (also when HF_HUB_OFFLINE is set). ModelDownloadError when it cannot be had.
    """
    auto = _auto_class(model_type)
    _fetch_for(model_name, model_type != "tokenizer", max_retries, timeout, allow_offline, token, kwargs)
    return _from_pretrained(auto, model_name, token, kwargs)


def load_model_and_tokenizer(
    model_name: str,
    model_type: str = "auto",
    max_retries: int = 3,
    timeout: float = 300,
    allow_offline: bool = False,
    token: str | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """(model, tokenizer) of one repo, fetched once; kwargs go to the model's from_pretrained."""
    if model_type == "tokenizer":
        raise ConfigurationError(
            "load_model_and_tokenizer loads a model and its tokenizer: model_type 'tokenizer' is not a model.",
            hint="Pass model_type='auto' or 'causal_lm', or call robust_model_download(..., model_type='tokenizer').",
        )
    auto, tokenizer_class = _auto_class(model_type), _auto_class("tokenizer")
    _fetch_for(model_name, True, max_retries, timeout, allow_offline, token, kwargs)
    shared: dict[str, Any] = {k: kwargs[k] for k in ("revision", "cache_dir") if k in kwargs}
    return _from_pretrained(auto, model_name, token, kwargs), _from_pretrained(
        tokenizer_class, model_name, token, shared
    )


def is_model_cached(
    model_name: str, revision: str = "main", cache_dir: str | os.PathLike[str] | None = None
) -> bool:
    """Whether the Hugging Face cache holds a snapshot of the repo at revision (no network)."""
    return _cached_snapshot(model_name, revision, _cache(cache_dir)) is not None


_check_cached_model = is_model_cached  # the name seed 004's guide shows


def _fetch_for(
    model_name: str,
    weights: bool,
    max_retries: int,
    timeout: float,
    allow_offline: bool,
    token: str | None,
    kwargs: dict[str, Any],
) -> Path:
    """fetch_pretrained with the from_pretrained kwargs that say which revision and cache."""
    return fetch_pretrained(
        model_name,
        weights=weights,
        max_retries=max_retries,
        timeout=timeout,
        allow_offline=allow_offline,
        token=token,
        revision=kwargs.get("revision"),
        cache_dir=kwargs.get("cache_dir"),
    )


def fetch_pretrained(
    model_name: str,
    *,
    weights: bool,
    max_retries: int = 3,
    timeout: float = 300,
    allow_offline: bool = False,
    token: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Download what transformers reads of a repo and publish it in the HF cache; the snapshot folder."""
    problem = repo_id_problem(model_name) or (revision_problem(revision) if revision is not None else None)
    if problem is not None:
        raise ConfigurationError(f"model_name {model_name!r}, revision {revision!r}: {problem}")
    revision = revision or "main"
    cache = _cache(cache_dir)
    offline = allow_offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS
    options = download_options(retries=max_retries, timeout=float(timeout), offline=offline, token=token)
    try:
        return _fetch(model_name, revision, weights, options, cache)
    except ModelctlError as err:
        cached = _cached_snapshot(model_name, revision, cache) if offline else None
        if cached is not None:  # hf or transformers put it there, with no record of ours
            try:
                check_snapshot(
                    cached, model_name
                )  # each blob must hash to its name, or nothing is handed out
            except BadChecksumError as bad:
                raise _troubleshooting(
                    model_name, revision, bad, offline=True, attempts=max_retries, cache=cache
                ) from bad
            return cached
        raise _troubleshooting(
            model_name, revision, err, offline=offline, attempts=max_retries, cache=cache
        ) from err


def _fetch(model_name: str, revision: str, weights: bool, options: Any, cache: Path) -> Path:
    groups = WEIGHT_FILES if weights else ((),)
    for index, weight_files in enumerate(groups):
        spec = ModelSpec(
            model_name.replace("/", "--").lower(),
            model_name,
            revision,
            files=(*TOKENIZER_FILES, *weight_files),
        )
        manager = spec_manager(spec, None, options)
        outcome = manager.download([spec.id]).models[0]
        record = read_record(outcome.folder)
        assert record is not None  # a finished download wrote it
        files = [f for f in record.selected(spec.files) if (outcome.folder / f.path).is_file()]
        if (
            weights
            and not any(f.path.endswith(weight_files[0][1:]) for f in files)
            and index + 1 < len(groups)
        ):
            continue  # no safetensors in this repo: the PyTorch weights instead
        return export_snapshot(outcome.folder, files, model_name, revision, outcome.commit, cache)
    raise AssertionError("unreachable: the last group returns")


def _auto_class(model_type: str) -> Any:
    if model_type not in AUTO_CLASSES:
        raise ConfigurationError(
            f"model_type {model_type!r} is not one of {', '.join(AUTO_CLASSES)}.",
            hint="Use 'auto' (AutoModel), 'causal_lm' (AutoModelForCausalLM) or 'tokenizer' (AutoTokenizer).",
        )
    try:
        import transformers
    except ImportError as err:
        raise ConfigurationError(
            f"robust_model_download loads models with transformers, which is not installed ({err}).",
            hint='Install the extra: pip install "modelctl[transformers]".',
        ) from None
    if (
        model_type != "tokenizer" and not transformers.is_torch_available()
    ):  # before any byte, not after gigabytes
        raise ConfigurationError(
            f"{AUTO_CLASSES[model_type]} needs PyTorch, which transformers cannot find.",
            hint="Install PyTorch (https://pytorch.org/get-started/locally/), or load only the "
            "tokenizer: model_type='tokenizer'.",
        )
    return getattr(transformers, AUTO_CLASSES[model_type])


def _from_pretrained(auto: Any, model_name: str, token: str | None, kwargs: dict[str, Any]) -> Any:
    """from_pretrained on what is now in the cache: no second trip to the Hub.

    The cache is named: huggingface_hub reads HF_HOME / HF_HUB_CACHE once, at its import, and
    the files were published where they point now.
    """
    arguments = {"cache_dir": str(_cache(None)), **kwargs, "local_files_only": True}
    if token is not None:
        arguments["token"] = token
    return auto.from_pretrained(model_name, **arguments)


def _cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else hf_cache_path()


def _cached_snapshot(model_name: str, revision: str, cache: Path) -> Path | None:
    repo = repo_folder(cache, model_name)
    ref = repo / "refs" / revision
    try:
        commit = ref.read_text().strip() if ref.is_file() else revision
    except OSError:
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if snapshot.is_dir() and any(snapshot.iterdir()) else None


def _troubleshooting(
    model_name: str, revision: str, err: ModelctlError, *, offline: bool, attempts: int, cache: Path
) -> ModelDownloadError:
    """Seed 004's error text: what failed, then the cache, the manual command, offline mode."""
    if offline:
        head = f"Model {model_name} not found in cache and offline mode is enabled ({err.message})"
        leave = "Leave offline mode to download it: allow_offline=False and HF_HUB_OFFLINE unset (or 0)."
    else:
        head = f"Failed to download model {model_name} after {attempts} attempts: {err.message}"
        leave = "Increase max_retries or timeout for a slow or unstable link; a rerun resumes."
    steps = [
        f"Cache location: {cache} (HF_HOME or HF_HUB_CACHE move it)",
        f"Download it by hand into that cache: hf download {model_name}"
        + (f" --revision {revision}" if revision != "main" else ""),
        leave,
    ]
    message = head + "\nTroubleshooting:\n" + "\n".join(f"  {i}. {s}" for i, s in enumerate(steps, 1))
    return ModelDownloadError(message, hint=err.hint)
