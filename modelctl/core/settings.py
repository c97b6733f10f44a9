"""Settings of `download`, `ensure` and `lock`, resolved once: flag > environment > default.

The environment is read when `download_options` is called, never at import, so tests only need
`monkeypatch.setenv`. The registry's part (endpoints, verify level) is read from models.yaml by
the functions that use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modelctl.core.errors import ConfigurationError, Step, UsageError, command, option, spoken
from modelctl.core.registry import TRUE_WORDS, revision_problem
from modelctl.core.retry import DEFAULT_ATTEMPTS, DEFAULT_LOCK_TIMEOUT, DEFAULT_TIMEOUT, RetryPolicy

# Connections a download run opens at once, shared by its files: unless fixed (--connections,
# MODELCTL_CONNECTIONS, `download: connections:`), from 4, doubled while it pays, up to
# MAX_CONNECTIONS (net/pace.py; docs/performance.md has the shapes it was measured on).
MAX_CONNECTIONS = 64
DEFAULT_SPLIT_SIZE = 4 << 20  # the smallest range a file is split into (MODELCTL_SPLIT_SIZE)
MIN_SPLIT_SIZE = 1 << 20  # more than a piece (partial.PIECE): a steal leaves the piece being read alone


@dataclass(frozen=True)
class DownloadOptions:
    """Everything `download` was asked for, resolved flag > environment > registry > default."""

    ids: tuple[str, ...] = ()
    size: str | None = None
    everything: bool = False
    revision: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    to: str | None = None
    force: bool = False
    max_workers: int = 4  # files fetched at once
    connections: int | None = None  # None: the registry's `download: connections:`, else the default
    split_size: int = DEFAULT_SPLIT_SIZE
    offline: bool = False
    endpoints: tuple[str, ...] = ()
    token: str | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    def rerun(self, model_ids: Sequence[str] = (), *, online: bool = False) -> Step:
        """The download a hint should suggest running again (never with the token); online: with
        offline mode turned off."""
        env = "HF_HUB_OFFLINE=0" if online else ""
        ids = " ".join(model_ids or self.ids)
        if ids:
            return command("download", ids, env=env)
        return command("download", "", f"size {self.size}" if self.size else "all", env=env)


def download_options(
    *,
    environ: Mapping[str, str] | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    lock_timeout: float | None = None,
    offline: bool = False,
    connections: int | None = None,
    **values: object,
) -> DownloadOptions:
    """Resolve the settings that have environment variables (MODELCTL_*, HF_HUB_OFFLINE)."""
    env = os.environ if environ is None else environ
    if connections is None and env.get("MODELCTL_CONNECTIONS"):
        connections = int(_env_number(env, "MODELCTL_CONNECTIONS", MAX_CONNECTIONS, int))
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ConfigurationError(
                f"MODELCTL_CONNECTIONS={connections} is not in the range 1 to {MAX_CONNECTIONS}.",
                hint="Unset MODELCTL_CONNECTIONS or give it a number from 1 to 64.",
            )
    split_size = _env_bytes(env, "MODELCTL_SPLIT_SIZE", DEFAULT_SPLIT_SIZE)
    policy = RetryPolicy(
        attempts=retries
        if retries is not None
        else int(_env_number(env, "MODELCTL_RETRIES", DEFAULT_ATTEMPTS, int)),
        timeout=timeout
        if timeout is not None
        else _env_number(env, "MODELCTL_TIMEOUT", DEFAULT_TIMEOUT, float),
    )
    if policy.attempts < 1 or policy.timeout <= 0:
        raise UsageError(
            spoken("{0} must be at least 1 and {1} more than 0.", option("retries"), option("timeout"))
        )
    revision = values.get("revision")
    if isinstance(revision, str) and (problem := revision_problem(revision)):
        message = spoken("{0} ", option("revision")) + f"{problem}."
        raise UsageError(message, hint="Give a branch, tag or commit as the Hub shows it.")
    return DownloadOptions(
        policy=policy,
        lock_timeout=lock_timeout
        if lock_timeout is not None
        else _env_number(env, "MODELCTL_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT, float),
        offline=offline or env.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS,
        connections=connections,
        split_size=split_size,
        **values,  # type: ignore[arg-type]
    )


def _env_number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        return kind(text)  # type: ignore[no-any-return]
    except ValueError:
        raise ConfigurationError(
            f"{name}={text!r} is not a number.", hint=f"Unset {name} or give it a number."
        ) from None


def _env_bytes(env: Mapping[str, str], name: str, default: int) -> int:
    """A size in bytes, with an optional K, M or G suffix (powers of 1024), at least one chunk."""
    text = (env.get(name) or "").strip().upper().removesuffix("B")
    if not text:
        return default
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) * scale < MIN_SPLIT_SIZE:
        raise ConfigurationError(
            f"{name}={env.get(name)!r} is not a size of at least 1M.",
            hint=f"Unset {name} or give it a size such as 8M.",
        )
    return int(digits) * scale
