"""Storage roots in precedence order, and what a model's folder holds on disk.

A model lives in `<root>/<folder_name>/`. Roots are searched user → project → legacy; the first
root whose folder exists is where the model is *found*, later ones are *shadowed*. Nothing here
follows a symlink out of a root.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from modelctl.registry import ModelSpec, StorageConfig

ROOT_NAMES = ("user", "project", "legacy")
# Per-model metadata (manifest, verification cache, quarantine) lives in this folder.
META_DIR = ".modelctl"
# huggingface_hub's `--local-dir` metadata; skipped so models fetched by `hf` can be adopted.
FOREIGN_META_DIRS = (".cache",)
# A download in progress: bytes in `<file>.partial`, its sidecar in `<file>.partial.json`.
PARTIAL_SUFFIX = ".partial"
SIDECAR_SUFFIX = ".partial.json"
FOREIGN_PARTIAL_SUFFIXES = (".incomplete",)
_GLOB_CHARS = frozenset("*?[")


class Root(NamedTuple):
    """A storage root: its name (user, project, legacy) and absolute path."""

    name: str
    path: Path


class RootState(NamedTuple):
    """What was found when a root was looked at."""

    root: Root
    exists: bool
    is_readable: bool
    is_writable: bool
    problem: str | None = None

    @property
    def is_usable(self) -> bool:
        return self.exists and self.is_readable and self.problem is None


class LocalFile(NamedTuple):
    """A file of a model folder: path relative to the folder (POSIX), size in bytes."""

    path: str
    size: int


class FolderScan(NamedTuple):
    """The files of one model folder, without metadata and partial downloads."""

    files: tuple[LocalFile, ...]
    partials: tuple[str, ...]
    skipped: tuple[str, ...]  # symlinks not followed, entries that could not be read

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


class Location(NamedTuple):
    """A model's folder under one root."""

    root: Root
    path: Path
    exists: bool
    scan: FolderScan | None = None
    problem: str | None = None


def user_root_path(storage: StorageConfig, environ: Mapping[str, str] | None = None) -> Path:
    """MODELCTL_HOME > storage.user in the registry > the platform's user data dir."""
    env = os.environ if environ is None else environ
    if env.get("MODELCTL_HOME"):
        return Path(env["MODELCTL_HOME"]).expanduser().absolute()
    if storage.user is not None:
        return storage.user
    import platformdirs  # imported here: resolving it is only needed when no path is given

    return Path(platformdirs.user_data_dir("modelctl", appauthor=False))


def resolve_roots(storage: StorageConfig, environ: Mapping[str, str] | None = None) -> tuple[Root, ...]:
    """The three roots in precedence order."""
    return (
        Root("user", user_root_path(storage, environ)),
        Root("project", storage.project),
        Root("legacy", storage.legacy),
    )


def probe_root(root: Root) -> RootState:
    """Look at a root without changing it: exists, readable, writable (or creatable)."""
    path = root.path
    if not path.exists():
        return RootState(root, exists=False, is_readable=False, is_writable=_is_creatable(path))
    if not path.is_dir():
        return RootState(root, True, False, False, problem=f"{path} is not a folder")
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as err:
        reason = err.strerror or str(err)
        return RootState(root, True, False, False, problem=f"{path} cannot be read ({reason})")
    return RootState(root, True, True, os.access(path, os.W_OK | os.X_OK))


def _is_creatable(path: Path) -> bool:
    for parent in path.parents:
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def _is_inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def locate(spec: ModelSpec, states: Iterable[RootState]) -> tuple[Location, ...]:
    """The model's folder under every root, in precedence order, scanned where it exists."""
    out = []
    for state in states:
        folder = state.root.path / spec.folder_name
        if not state.is_usable:
            out.append(Location(state.root, folder, exists=False))  # the root itself is warned about
            continue
        if not (folder.is_dir() or folder.is_symlink()):
            out.append(Location(state.root, folder, exists=False))
            continue
        if folder.is_symlink() and not _is_inside(folder, state.root.path):
            problem = f"{folder} is a symlink to outside the {state.root.name} root; ignored"
            out.append(Location(state.root, folder, exists=False, problem=problem))
            continue
        if not folder.is_dir():
            out.append(Location(state.root, folder, exists=False, problem=f"{folder} is not a folder"))
            continue
        out.append(Location(state.root, folder, exists=True, scan=scan_folder(folder, state.root.path)))
    return tuple(out)


def scan_folder(folder: Path, root: Path) -> FolderScan:
    """List a model folder's files (sizes from lstat), its partial downloads, and what was skipped."""
    files: list[LocalFile] = []
    partials: list[str] = []
    skipped: list[str] = []
    root_real = root.resolve()
    stack = [(folder, "")]
    while stack:
        current, prefix = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as err:
            skipped.append(f"{prefix or '.'}: cannot be read ({err.strerror or err})")
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if not prefix and entry.name in (META_DIR, *FOREIGN_META_DIRS):
                continue
            try:
                if entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if not target.is_relative_to(root_real):
                        skipped.append(f"{rel}: symlink to outside the root, not followed")
                        continue
                    if target.is_dir():
                        skipped.append(f"{rel}: symlinked folder, not followed")
                        continue
                    size = target.stat().st_size
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))
                    continue
                else:
                    size = entry.stat(follow_symlinks=False).st_size
            except OSError as err:
                skipped.append(f"{rel}: cannot be read ({err.strerror or err})")
                continue
            if entry.name.endswith((PARTIAL_SUFFIX, SIDECAR_SUFFIX, *FOREIGN_PARTIAL_SUFFIXES)):
                partials.append(rel)
            else:
                files.append(LocalFile(rel, size))
    files.sort(key=lambda f: f.path)
    return FolderScan(tuple(files), tuple(sorted(partials)), tuple(sorted(skipped)))


def is_glob(pattern: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in pattern)


def missing_files(spec: ModelSpec, scan: FolderScan) -> tuple[str, ...]:
    """Expected names and globs with no file on disk, judged from the registry alone.

    A literal name must exist; a glob must match at least one file (fnmatch, where '*' also
    matches '/', as huggingface_hub's allow_patterns do); a pinned checksum's file must exist.
    """
    present = {f.path for f in scan.files}
    expected = list(dict.fromkeys((*spec.files, *spec.checksums)))
    missing = []
    for pattern in expected:
        if is_glob(pattern):
            if not any(fnmatch.fnmatchcase(name, pattern) for name in present):
                missing.append(pattern)
        elif pattern not in present:
            missing.append(pattern)
    return tuple(missing)
