"""The workspace (the registry in use and its storage roots) and each model's status in it.

`model_state` judges a model without hashing or network, from its folders and their records (or
models.lock): missing, partial, unverified, present, or held by another repo or revision. `list`,
`info`, verify's choice of the copy in use, the API's `is_cached` and doctor read it. Nothing here
prints or writes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from modelctl.core.record import BAD, VERIFIED, Record, RepoFile, is_glob
from modelctl.core.registry import ModelSpec, Registry, load_registry
from modelctl.store.storage import (
    Location,
    RootState,
    locate,
    missing_files,
    probe_root,
    resolve_roots,
)

if TYPE_CHECKING:
    from modelctl.core.lockfile import LockedModel, LockFile

MISSING, PRESENT, PARTIAL, UNVERIFIED = "missing", "present", "partial", "unverified"


class Workspace(NamedTuple):
    """The registry in use and the state of its storage roots, looked at once per command."""

    registry: Registry
    roots: tuple[RootState, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{s.root.name} root skipped: {s.problem}" for s in self.roots if s.problem is not None)


def open_workspace(
    config: Path | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Workspace:
    """Load the registry (as find_registry chooses it) and probe its roots."""
    return workspace_of(load_registry(config, cwd=cwd, environ=environ), environ)


def workspace_of(registry: Registry, environ: Mapping[str, str] | None = None) -> Workspace:
    """A registry (as loaded, or changed by the API: another cache_dir) with its roots probed."""
    return Workspace(registry, tuple(probe_root(r) for r in resolve_roots(registry.storage, environ)))


class ModelState(NamedTuple):
    """A model as far as it can be known without hashing or network (stat and the record).

    `found` is the copy in use: the first root's copy that is complete by its record, else the
    first whose record names this model, else the first folder with no record at all. A folder
    whose record names another repo or revision is never this model's.
    """

    spec: ModelSpec
    status: str  # missing | partial | unverified | present | other repo | other revision
    locations: tuple[Location, ...]  # one per root, in precedence order
    missing: tuple[str, ...]  # expected files (or names, globs) with no file on disk
    mismatched: tuple[str, ...] = ()  # files whose size differs from the expected size
    record: Record | None = None
    found: Location | None = None
    unchecked: tuple[str, ...] = ()  # present, right size, content not verified since written or changed
    bad: tuple[str, ...] = ()  # content checked at this very stat and found not to match

    @property
    def manifest(self) -> Record | None:  # the name `info --json` has always used
        return self.record

    @property
    def shadowed(self) -> tuple[Location, ...]:
        found = self.found
        return tuple(loc for loc in self.locations if loc.exists and not loc.is_other and loc is not found)

    def sharing(self) -> dict[Path, tuple[Path, ...]]:
        """For each copy of the model, the other copies with which it shares files (hard links):
        an in-place edit of one of those files changes the other copy too. Stats only."""
        inodes: dict[Path, set[tuple[int, int]]] = {}
        for loc in self.locations:
            if not loc.exists or loc.scan is None or loc.is_other:
                continue
            seen = inodes.setdefault(loc.path, set())
            for rel in loc.scan.files:
                st = _stat(loc.path / rel)
                if st is not None and st.st_nlink > 1:
                    seen.add((st.st_dev, st.st_ino))
        return {
            path: tuple(other for other, theirs in inodes.items() if other != path and mine & theirs)
            for path, mine in inodes.items()
        }

    @property
    def others(self) -> tuple[Location, ...]:
        """Folders where this model would be, holding another repo or revision."""
        return tuple(loc for loc in self.locations if loc.is_other)

    @property
    def files(self) -> Mapping[str, int]:
        """path → size of the files in the folder found (none when none was found)."""
        found = self.found
        return found.scan.files if found and found.scan else {}

    @property
    def partials(self) -> tuple[str, ...]:
        found = self.found
        return found.scan.partials if found and found.scan else ()

    @property
    def bytes(self) -> int:
        found = self.found
        return found.scan.bytes if found and found.scan else 0

    @property
    def warnings(self) -> tuple[str, ...]:
        out = [f"{self.spec.id}: {loc.problem}" for loc in self.locations if loc.problem]
        for loc in self.others:
            assert loc.record is not None
            out.append(
                f"{self.spec.id}: {loc.path} holds {loc.record.repo_id}@{loc.record.revision}, not "
                f"{self.spec.repo_id}@{self.spec.revision}; it is left alone"
            )
        found = self.found
        if found and found.scan:
            out += [f"{self.spec.id}: {item}" for item in found.scan.skipped]
        return tuple(out)


def expected_files(
    spec: ModelSpec, record: Record | None, locked: LockedModel | None
) -> tuple[RepoFile, ...] | None:
    """The files the model must have, each with its last check; None when nothing says which.

    models.lock says, else the record's listing of the commit filtered by the registry's
    `files:` globs. A record read from a 0.1 manifest lists only what was written: it says
    nothing about completeness.
    """
    known = record.by_path() if record is not None else {}
    if locked is not None:
        out = []
        for f in locked.files:
            old = known.get(f.path)
            out.append(f._replace(checked=old.checked) if old is not None and old.same_content(f) else f)
        return tuple(out)
    if record is None or not record.is_planned:
        return None
    return record.selected(spec.files)


def model_state(spec: ModelSpec, roots: Sequence[RootState], locked: LockedModel | None = None) -> ModelState:
    """Where the model is, and whether every expected file is there and verified (by stat)."""
    locations = locate(spec, roots, commit=locked.commit if locked is not None else None)
    judged = [_judge(spec, loc, locked) for loc in locations if loc.exists and not loc.is_other]
    chosen = (
        next((j for j in judged if j.status == PRESENT), None)
        or next((j for j in judged if j.found is not None and j.found.is_own), None)
        or (judged[0] if judged else None)
    )
    if chosen is None:
        status = MISSING
        other = next((loc for loc in locations if loc.is_other), None)
        if other is not None:
            status = other.identity
        return ModelState(spec, status, locations, ())
    return chosen._replace(locations=locations)


def _judge(spec: ModelSpec, loc: Location, locked: LockedModel | None) -> ModelState:
    scan = loc.scan
    assert scan is not None
    expected = expected_files(spec, loc.record, locked)
    sizes = scan.files
    if expected is None:
        missing = missing_files(spec, scan)
        if not scan.files and not missing:
            missing = ("(any file: the folder is empty)",)
        status = PARTIAL if missing or scan.partials else UNVERIFIED
        return ModelState(spec, status, (), missing, (), loc.record, loc, unchecked=tuple(sizes))
    missing_l, mismatched, unchecked, bad = [], [], [], []
    for f in expected:
        st = _stat(loc.path / f.path) if f.path in sizes else None
        state = f.state_of(st)
        if st is None:
            missing_l.append(f.path)
        elif st.st_size != f.size:
            mismatched.append(f.path)
        elif state == BAD:
            bad.append(f.path)
        elif state != VERIFIED:
            unchecked.append(f.path)
    listed = {f.path for f in expected}
    missing_l += [
        name
        for name in (*spec.files, *spec.checksums)
        if not is_glob(name) and name not in listed | set(sizes)
    ]
    if not expected and not missing_l:
        missing_l.append("(no file of the commit matches `files:`)")
    if missing_l or mismatched or bad or scan.partials:
        status = PARTIAL
    else:
        status = UNVERIFIED if unchecked else PRESENT
    return ModelState(
        spec,
        status,
        (),
        tuple(dict.fromkeys(missing_l)),
        tuple(mismatched),
        loc.record,
        loc,
        tuple(unchecked),
        tuple(bad),
    )


def _stat(path: Path) -> os.stat_result | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


class ListReport(NamedTuple):
    """The answer of `modelctl list` and `modelctl info`."""

    workspace: Workspace
    models: tuple[ModelState, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.workspace.warnings + tuple(w for m in self.models for w in m.warnings)

    def count_status(self, status: str) -> int:
        return sum(1 for m in self.models if m.status == status)

    @property
    def required_missing(self) -> int:
        return sum(1 for m in self.models if m.spec.required and m.status != PRESENT)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.models)


class InfoReport(ListReport):
    """The answer of `modelctl info`: the same states as `list`, shown one model at a time."""


def list_models(
    workspace: Workspace,
    ids: Sequence[str] = (),
    size: str | None = None,
) -> ListReport:
    """State of the selected models (all when nothing is named)."""
    specs = workspace.registry.select(ids, size)
    lock = lock_in_force(workspace.registry)
    return ListReport(
        workspace, tuple(model_state(s, workspace.roots, _locked_or_none(lock, s)) for s in specs)
    )


def lock_in_force(registry: Registry) -> LockFile | None:
    """The registry's lock (models.lock beside models.yaml), if there is one (lockfile.py is
    imported only when the file exists)."""
    if registry.source.is_bundled or not registry.lock_path.exists():
        return None
    from modelctl.core.lockfile import read_lock  # start-up: only a project with a lock pays for it

    return read_lock(registry)


def _locked_or_none(lock: LockFile | None, spec: ModelSpec) -> LockedModel | None:
    """The lock entry for spec when it still matches the registry (list does not judge staleness)."""
    entry = lock.models.get(spec.id) if lock is not None else None
    return entry if entry is not None and entry.matches(spec) else None
