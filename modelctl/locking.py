"""`modelctl lock`: resolve each model's revision to a commit and write models.lock.

Reading and writing models.lock is lockfile.py's; this asks the Hub, as `download` plans do
(download.py), which is why it is not in lockfile.py: download.py reads the lock, and the two
would import each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelctl.download import DownloadEvents, hub_access_for, resolve_snapshot, wanted_files
from modelctl.lockfile import LockedModel, LockFile, write_lock
from modelctl.registry import ModelSpec
from modelctl.settings import DownloadOptions
from modelctl.workspace import Workspace


def lock_models(
    workspace: Workspace, specs: Sequence[ModelSpec], options: DownloadOptions, events: DownloadEvents
) -> LockFile:
    """Resolve each model's revision to a commit and record its selected files in models.lock."""
    access = hub_access_for(workspace, options)
    locked = []
    for spec in specs:
        snapshot = resolve_snapshot(access, spec, options, events)
        files = wanted_files(spec, snapshot, options)
        locked.append(LockedModel(spec.id, spec.repo_id, spec.revision, spec.files, snapshot.commit, files))
    return write_lock(workspace.registry, locked)
