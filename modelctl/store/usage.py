"""Disk use across the storage roots (`modelctl du`): every model folder, whose it is, and its bytes.

A folder directly under a root is `in use` (the copy a registry model uses), `shadowed` (a copy of a
registry model that another root's copy hides) or `unnamed` (no entry of this registry maps to it:
another project's model in the shared user root, a model since dropped from models.yaml, a folder
made by hand; its record, if any, says what it holds). Each folder says how `clean` removes it.
Nothing here prints or writes, and no symlink is followed: a symlinked folder is only reported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelctl.core.errors import Step, command
from modelctl.core.record import META_DIR, RepoFile, read_record
from modelctl.core.registry import ModelSpec
from modelctl.store.storage import (
    PARTIALS_DIR,
    PROJECT_ROOTS,
    QUARANTINE_DIR,
    Location,
    Root,
    RootState,
    probe_root,
    scan_folder,
)
from modelctl.store.workspace import ModelState, Workspace, lock_in_force, model_state

IN_USE, SHADOWED, UNNAMED = "in use", "shadowed", "unnamed"
# `clean --shadowed` and `clean --unnamed` act on the roots a project owns; the user root is shared
# by every project on the machine (one project's unnamed folder is another's model), so there only
# when it is named with `--root user`. The shared root is read-only: never.
OWNED_ROOTS = PROJECT_ROOTS  # what `clean` and `du --unnamed` look in unless --root names another


@dataclass(frozen=True)
class FolderUse:
    """One folder directly under a root: whose copy it is, and its bytes on disk."""

    root: Root
    path: Path
    kind: str  # in use | shadowed | unnamed
    models: tuple[str, ...]  # registry ids whose copy the folder is (none: unnamed)
    shadowed_by: Path | None  # shadowed: the copy in use that hides it
    repo_id: str | None  # what its record says it holds (None: no record)
    revision: str | None
    bytes: int  # the model's files (without .modelctl/ and .cache/)
    partial_bytes: int  # partial downloads in .modelctl/partials/
    quarantine_bytes: int  # files ensure set aside in .modelctl/quarantine/
    disk_bytes: int  # everything in the folder, metadata included: what removing it frees
    linked_bytes: int = 0  # model files that share their bytes (hard links) with another name

    @property
    def clean_steps(self) -> tuple[Step, ...]:
        """The `clean` commands that remove the folder, and its leftovers alone."""
        if self.root.is_read_only:
            return ()
        where = f"root {self.root.name}"
        if self.kind == UNNAMED:
            return (command("clean", "", "unnamed", where),)
        model = self.models[0]
        whole = command("clean", model, *(["shadowed"] if self.kind == SHADOWED else []), where)
        leftovers = self.partial_bytes or self.quarantine_bytes
        return (whole, *([command("clean", model, "incomplete", where)] if leftovers else []))


@dataclass(frozen=True)
class RootUse:
    state: RootState
    folders: tuple[FolderUse, ...]

    def total(self, field: str, kind: str | None = None) -> int:
        return sum(getattr(f, field) for f in self.folders if kind is None or f.kind == kind)


@dataclass(frozen=True)
class DiskUse:
    """The answer of `modelctl du`."""

    workspace: Workspace
    roots: tuple[RootUse, ...]
    warnings: tuple[str, ...]

    @property
    def folders(self) -> tuple[FolderUse, ...]:
        return tuple(f for r in self.roots for f in r.folders)

    def total(self, field: str, kind: str | None = None) -> int:
        return sum(r.total(field, kind) for r in self.roots)


def disk_use(workspace: Workspace) -> DiskUse:
    """Every folder directly under every root, judged against the registry's models."""
    states = model_states(workspace, workspace.registry.models)
    named: dict[Path, list[str]] = {}
    in_use: dict[Path, list[str]] = {}
    hidden_by: dict[Path, Path] = {}
    for state in states:
        for loc in state.locations:
            if loc.exists and not loc.is_other:
                named.setdefault(loc.path, []).append(state.spec.id)
        if state.found is not None:
            in_use.setdefault(state.found.path, []).append(state.spec.id)
            for loc in state.shadowed:
                hidden_by.setdefault(loc.path, state.found.path)
    roots, warnings = [], list(workspace.warnings)
    for root_state in workspace.roots:
        folders = []
        for folder in _folders(root_state, warnings):
            ids = tuple(in_use.get(folder) or named.get(folder) or ())
            kind = IN_USE if folder in in_use else SHADOWED if ids else UNNAMED
            folders.append(_folder_use(root_state.root, folder, kind, ids, hidden_by.get(folder)))
        roots.append(RootUse(root_state, tuple(folders)))
    return DiskUse(workspace, tuple(roots), tuple(warnings))


def model_states(workspace: Workspace, specs: Sequence[ModelSpec]) -> list[ModelState]:
    """Each model's state as `list` judges it (models.lock in force when it matches the entry)."""
    lock = lock_in_force(workspace.registry)
    out = []
    for spec in specs:
        entry = lock.models.get(spec.id) if lock is not None else None
        out.append(model_state(spec, workspace.roots, entry if entry and entry.matches(spec) else None))
    return out


def unnamed_folders(workspace: Workspace, root: str | None) -> tuple[FolderUse, ...]:
    """Folders no registry model names, in the project and legacy roots (the user root: only when
    `root` is "user"; the read-only shared root: never)."""
    chosen = (root,) if root is not None else OWNED_ROOTS
    return tuple(
        f
        for f in disk_use(workspace).folders
        if f.kind == UNNAMED and f.root.name in chosen and not f.root.is_read_only
    )


def shadowing_copy(workspace: Workspace, spec: ModelSpec, folder: Path) -> Location | None:
    """The copy in use when it is not `folder` (a copy just written there is then shadowed).

    The roots are looked at again: a download may have created the root it wrote into.
    """
    roots = tuple(probe_root(s.root) for s in workspace.roots)
    state = model_states(workspace._replace(roots=roots), [spec])[0]
    found = state.found
    if found is None or _same(found.path, folder):
        return None
    return found


def _same(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return a == b


def _folders(state: RootState, warnings: list[str]) -> list[Path]:
    """The folders directly under a usable root; hidden entries and plain files are not models."""
    if not state.is_usable:
        return []
    try:
        with os.scandir(state.root.path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        warnings.append(f"{state.root.name} root {state.root.path} cannot be read ({err.strerror or err})")
        return []
    out = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            if os.path.isdir(entry.path):
                warnings.append(f"{entry.path} is a symlink to {os.path.realpath(entry.path)}: not counted")
            continue
        if entry.is_dir(follow_symlinks=False):
            out.append(Path(entry.path))
    return out


def _folder_use(
    root: Root, folder: Path, kind: str, ids: tuple[str, ...], hidden_by: Path | None
) -> FolderUse:
    record = read_record(folder)
    meta = folder / META_DIR
    return FolderUse(
        root=root,
        path=folder,
        kind=kind,
        models=ids,
        shadowed_by=hidden_by if kind == SHADOWED else None,
        repo_id=record.repo_id if record else None,
        revision=record.revision if record else None,
        bytes=scan_folder(folder, root.path).bytes,
        partial_bytes=tree_bytes(meta / PARTIALS_DIR) if not meta.is_symlink() else 0,
        quarantine_bytes=tree_bytes(meta / QUARANTINE_DIR) if not meta.is_symlink() else 0,
        disk_bytes=tree_bytes(folder),
        linked_bytes=_linked_bytes(folder, record.files if record else ()),
    )


def _linked_bytes(folder: Path, files: Sequence[RepoFile]) -> int:
    """Bytes of the model's files that are hard links (another copy, the HF cache): removing this
    folder frees none of them, and an in-place edit of one name changes the others."""
    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            st = (folder / f.path).lstat()
            if st.st_nlink > 1:
                total += st.st_size
    return total


def tree_bytes(path: Path) -> int:
    """Bytes under path by lstat, as allocated: a symlink counts as itself, never as what it points
    to, and a sparse file (a partial download with holes) as the blocks it holds, not its size."""
    try:
        if path.is_symlink() or path.is_file():
            return _allocated(path.lstat())
    except OSError:
        return 0
    total = 0
    for folder, _dirs, files in os.walk(path):  # os.walk does not follow symlinks by default
        for name in files:
            with contextlib.suppress(OSError):
                total += _allocated(os.lstat(os.path.join(folder, name)))
    return total


def _allocated(st: os.stat_result) -> int:
    """The file's size, or less when it has holes (`du` counts blocks; a small file is its size)."""
    blocks = getattr(st, "st_blocks", None)
    return st.st_size if blocks is None else min(st.st_size, blocks * 512)
