"""`modelctl outdated`: is each model's commit (in models.lock, else on disk) its revision's head?

Online: the head is resolved on the Hub as `download` and `lock` resolve it (download.py). The
commit compared is models.lock's when it locks the model (what `download` would fetch), else the
record's of the copy in use (workspace.model_state). A model neither locked nor on disk is "not
downloaded"; a folder without a record is "unrecorded": neither says anything about the Hub.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from modelctl.core.errors import UsageError, command
from modelctl.core.lockfile import locked_for, read_lock
from modelctl.core.record import RepoFile
from modelctl.core.registry import ModelSpec
from modelctl.core.settings import DownloadOptions
from modelctl.fetch.download import DownloadEvents, hub_access_for, resolve_snapshot
from modelctl.store.workspace import Workspace, model_state

CURRENT, BEHIND, NOT_DOWNLOADED, UNRECORDED = "current", "behind", "not downloaded", "unrecorded"
ADDED, CHANGED, REMOVED = "added", "changed", "removed"


@dataclass(frozen=True)
class ModelFreshness:
    """One model: the commit it is at, its revision's head, and the selected files that differ."""

    spec: ModelSpec
    status: str  # current | behind | not downloaded | unrecorded
    source: str | None  # "lock" or "disk": where `commit` comes from
    commit: str | None
    head: str | None
    changes: tuple[tuple[str, RepoFile], ...] = ()  # (added | changed: the head's file, removed: the
    # old one) by path, for the selected files that differ

    @property
    def bytes(self) -> int:
        """Bytes of the new and changed files: what bringing the model to the head would fetch."""
        return sum(size for _, _, size in self.differences())

    def differences(self) -> list[tuple[str, str, int]]:
        """(path, change, bytes of the head's file: 0 when removed) of each file that differs."""
        return [(f.path, change, 0 if change == REMOVED else f.size) for change, f in self.changes]


@dataclass(frozen=True)
class OutdatedReport:
    workspace: Workspace
    models: tuple[ModelFreshness, ...]

    @property
    def is_behind(self) -> bool:
        return any(m.status == BEHIND for m in self.models)


def check_outdated(
    workspace: Workspace, specs: Sequence[ModelSpec], options: DownloadOptions, events: DownloadEvents
) -> OutdatedReport:
    """Compare each model's locked or on-disk commit with its revision's head on the Hub."""
    if options.offline:
        raise UsageError(
            "outdated asks the Hub for each revision's head, and offline mode is on (HF_HUB_OFFLINE).",
            hint="Run it with HF_HUB_OFFLINE unset; {0} and `verify` work offline.",
            steps=(command("list"),),
        )
    lock = read_lock(workspace.registry)
    access = None
    out = []
    for spec in specs:
        locked = locked_for(lock, spec)
        if locked is not None:
            source, commit, files = "lock", locked.commit, locked.files
        else:
            state = model_state(spec, workspace.roots)
            record = state.record if state.found is not None and state.found.is_own else None
            if record is None:
                status = UNRECORDED if state.found is not None else NOT_DOWNLOADED
                out.append(ModelFreshness(spec, status, None, None, None))
                continue
            source, commit, files = "disk", record.commit, record.selected(spec.files)
        access = access or hub_access_for(workspace, options)
        head = resolve_snapshot(access, spec, options, events)
        if head.commit == commit:
            out.append(ModelFreshness(spec, CURRENT, source, commit, head.commit))
            continue
        changes = _changes(files, _selected(head.files, spec.files))
        out.append(ModelFreshness(spec, BEHIND, source, commit, head.commit, changes))
    return OutdatedReport(workspace, tuple(out))


def _selected(files: Sequence[RepoFile], patterns: Sequence[str]) -> tuple[RepoFile, ...]:
    if not patterns:
        return tuple(files)
    return tuple(f for f in files if any(fnmatch.fnmatchcase(f.path, p) for p in patterns))


def _changes(old: Sequence[RepoFile], new: Sequence[RepoFile]) -> tuple[tuple[str, RepoFile], ...]:
    """Per path: added or changed in new (new's file), or removed from it (old's); sorted by path."""
    before = {f.path: f for f in old}
    after = {f.path: f for f in new}
    out = []
    for path in sorted(before.keys() | after.keys()):
        was, now = before.get(path), after.get(path)
        if now is None:
            assert was is not None
            out.append((REMOVED, was))
        elif was is None:
            out.append((ADDED, now))
        elif not was.same_content(now):
            out.append((CHANGED, now))
    return tuple(out)
