"""models.lock: each model's revision resolved to a commit, with every file's size and hashes.

Written by `modelctl lock` beside models.yaml and meant to be committed: `download` then fetches
exactly the locked commit and refuses a Hub whose files differ from it, and `verify` checks
against it without any network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelctl.core import __version__
from modelctl.core.atomic import replace_text
from modelctl.core.errors import ConfigurationError, command, write_error
from modelctl.core.record import RepoFile, Snapshot, is_safe_relative
from modelctl.core.registry import ModelSpec, Registry

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedModel:
    id: str
    repo_id: str
    revision: str
    patterns: tuple[str, ...]
    commit: str
    files: tuple[RepoFile, ...]

    def matches(self, spec: ModelSpec) -> bool:
        """Whether the registry still asks for what was locked."""
        return (self.repo_id, self.revision, self.patterns) == (spec.repo_id, spec.revision, spec.files)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.repo_id, self.revision, self.commit, self.files)


@dataclass(frozen=True)
class LockFile:
    path: Path
    models: dict[str, LockedModel]
    replaced: str | None = None  # why an unreadable models.lock was written anew (write_lock)


class DamagedLockError(ConfigurationError):
    """models.lock cannot be read as a lock: `modelctl lock` writes it anew."""


def lock_path(registry: Registry) -> Path:
    return registry.lock_path


def read_lock(registry: Registry) -> LockFile | None:
    """The registry's models.lock, None if there is none; ConfigurationError if it is damaged."""
    if registry.source.is_bundled:
        return None
    path = lock_path(registry)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigurationError(f"Cannot read {path}: {err.strerror or err}") from None
    try:
        data = json.loads(text)
        version = data.get("version")
    except (ValueError, AttributeError) as err:
        raise DamagedLockError(
            f"{path} is damaged: {err}",
            hint="Restore it from version control, or run {0} to write it anew.",
            steps=(command("lock"),),
        ) from None
    if isinstance(version, int) and version > LOCK_VERSION:
        raise ConfigurationError(
            f"{path} is version {version}, written by a newer modelctl; this modelctl ({__version__}) "
            f"reads version {LOCK_VERSION}.",
            hint="Upgrade modelctl (pip install -U modelctl) to the version your project uses.",
        )
    try:
        if version != LOCK_VERSION:
            raise ValueError(f"version {version!r}, expected {LOCK_VERSION}")
        models = {mid: _locked(mid, entry) for mid, entry in data["models"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DamagedLockError(
            f"{path} is damaged: {err}",
            hint="Restore it from version control, or run {0} to write it anew.",
            steps=(command("lock"),),
        ) from None
    return LockFile(path, models)


def _locked(model_id: str, entry: dict[str, Any]) -> LockedModel:
    files = []
    for f in entry["files"]:
        if not is_safe_relative(str(f["path"])):
            raise ValueError(f"{model_id}: file path {f['path']!r} leaves the model folder")
        files.append(RepoFile(str(f["path"]), int(f["size"]), f.get("sha256"), str(f["blob_id"])))
    commit = str(entry["commit"])
    if len(commit) != 40:
        raise ValueError(f"{model_id}: commit {commit!r} is not a 40-hex commit id")
    return LockedModel(
        model_id,
        str(entry["repo_id"]),
        str(entry["revision"]),
        tuple(entry.get("patterns", ())),
        commit,
        tuple(files),
    )


def write_lock(registry: Registry, locked: Sequence[LockedModel]) -> LockFile:
    """Update the entries of `locked`, keep the others still in the registry, write atomically."""
    if registry.source.is_bundled:
        raise ConfigurationError(
            "The bundled default registry cannot be locked.",
            hint="Create a models.yaml for your project (copy the bundled one) and run {0} beside it.",
            steps=(command("lock"),),
        )
    replaced = None
    try:
        current = read_lock(registry)
    except DamagedLockError as err:  # a newer version is not damage: that error goes up
        current, replaced = None, err.message
    known = {m.id for m in registry.models}
    models = {mid: m for mid, m in (current.models if current else {}).items() if mid in known}
    models.update({m.id: m for m in locked})
    data = {
        "version": LOCK_VERSION,
        "models": {
            mid: {
                "repo_id": m.repo_id,
                "revision": m.revision,
                "patterns": list(m.patterns),
                "commit": m.commit,
                "files": [
                    {"path": f.path, "size": f.size, "sha256": f.sha256, "blob_id": f.blob_id}
                    for f in m.files
                ],
            }
            for mid, m in sorted(models.items())
        },
    }
    path = lock_path(registry)
    try:
        replace_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise write_error(err, path, path.name) from None
    return LockFile(path, models, replaced)


def lock_differences(registry: Registry, lock: LockFile | None) -> list[str]:
    """How the registry and its lock disagree (empty: they agree)."""
    if lock is None:
        return [f"{lock_path(registry)} does not exist"]
    out = []
    lock_name, registry_name = lock.path.name, registry.path.name
    for spec in registry.models:
        entry = lock.models.get(spec.id)
        if entry is None and spec.urls:
            continue  # pinned by the sha256s in models.yaml; `lock` skips it
        if entry is None:
            out.append(f"{spec.id}: not in {lock_name}")
        elif not entry.matches(spec):
            out.append(
                f"{spec.id}: {registry_name} asks for {spec.repo_id}@{spec.revision} {list(spec.files) or 'all files'}, "
                f"{lock_name} has {entry.repo_id}@{entry.revision} {list(entry.patterns) or 'all files'}"
            )
    known = {m.id for m in registry.models}
    out += [f"{mid}: in {lock_name} but not in {registry_name}" for mid in sorted(set(lock.models) - known)]
    return out


def locked_for(lock: LockFile | None, spec: ModelSpec) -> LockedModel | None:
    """The lock entry to obey for spec; ConfigurationError when the lock is stale for it."""
    if lock is None or spec.id not in lock.models:
        return None
    entry = lock.models[spec.id]
    if not entry.matches(spec):
        raise ConfigurationError(
            f"{lock.path} is stale for {spec.id}: it locks {entry.repo_id}@{entry.revision}, "
            f"the registry now asks for {spec.repo_id}@{spec.revision}.",
            hint=f"Run {{0}} and commit {lock.path.name}.",
            api_hint=f"The lock is written by the command line: run {{0}} in the project and commit {lock.path.name}.",
            steps=(command("lock", spec.id),),
        )
    return entry
