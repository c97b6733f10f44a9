"""`modelctl lock`: resolve each model's revision to a commit and write models.lock.

Reading and writing models.lock is lockfile.py's; this asks the Hub, as `download` plans do
(download.py), which is why it is not in lockfile.py: download.py reads the lock, and the two
would import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelctl.core.errors import ModelctlError
from modelctl.core.lockfile import LockedModel, LockFile, write_lock
from modelctl.core.registry import ModelSpec
from modelctl.core.settings import DownloadOptions
from modelctl.fetch.download import (
    DownloadEvents,
    ModelFailure,
    failure_error,
    hub_access_for,
    resolve_snapshot,
    wanted_files,
)
from modelctl.store.workspace import Workspace


@dataclass(frozen=True)
class LockReport:
    """What `lock` wrote: the lock, and the ids of the models asked for (url models are not locked)."""

    lock: LockFile
    ids: tuple[str, ...]


@dataclass(frozen=True)
class LockCheck:
    """What `lock --check` found: the registry, its lock, and how they differ (none: in sync)."""

    registry: Path
    lock: Path
    differences: tuple[str, ...]

    @property
    def lock_exists(self) -> bool:
        return self.lock.exists()


def lock_models(
    workspace: Workspace, specs: Sequence[ModelSpec], options: DownloadOptions, events: DownloadEvents
) -> LockFile:
    """Resolve each model's revision to a commit and record its selected files in models.lock.

    A url model is skipped: its registry entry pins every file by sha256 already.
    A model that cannot be resolved does not stop the others: they are written to models.lock,
    then the failure is raised, naming every model that failed.
    """
    access = hub_access_for(workspace, options)
    locked = []
    failed = []
    for spec in specs:
        if spec.urls:  # each file's sha256 in models.yaml already pins a url model
            continue
        try:
            snapshot = resolve_snapshot(access, spec, options, events)
            files = wanted_files(spec, snapshot, options)
        except ModelctlError as err:
            failed.append(ModelFailure(spec, err))
            continue
        locked.append(LockedModel(spec.id, spec.repo_id, spec.revision, spec.files, snapshot.commit, files))
    if failed and not locked:
        raise failure_error(failed, (), "locked")
    lock = write_lock(workspace.registry, locked)
    if failed:
        raise failure_error(failed, [m.id for m in locked], f"locked in {lock.path.name}")
    return lock
