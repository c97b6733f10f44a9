"""Storage roots in precedence order, and what a model's folder holds on disk.

A model lives in `<root>/<folder_name>/`. Roots are searched user → project → legacy; the first
root whose folder exists is where the model is *found*, later ones are *shadowed*. Nothing here
follows a symlink out of a root.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from modelctl.core.errors import DownloadError, command, option
from modelctl.core.record import (
    FOREIGN_META_DIRS,
    META_DIR,
    OWN,
    UNRECORDED,
    Record,
    identity,
    is_glob,
    trusted_record,
)
from modelctl.core.registry import ROOT_KIND, ROOT_KINDS, ModelSpec, RootKind, StorageConfig

if TYPE_CHECKING:
    from filelock import BaseFileLock

_log = logging.getLogger(__name__)

ROOT_NAMES = tuple(kind.name for kind in ROOT_KINDS)
READ_ONLY_ROOTS = tuple(kind.name for kind in ROOT_KINDS if not kind.is_writable)
WRITABLE_ROOTS = tuple(kind.name for kind in ROOT_KINDS if kind.is_writable)
PROJECT_ROOTS = tuple(kind.name for kind in ROOT_KINDS if kind.is_writable and not kind.is_machines)
# A download in progress: bytes in `.modelctl/partials/<key>.partial`, described by `<key>.json`,
# where no repo path can land (a repo may well hold `x.partial`) and whatever a file's name length.
PARTIALS_DIR = "partials"
QUARANTINE_DIR = "quarantine"  # .modelctl/quarantine: bad files ensure moved aside, kept until repaired
PARTIAL_SUFFIX = ".partial"
SIDECAR_SUFFIX = ".json"
# Which byte ranges of the partial are written: (start, end) pairs of little-endian uint64, one
# appended after each chunk's write, so a rerun after kill -9 knows what it holds (engine.py).
RANGES_SUFFIX = ".ranges"
RANGE_RECORD = "<QQ"  # struct format of one record of that log


class Root(NamedTuple):
    """A storage root: its name (a ROOT_KINDS row, or "custom" for `--to PATH`) and absolute path."""

    name: str
    path: Path

    @property
    def kind(self) -> RootKind | None:
        return ROOT_KIND.get(self.name)

    @property
    def is_read_only(self) -> bool:
        return self.name in READ_ONLY_ROOTS

    @property
    def is_machines(self) -> bool:
        """The machine's root, shared by every project (folders named from the repo)."""
        kind = self.kind
        return kind is not None and kind.is_machines


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


class FolderScan(NamedTuple):
    """The files of one model folder (without its metadata) and its downloads in flight."""

    files: Mapping[str, int]  # path relative to the folder (POSIX) → size in bytes, sorted by path
    partials: tuple[str, ...]  # files with a partial download: their paths (as the sidecar names them)
    skipped: tuple[str, ...]  # symlinks not followed, entries that could not be read

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


class Location(NamedTuple):
    """A model's folder under one root, and whose files its record says they are."""

    root: Root
    path: Path
    exists: bool
    scan: FolderScan | None = None
    problem: str | None = None
    record: Record | None = None
    identity: str = UNRECORDED  # own | unverified (no record) | other repo | other revision

    @property
    def is_own(self) -> bool:
        return self.exists and self.identity == OWN

    @property
    def is_other(self) -> bool:
        return self.exists and self.identity not in (OWN, UNRECORDED)


def hf_cache_path(environ: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face cache, resolved as huggingface_hub does, from the environment at call time.

    HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE (its old name) > HF_HOME/hub > $XDG_CACHE_HOME/huggingface/hub
    > ~/.cache/huggingface/hub. Read here rather than from huggingface_hub.constants, which reads
    the environment once at import (and importing it costs ~200 ms).
    """
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    cache = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "huggingface" / "hub"


def resolve_roots(storage: StorageConfig, environ: Mapping[str, str] | None = None) -> tuple[Root, ...]:
    """The roots in ROOT_KINDS order (user, shared when configured, project, legacy)."""
    paths = ((kind.name, storage.path_of(kind.name, environ)) for kind in ROOT_KINDS)
    return tuple(Root(name, path) for name, path in paths if path is not None)


def probe_root(root: Root) -> RootState:
    """Look at a root without changing it: exists, readable, writable (or creatable)."""
    path = root.path
    if not path.exists():
        creatable = not root.is_read_only and _is_creatable(path)
        return RootState(root, exists=False, is_readable=False, is_writable=creatable)
    if not path.is_dir():
        return RootState(root, True, False, False, problem=f"{path} is not a folder")
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as err:
        reason = err.strerror or str(err)
        return RootState(root, True, False, False, problem=f"{path} cannot be read ({reason})")
    return RootState(root, True, True, not root.is_read_only and os.access(path, os.W_OK | os.X_OK))


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


def repo_folder_name(repo_id: str, revision: str) -> str:
    """The user root's folder for a repo at a revision: `org--name`, `org--name@rev` off main.

    The user root is shared by every project on the machine, and two projects may give one id
    to different repos or revisions: naming folders by what they hold (as the Hugging Face
    cache does) keeps them apart.
    """
    from urllib.parse import quote

    name = repo_id.replace("/", "--")
    return name if revision == "main" else f"{name}@{quote(revision, safe='')}"


def folder_names(
    spec: ModelSpec, root: Root, revision: str | None = None, commit: str | None = None
) -> tuple[str, ...]:
    """Where the model may be under root: the layout's folder first, then the 0.1 layout's.

    The user root names folders from the repo; the other roots from `local_dir` or the id. A
    user-root folder of the 0.1 layout (named by id) is taken only if its record names this repo.
    A commit pinned by models.lock has a user-root folder of its own, `org--name@<commit>`, used
    when the branch's `org--name` holds another commit: two projects on one machine that lock
    different commits of one branch never rewrite each other's folder.
    """
    if not root.is_machines:
        return (spec.folder_name,)
    if spec.urls:  # not a Hub repo: named by the id, under a prefix no `org--name` folder has
        return (f"urls--{spec.id}",)
    names = [repo_folder_name(spec.repo_id, revision or spec.revision), spec.folder_name]
    if commit is not None:
        names.insert(1, repo_folder_name(spec.repo_id, commit))
    return tuple(dict.fromkeys(names))


def is_pinned_elsewhere(root: Root, record: Record | None, commit: str | None) -> bool:
    """A user-root folder holding another commit than the one models.lock pins: another project's
    copy of the branch, never this model's (its pinned commit has its own folder)."""
    return commit is not None and root.is_machines and record is not None and record.commit != commit


def locate(
    spec: ModelSpec, states: Iterable[RootState], revision: str | None = None, commit: str | None = None
) -> tuple[Location, ...]:
    """The model's folder under every root, in precedence order, scanned and identified.

    commit: the one models.lock pins; in the user root only a folder holding it is the model's.
    """
    revision = revision or spec.revision
    out = []
    for state in states:
        names = folder_names(spec, state.root, revision, commit)
        first: Location | None = None
        for name in names:
            loc = _locate_one(spec, state, state.root.path / name, revision)
            if is_pinned_elsewhere(state.root, loc.record, commit):
                continue  # another project's commit of the branch
            if first is None or (not first.exists and loc.is_own):
                first = loc
            if first.exists:
                break
        out.append(first or Location(state.root, state.root.path / names[-1], exists=False))
    return tuple(out)


def _locate_one(spec: ModelSpec, state: RootState, folder: Path, revision: str) -> Location:
    if not state.is_usable:
        return Location(state.root, folder, exists=False)  # the root itself is warned about
    if not (folder.is_dir() or folder.is_symlink()):
        return Location(state.root, folder, exists=False)
    if folder.is_symlink() and not _is_inside(folder, state.root.path):
        problem = f"{folder} is a symlink to outside the {state.root.name} root; ignored"
        return Location(state.root, folder, exists=False, problem=problem)
    if not folder.is_dir():
        return Location(state.root, folder, exists=False, problem=f"{folder} is not a folder")
    record = trusted_record(folder, is_read_only=state.root.is_read_only)
    return Location(
        state.root,
        folder,
        exists=True,
        scan=scan_folder(folder, state.root.path),
        record=record,
        identity=identity(record, spec.repo_id, revision),
    )


def scan_folder(folder: Path, root: Path) -> FolderScan:
    """List a model folder's files (sizes from lstat), its partial downloads, and what was skipped."""
    files: dict[str, int] = {}
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
            files[rel] = size
    partials = [rel for rel, _ in partial_downloads(folder)]
    return FolderScan(dict(sorted(files.items())), tuple(sorted(partials)), tuple(sorted(skipped)))


def missing_files(spec: ModelSpec, scan: FolderScan) -> tuple[str, ...]:
    """Expected names and globs with no file on disk, judged from the registry alone.

    A literal name must exist; a glob must match at least one file (fnmatch, where '*' also
    matches '/', as huggingface_hub's allow_patterns do); a pinned checksum's file must exist.
    """
    present = set(scan.files)
    expected = list(dict.fromkeys((*spec.files, *spec.checksums)))
    missing = []
    for pattern in expected:
        if is_glob(pattern):
            if not any(fnmatch.fnmatchcase(name, pattern) for name in present):
                missing.append(pattern)
        elif pattern not in present:
            missing.append(pattern)
    return tuple(missing)


# --------------------------------------------------------------------------- partial files


def _partial_key(rel: str) -> str:
    import hashlib

    return hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()


def partial_path(folder: Path, rel: str) -> Path:
    """Where the bytes of the model file `rel` collect while it downloads."""
    return folder / META_DIR / PARTIALS_DIR / (_partial_key(rel) + PARTIAL_SUFFIX)


def sidecar_path(folder: Path, rel: str) -> Path:
    """The small JSON beside a partial file that says what it is a part of (`path`, hashes, ETag)."""
    return folder / META_DIR / PARTIALS_DIR / (_partial_key(rel) + SIDECAR_SUFFIX)


def forget_partials(folder: Path, rels: Iterable[str]) -> None:
    """Remove every leftover of these files' downloads (bytes, sidecar, range log, reuse temp): the
    files are complete, so nothing of an earlier, interrupted run of them can be wanted any more.
    The partials folder is listed once, however many files there are."""
    where = folder / META_DIR / PARTIALS_DIR
    if not where.is_dir() or where.is_symlink():
        return
    keys = {_partial_key(rel) for rel in rels}
    for entry in os.scandir(where):
        if entry.name.split(".", 1)[0] in keys:
            with suppress(FileNotFoundError):
                os.unlink(entry.path)


def partial_downloads(folder: Path) -> list[tuple[str, Path]]:
    """(file path, partial file) of each partial download in the folder; the path from its sidecar.

    A partial whose sidecar is missing or unreadable is listed under its own name in `.modelctl/`.
    """
    import json

    out = []
    where = folder / META_DIR / PARTIALS_DIR
    try:
        names = [e.name for e in os.scandir(where) if e.name.endswith(PARTIAL_SUFFIX)]
    except OSError:
        return []
    for name in sorted(names):
        partial = where / name
        try:
            rel = json.loads(partial.with_suffix(SIDECAR_SUFFIX).read_text(encoding="utf-8"))["path"]
            if not isinstance(rel, str) or partial_path(folder, rel) != partial:
                raise ValueError(rel)
        except (OSError, ValueError, KeyError, TypeError):
            rel = f"{META_DIR}/{PARTIALS_DIR}/{name}"
        out.append((rel, partial))
    return out


def ranges_path(folder: Path, rel: str) -> Path:
    """The log of the byte ranges written into rel's partial file (see RANGES_SUFFIX)."""
    return folder / META_DIR / PARTIALS_DIR / (_partial_key(rel) + RANGES_SUFFIX)


def read_ranges(path: Path, size: int) -> list[tuple[int, int]]:
    """The written ranges of a partial's log, merged and sorted, within [0, size).

    A torn last record (kill -9 mid-append) and records that do not fit the file are ignored.
    """
    import struct

    try:
        raw = path.read_bytes()
    except OSError:
        return []
    records = struct.iter_unpack(RANGE_RECORD, raw[: len(raw) - len(raw) % struct.calcsize(RANGE_RECORD)])
    return merge_ranges((start, end) for start, end in records if start < end <= size)


def merge_ranges(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) spans sorted, with overlapping or touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def held_bytes(partial: Path) -> int:
    """Bytes a partial download holds: what its range log lists, else (one stream) its size."""
    log = partial.with_suffix(RANGES_SUFFIX)
    if log.exists():
        return sum(end - start for start, end in read_ranges(log, 1 << 62))
    try:
        return partial.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------- lock

FOLDER_LOCK_NAME = "lock"  # the per-folder flock (not models.lock, which lockfile.py reads)
OWNER_NAME = "lock.owner"


def lock_owner(folder: Path) -> int | None:
    """The pid that last took the model folder's lock, if it wrote one."""
    try:
        text = (folder / META_DIR / OWNER_NAME).read_text(encoding="utf-8").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


# The folders each thread holds the lock of, with how deeply: the lock is re-entrant within a
# thread (ensure holds it across quarantine, download and restore; the download inside takes it
# again). Another thread, or another process, waits on the flock itself.
_HELD = threading.local()


@contextmanager
def folder_lock(folder: Path, timeout: float, on_wait: Callable[[int | None], None]) -> Iterator[None]:
    """Hold the model folder's lock; wait at most `timeout` seconds for another modelctl.

    The lock is an flock (filelock), so the kernel releases it when its holder dies, even by
    kill -9: a dead holder's lock is simply taken over.
    """
    held: dict[str, int] = _HELD.__dict__.setdefault("folders", {})
    key = os.path.abspath(folder)
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    lock = _acquire(folder, timeout, on_wait)
    held[key] = 1
    owner = folder / META_DIR / OWNER_NAME
    try:
        try:
            owner.write_text(f"{os.getpid()} {socket.gethostname()}\n", encoding="utf-8")
        except OSError as err:  # only names the holder in a waiting run's message (a full disk, say)
            _log.info("%s: could not write %s (%s)", folder, owner, err)
        yield
    finally:
        del held[key]
        with suppress(OSError):
            owner.unlink(missing_ok=True)
        lock.release()


def _acquire(folder: Path, timeout: float, on_wait: Callable[[int | None], None]) -> BaseFileLock:
    from filelock import FileLock, Timeout

    meta = folder / META_DIR
    for _ in range(3):  # `clean` may remove .modelctl/ (the lock file with it) while we wait
        meta.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(meta / FOLDER_LOCK_NAME))
        try:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                on_wait(lock_owner(folder))
                lock.acquire(timeout=timeout)
        except Timeout:
            pid = lock_owner(folder)
            holder = f"pid {pid}" if pid else "another process"
            raise DownloadError(
                f"{folder} is locked by {holder}, still busy after waiting {timeout:g} s.",
                hint="Let the other modelctl finish, or raise {0} (MODELCTL_LOCK_TIMEOUT).",
                steps=(option("lock-timeout"),),
                api_hint="Let the other modelctl finish, or raise MODELCTL_LOCK_TIMEOUT (seconds).",
            ) from None
        except FileNotFoundError:
            continue
        if (meta / FOLDER_LOCK_NAME).exists():
            return lock
        lock.release()  # the file was removed while we waited: that flock keeps nobody out
    raise DownloadError(
        f"{folder}: its lock file {meta / FOLDER_LOCK_NAME} keeps being removed.",
        hint="Let {0} (or whatever removes it) finish, then run the command again.",
        steps=(command("clean"),),
    )
