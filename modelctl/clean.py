"""`modelctl clean`: decide what to remove (partials, corrupted files, whole models), then remove it.

Nothing outside a storage root is ever removed and no symlink is followed out of one: a model
folder that is a symlink is removed as a link, and rmtree itself never follows symlinks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelctl.errors import DownloadError, UsageError
from modelctl.record import META_DIR
from modelctl.registry import ModelSpec
from modelctl.storage import OWNER_NAME, PARTIALS_DIR, Location, folder_lock, locate
from modelctl.workspace import Workspace

QUARANTINE = "quarantine"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removal:
    model: str
    root: str
    folder: Path  # the model folder whose lock guards this removal
    path: Path
    bytes: int
    reason: str


@dataclass(frozen=True)
class CleanPlan:
    """What clean would remove; a model in use by another modelctl is found out when removing."""

    removals: tuple[Removal, ...]

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)


@dataclass(frozen=True)
class CleanResult:
    plan: CleanPlan
    removed: tuple[Removal, ...]
    failed: tuple[tuple[Removal, str], ...]


def plan_clean(
    workspace: Workspace,
    specs: Sequence[ModelSpec],
    *,
    incomplete: bool,
    corrupted: bool,
    root: str | None,
    outdated: bool = False,
    use_cache: bool = True,
) -> CleanPlan:
    """What clean would remove, looking at every root (or only `root`) of every selected model.

    A folder whose record names another repo or revision is not this model's: never removed.
    """
    removals: list[Removal] = []
    bad_by_model: dict[str, tuple[str, ...]] = {}
    in_use: dict[str, Path] = {}
    if corrupted:
        from modelctl.verify import verify_models

        report = verify_models(workspace, specs, use_cache=use_cache)
        bad_by_model = {v.spec.id: v.repairable for v in report.models}
        in_use = {v.spec.id: v.location.path for v in report.models if v.location is not None}
    whole = not (incomplete or corrupted or outdated)
    for spec in specs:
        for loc in locate(spec, workspace.roots):
            if not loc.exists or loc.is_other:
                continue
            if loc.root.is_read_only or (root is not None and loc.root.name != root):
                continue
            if incomplete:
                removals += _incomplete(spec, loc)
            if corrupted and in_use.get(spec.id) == loc.path:  # verify judged the copy in use
                removals += _corrupted(spec, loc, bad_by_model.get(spec.id, ()))
            if outdated and loc.record is not None:
                removals += [
                    _removal(spec, loc, loc.path / rel, f"not in commit {loc.record.commit[:12]}")
                    for rel in loc.record.outdated
                    if (loc.path / rel).is_file() and rel not in loc.record.by_path()
                ]
            if whole:
                removals.append(_removal(spec, loc, loc.path, _whole_reason(workspace, spec, loc)))
    return CleanPlan(tuple(_inside_roots(removals, workspace)))


def _whole_reason(workspace: Workspace, spec: ModelSpec, loc: Location) -> str:
    """What removing the folder takes with it, said before it happens: files that are not the
    model's (the user's own) and other registry models kept in the same folder."""
    assert loc.scan is not None
    reason = "whole model"
    if loc.record is None:
        reason += ", a folder with no record: every file in it"
    else:
        listed = loc.record.by_path()
        extras = [f.path for f in loc.scan.files if f.path not in listed]
        if extras:
            shown = ", ".join(extras[:5]) + (", …" if len(extras) > 5 else "")
            reason += f", with {len(extras)} file(s) that are not the model's: {shown}"
    sharing = [
        other.id
        for other in workspace.registry.models
        if other.id != spec.id and any(o.path == loc.path for o in locate(other, workspace.roots) if o.exists)
    ]
    if sharing:
        reason += f"; also the folder of {', '.join(sharing)}"
    return reason


def _removal(spec: ModelSpec, loc: Location, path: Path, reason: str) -> Removal:
    return Removal(spec.id, loc.root.name, loc.path, path, _size(path), reason)


def _incomplete(spec: ModelSpec, loc: Location) -> list[Removal]:
    assert loc.scan is not None
    out: list[Removal] = []
    meta = loc.path / META_DIR
    if not meta.is_dir() or meta.is_symlink():
        return out
    partials = meta / PARTIALS_DIR
    if partials.is_dir() and not partials.is_symlink():
        out += [_removal(spec, loc, item, "partial download") for item in sorted(partials.iterdir())]
    quarantine = meta / QUARANTINE
    if quarantine.is_dir() and not quarantine.is_symlink():
        out += [_removal(spec, loc, item, "quarantined by ensure") for item in sorted(quarantine.iterdir())]
    if (meta / OWNER_NAME).is_file():
        out.append(_removal(spec, loc, meta / OWNER_NAME, "stale lock owner"))
    out += [_removal(spec, loc, tmp, "temporary file") for tmp in sorted(meta.glob("*.tmp"))]
    return out


def _corrupted(spec: ModelSpec, loc: Location, bad: Sequence[str]) -> list[Removal]:
    paths = [loc.path / rel for rel in bad]
    return [_removal(spec, loc, p, "fails verify") for p in paths if p.is_file() or p.is_symlink()]


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):  # os.walk does not follow symlinks by default
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _inside_roots(removals: list[Removal], workspace: Workspace) -> list[Removal]:
    """Keep only paths whose parent folder really lies inside their root (symlinks resolved)."""
    roots = {s.root.name: Path(os.path.realpath(s.root.path)) for s in workspace.roots}
    kept = []
    for r in removals:
        where = Path(os.path.realpath(r.path.parent)) / r.path.name
        root = roots.get(r.root)
        if root is not None and where != root and where.is_relative_to(root):
            kept.append(r)
    return kept


def run_clean(plan: CleanPlan) -> CleanResult:
    """Remove what the plan lists, each model under its folder's lock (skipped if in use)."""
    removed: list[Removal] = []
    failed: list[tuple[Removal, str]] = []
    by_folder: dict[Path, list[Removal]] = {}
    for r in plan.removals:
        by_folder.setdefault(r.folder, []).append(r)
    for folder, items in by_folder.items():
        try:
            with folder_lock(folder, 0.0, lambda pid: None):
                for r in items:
                    try:
                        _remove(r.path)
                        log.info("removed %s (%s, %d bytes)", r.path, r.reason, r.bytes)
                        removed.append(r)
                    except OSError as err:
                        failed.append((r, err.strerror or str(err)))
        except DownloadError as err:  # another modelctl holds the lock
            failed += [(r, err.message) for r in items]
        except OSError as err:
            failed += [(r, err.strerror or str(err)) for r in items]
    return CleanResult(plan, tuple(removed), tuple(failed))


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def clean_selection(
    workspace: Workspace,
    ids: Sequence[str],
    everything: bool,
    *,
    incomplete: bool,
    corrupted: bool,
    outdated: bool = False,
) -> tuple[ModelSpec, ...]:
    """Named models; all models for --all, --incomplete, --corrupted or --outdated; else a usage error."""
    if ids or everything:
        return workspace.registry.select(ids, None, everything)
    if incomplete or corrupted or outdated:
        return workspace.registry.models
    raise UsageError(
        "Name the models to remove (MODEL ... or --all), or choose --incomplete / --corrupted / --outdated.",
        hint="Try `modelctl clean --incomplete --dry-run` to see leftovers of interrupted downloads.",
    )
