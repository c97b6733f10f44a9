"""`modelctl clean`: decide what to remove (partials, corrupted files, whole models, shadowed copies,
folders no registry model names), then remove it.

Nothing outside a storage root is ever removed and no symlink is followed out of one: a model
folder that is a symlink is removed as a link, and rmtree itself never follows symlinks.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelctl.core.errors import DownloadError, Step, UsageError, command, option, spoken
from modelctl.core.record import META_DIR
from modelctl.core.registry import ModelSpec, RegistrySource
from modelctl.store.storage import (
    OWNER_NAME,
    PARTIALS_DIR,
    QUARANTINE_DIR,
    Location,
    folder_lock,
    folder_names,
    locate,
    partial_downloads,
    partial_path,
)
from modelctl.store.usage import OWNED_ROOTS, model_states, tree_bytes, unnamed_folders
from modelctl.store.verify import verify_models
from modelctl.store.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removal:
    model: str | None  # None: a folder no registry model names (`--unnamed`)
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


@dataclass(frozen=True)
class CleanReport:
    """What `clean` planned (done None: --dry-run, or before confirming) or did."""

    plan: CleanPlan
    done: CleanResult | None
    registry: RegistrySource | None = None


def plan_clean(
    workspace: Workspace,
    specs: Sequence[ModelSpec],
    *,
    incomplete: bool,
    corrupted: bool,
    root: str | None,
    outdated: bool = False,
    use_cache: bool = True,
    shadowed: bool = False,
    unnamed: bool = False,
) -> CleanPlan:
    """What clean would remove, looking at every root (or only `root`) of every selected model.

    A folder whose record names another repo or revision is not this model's: never removed as
    the model, only by `unnamed`. `shadowed` and `unnamed` act on the project and legacy roots,
    and on the user root (shared by every project on the machine) only when `root` names it.
    """
    removals: list[Removal] = []
    bad_by_model: dict[str, tuple[str, ...]] = {}
    in_use: dict[str, Path] = {}
    if corrupted:
        report = verify_models(workspace, specs, use_cache=use_cache)
        bad_by_model = {v.spec.id: v.repairable for v in report.models}
        in_use = {v.spec.id: v.location.path for v in report.models if v.location is not None}
    whole = not (incomplete or corrupted or outdated or shadowed or unnamed)
    if shadowed:
        removals += _shadowed(workspace, specs, root)
    if unnamed:
        removals += _unnamed(workspace, root)
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
    return CleanPlan(tuple(_inside_roots(_outermost(removals), workspace)))


def _outermost(removals: list[Removal]) -> list[Removal]:
    """Drop what a whole folder's removal takes anyway (a shadowed copy's partials, say), once each."""
    folders = {r.path for r in removals if r.path == r.folder}
    seen: set[Path] = set()
    out = []
    for r in removals:
        if r.path in seen or any(f in r.path.parents for f in folders):
            continue
        seen.add(r.path)
        out.append(r)
    return out


def _whole_reason(workspace: Workspace, spec: ModelSpec, loc: Location, what: str = "whole model") -> str:
    """What removing the folder takes with it, said before it happens: files that are not the
    model's (the user's own) and other registry models kept in the same folder."""
    assert loc.scan is not None
    reason = what
    if loc.record is None:
        reason += ", a folder with no record: every file in it"
    else:
        listed = loc.record.by_path()
        extras = [path for path in loc.scan.files if path not in listed]
        if extras:
            shown = ", ".join(extras[:5]) + (", …" if len(extras) > 5 else "")
            reason += f", with {len(extras)} file(s) that are not the model's: {shown}"
    # Only a model whose folder name could be this one is located (a scan of its folders each).
    sharing = [
        other.id
        for other in workspace.registry.models
        if other.id != spec.id
        and loc.path.name in folder_names(other, loc.root)
        and any(o.path == loc.path for o in locate(other, workspace.roots) if o.exists)
    ]
    if sharing:
        reason += f"; also the folder of {', '.join(sharing)}"
    return reason


def _shadowed(workspace: Workspace, specs: Sequence[ModelSpec], root: str | None) -> list[Removal]:
    """Whole folders of the models' copies that another root's copy hides (never a copy in use)."""
    roots = (root,) if root is not None else OWNED_ROOTS
    every = model_states(workspace, workspace.registry.models)
    in_use = {s.found.path for s in every if s.found is not None}
    chosen = {spec.id for spec in specs}
    out = []
    for state in every:
        if state.spec.id not in chosen or state.found is None:
            continue
        for loc in state.shadowed:
            if loc.root.is_read_only or loc.root.name not in roots or loc.path in in_use:
                continue
            reason = _whole_reason(workspace, state.spec, loc, f"shadowed by {state.found.path}")
            out.append(_removal(state.spec, loc, loc.path, reason))
    return out


def _unnamed(workspace: Workspace, root: str | None) -> list[Removal]:
    """Whole folders that no registry model names, with what their record says they hold."""
    out = []
    for f in unnamed_folders(workspace, root):
        held = f"holds {f.repo_id}@{f.revision}" if f.repo_id else "no record: every file in it"
        reason = f"no registry model names it; {held}"
        out.append(Removal(None, f.root.name, f.path, f.path, f.disk_bytes, reason))
    return out


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
        # The model file each leftover belongs to: its key is a digest of the file's path (the
        # record's files), or its sidecar says so.
        listed = [f.path for f in loc.record.files] if loc.record is not None else []
        of = {partial_path(loc.path, rel).name.split(".", 1)[0]: rel for rel in listed}
        of.update(
            (p.name.split(".", 1)[0], rel)
            for rel, p in partial_downloads(loc.path)
            if not rel.startswith(META_DIR)
        )
        for item in sorted(partials.iterdir()):
            rel = of.get(item.name.split(".", 1)[0])
            out.append(_removal(spec, loc, item, f"partial download of {rel}" if rel else "partial download"))
    quarantine = meta / QUARANTINE_DIR
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
    return tree_bytes(path)


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


def _options(*names: str) -> tuple[Step, ...]:
    return tuple(option(name) for name in names)


def clean_selection(
    workspace: Workspace,
    ids: Sequence[str],
    everything: bool,
    *,
    incomplete: bool,
    corrupted: bool,
    outdated: bool = False,
    shadowed: bool = False,
    unnamed: bool = False,
) -> tuple[ModelSpec, ...]:
    """Named models; all models for --all, --incomplete, --corrupted, --outdated, --shadowed or
    --unnamed; else a usage error."""
    if unnamed and (ids or everything):
        raise UsageError(
            spoken(
                "{0} removes folders that no registry model names: it takes no MODEL or {1}.",
                *_options("unnamed", "all"),
            ),
            hint="Run {0} to see them, then {1}.",
            steps=(command("du"), command("clean", "", "unnamed", "dry-run")),
        )
    if ids or everything:
        return workspace.registry.select(ids, None, everything)
    if incomplete or corrupted or outdated or shadowed or unnamed:
        return workspace.registry.models
    raise UsageError(
        spoken(
            "Name the models to remove (MODEL ... or {0}), or choose {1} / {2} / {3} / {4} / {5}.",
            *_options("all", "incomplete", "corrupted", "outdated", "shadowed", "unnamed"),
        ),
        hint="Try {0} to see leftovers of interrupted downloads.",
        steps=(command("clean", "", "incomplete", "dry-run"),),
    )
