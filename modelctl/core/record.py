"""The model record: what a model folder must hold, and what of it has been verified.

`<model>/.modelctl/manifest.json` names the model (repo_id, revision, commit) and lists every file
of that commit with its size and hashes: the plan, written before the first byte of a download
and never shrunk by a run that fails or is interrupted. Each file carries the last check of its
content: the stat it had (inode, size, mtime_ns) and the digests computed then. A file is
*verified* when that stat is still the file's and a digest equals the expected hash; *bad* when
a digest differs; *pending* when its content was never checked. This one record is also the
verify cache: an unchanged file is never hashed twice, and a file found bad stays bad for every
command until its bytes change.

Whether a model is complete is judged from this record (or models.lock), never from what the
last run happened to write.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from modelctl.core.atomic import replace_text

META_DIR = ".modelctl"
# huggingface_hub's `--local-dir` metadata; skipped so models fetched by `hf` can be adopted.
FOREIGN_META_DIRS = (".cache",)
RECORD_NAME = "manifest.json"
RECORD_VERSION = 2
PENDING, VERIFIED, BAD, CHANGED = "pending", "verified", "bad", "changed"
_GLOB_CHARS = frozenset("*?[")


class Checked(NamedTuple):
    """The last time a file's content was hashed: its stat then, the digests it had, and by whom."""

    inode: int
    size: int
    mtime_ns: int
    at: str
    digests: Mapping[str, str]  # algo (sha256, git-sha1, md5, sha1) → hex
    by: str = ""  # the machine that hashed (machine_id()); "" in records written before it was kept

    def is_current(self, st: os.stat_result) -> bool:
        """True when the file on disk is, by its stat, the one that was hashed."""
        return (st.st_ino, st.st_size, st.st_mtime_ns) == (self.inode, self.size, self.mtime_ns)


def checked_now(st: os.stat_result, digests: Mapping[str, str]) -> Checked:
    return Checked(st.st_ino, st.st_size, st.st_mtime_ns, now(), dict(digests), machine_id())


@functools.cache
def machine_id() -> str:
    """This machine, for the checks it records: its host name and /etc/machine-id, digested.

    A check recorded by another machine (a shared store, an NFS root) is that machine's claim:
    only this machine's own checks spare a file from being hashed here (see `trusted_record`).
    """
    import hashlib
    import socket

    try:
        with open("/etc/machine-id", encoding="ascii") as f:
            local = f.read().strip()
    except (OSError, ValueError):
        local = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{local}".encode()).hexdigest()[:16]


class RepoFile(NamedTuple):
    """A file of a repo at one commit, as the Hub lists it (and models.lock and the record keep it).

    The one shape for "a file of the model": `checked` is the last check of the copy on disk
    (None in a listing, or while pending).
    """

    path: str
    size: int
    sha256: str | None  # LFS files: the sha256 of the content
    blob_id: str  # git blob sha1 (of the content for non-LFS files, of the pointer for LFS)
    checked: Checked | None = None

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def expected(self) -> tuple[str, str]:
        """(algo, hex) that the content must hash to."""
        return ("sha256", self.sha256) if self.sha256 else ("git-sha1", self.blob_id)

    def same_content(self, other: RepoFile) -> bool:
        return (self.size, self.sha256, self.blob_id) == (other.size, other.sha256, other.blob_id)

    @property
    def state(self) -> str:
        """pending | verified | bad, as recorded (the stat is not looked at)."""
        algo, hexdigest = self.expected
        if self.checked is None or algo not in self.checked.digests:
            return PENDING  # never hashed for its own hash (a pin's md5 alone says nothing)
        return VERIFIED if self.checked.digests[algo] == hexdigest else BAD

    def state_of(self, st: os.stat_result | None) -> str | None:
        """The file as found by `st` (None: absent → None): pending, verified, bad or changed."""
        if st is None:
            return None
        if self.checked is None:
            return PENDING
        if not self.checked.is_current(st):
            return CHANGED
        return self.state


class Snapshot(NamedTuple):
    """A repo at one commit, with every file it lists: what a download fetches from."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[RepoFile, ...]
    endpoint: str | None = None  # where the metadata came from (None: from disk or models.lock)


class Record(NamedTuple):
    """A model folder's record: the model it holds and every file of its commit."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[RepoFile, ...]
    updated_at: str
    outdated: tuple[str, ...] = ()  # files of an earlier commit that this one no longer lists
    is_planned: bool = True  # False: read from a version-1 manifest, which lists only what was written

    def by_path(self) -> dict[str, RepoFile]:
        return {f.path: f for f in self.files}

    def selected(self, patterns: Sequence[str]) -> tuple[RepoFile, ...]:
        """The files a registry entry's `files:` globs select (all of them when it has none)."""
        if not patterns:
            return self.files
        import fnmatch

        return tuple(f for f in self.files if any(fnmatch.fnmatchcase(f.path, p) for p in patterns))


def is_safe_relative(path: str) -> bool:
    """A repo path that stays inside the model folder: relative, no '..', no NUL or backslash."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in path):  # a lone surrogate: no file can be named so
        return False
    parts = path.split("/")
    return all(part not in ("", ".", "..") for part in parts) and parts[0] not in (
        META_DIR,
        *FOREIGN_META_DIRS,
    )


def is_glob(pattern: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in pattern)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_path(folder: Path) -> Path:
    return folder / META_DIR / RECORD_NAME


def read_record(folder: Path) -> Record | None:
    """The folder's record, or None when absent or unreadable (then nothing is taken on trust)."""
    import json  # here, not at the top: `modelctl list` on a machine with no model pays nothing

    try:
        data = json.loads(record_path(folder).read_text(encoding="utf-8"))
        version = data.get("version")
        if version not in (1, RECORD_VERSION):
            return None
        files = tuple(_file(f, version) for f in data["files"] if is_safe_relative(str(f["path"])))
        return Record(
            str(data["repo_id"]),
            str(data["revision"]),
            str(data["commit"]),
            files,
            str(data.get("updated_at", "")),
            tuple(str(p) for p in data.get("outdated", ()) if is_safe_relative(str(p))),
            is_planned=version == RECORD_VERSION,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def trusted_record(folder: Path, *, is_read_only: bool) -> Record | None:
    """The folder's record with only the checks this machine may rely on, and its own added.

    A check recorded by another machine is a claim, not a check: dropped (the file is pending
    here until hashed). A check with no machine (a record from before machines were kept) is
    trusted in a writable root, never in a read-only store. Then this machine's own checks of a
    copy whose record it cannot write (a read-only store or mount: `save_own_checks`) are laid
    over it where they are newer, so a finding there is remembered.
    """
    record = read_record(folder)
    if record is None:
        return None
    me = machine_id()
    own = read_record(own_checks_folder(folder))
    mine = own.by_path() if own is not None and own.commit == record.commit else {}
    files = []
    for f in record.files:
        checked = f.checked
        if checked is not None and checked.by != me and (checked.by or is_read_only):
            checked = None
        theirs = mine.get(f.path)
        if (
            theirs is not None
            and theirs.checked is not None
            and theirs.checked.by == me
            and theirs.same_content(f)
            and (checked is None or theirs.checked.at >= checked.at)
        ):
            checked = theirs.checked
        files.append(f._replace(checked=checked))
    return record._replace(files=tuple(files))


def own_checks_folder(folder: Path) -> Path:
    """Where this machine keeps its checks of a model folder it cannot write a record into.

    MODELCTL_STATE_DIR, else the platform's user state dir: `copies/<digest of the real path>`,
    laid out as a model folder's metadata so it is read and written as a record.
    """
    import hashlib

    base = os.environ.get("MODELCTL_STATE_DIR")
    if not base:
        import platformdirs

        base = platformdirs.user_state_dir("modelctl", appauthor=False)
    key = hashlib.sha256(os.path.realpath(folder).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return Path(base).expanduser() / "copies" / key


def save_own_checks(folder: Path, record: Record, checks: Mapping[str, Checked]) -> None:
    """Remember checks of a folder whose own record cannot be written, in this machine's state."""
    shadow = own_checks_folder(folder)
    previous = read_record(shadow)
    base = previous if previous is not None and previous.commit == record.commit else record
    listed = {f.path for f in base.files}
    write_record(shadow, with_checks(base, {p: c for p, c in checks.items() if p in listed}))


def _file(item: Mapping[str, object], version: object) -> RepoFile:
    sha256 = item.get("sha256")
    is_lfs = bool(item.get("lfs", sha256 is not None))
    checked = None
    if version == 1:  # 0.1's manifest: every listed file was verified at this stat
        if item.get("verified_at"):
            digests = {"sha256": str(sha256)} if sha256 else {}
            if not is_lfs:
                digests["git-sha1"] = str(item["blob_id"])
            checked = Checked(
                int(item.get("inode", 0)),  # type: ignore[call-overload]
                int(item["size"]),  # type: ignore[call-overload]
                int(item.get("mtime_ns", 0)),  # type: ignore[call-overload]
                str(item["verified_at"]),
                digests,
            )
    elif isinstance(item.get("checked"), dict):
        c: dict[str, object] = item["checked"]  # type: ignore[assignment]
        digests_in = c.get("digests")
        checked = Checked(
            int(c["inode"]),  # type: ignore[call-overload]
            int(c["size"]),  # type: ignore[call-overload]
            int(c["mtime_ns"]),  # type: ignore[call-overload]
            str(c.get("at", "")),
            {str(k): str(v) for k, v in digests_in.items()} if isinstance(digests_in, dict) else {},
            str(c.get("by", "")),
        )
    return RepoFile(
        str(item["path"]),
        int(item["size"]),  # type: ignore[call-overload]
        str(sha256) if sha256 and is_lfs else None,
        str(item["blob_id"]),
        checked,
    )


def record_json(record: Record) -> dict[str, object]:
    """The record as written to disk (and shown by `info --json`)."""
    return {
        "version": RECORD_VERSION,
        "repo_id": record.repo_id,
        "revision": record.revision,
        "commit": record.commit,
        "updated_at": record.updated_at,
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "blob_id": f.blob_id,
                "lfs": f.is_lfs,
                "state": f.state,
                "checked": None
                if f.checked is None
                else {
                    "inode": f.checked.inode,
                    "size": f.checked.size,
                    "mtime_ns": f.checked.mtime_ns,
                    "at": f.checked.at,
                    "digests": dict(sorted(f.checked.digests.items())),
                    "by": f.checked.by,
                },
            }
            for f in sorted(record.files, key=lambda f: f.path)
        ],
        "outdated": sorted(record.outdated),
    }


def write_record(folder: Path, record: Record) -> None:
    """Write the record at once (atomic.replace_text): old or new, never half; OSError on failure."""
    import json  # as read_record

    target = record_path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_text(target, json.dumps(record_json(record), indent=1) + "\n")


def plan_record(
    repo_id: str, revision: str, commit: str, listing: Iterable[RepoFile], previous: Record | None
) -> Record:
    """The record for a run about to fetch `commit`: every listed file, with what is known of it.

    A file the previous record knew with the same content keeps its last check; every other file
    is pending. Files of an earlier commit that this one no longer lists are kept as `outdated`
    (reported by verify, removed by `clean --outdated`).
    """
    known = previous.by_path() if previous is not None else {}
    files = []
    for f in listing:
        old = known.get(f.path)
        files.append(f._replace(checked=old.checked if old is not None and old.same_content(f) else None))
    outdated: tuple[str, ...] = ()
    if previous is not None:
        listed = {f.path for f in files}
        gone = [*previous.outdated, *(p for p in known if p not in listed)]
        outdated = tuple(sorted({p for p in gone if p not in listed}))
    return Record(repo_id, revision, commit, tuple(files), now(), outdated)


def with_checks(record: Record, checks: Mapping[str, Checked]) -> Record:
    """The record with new checks (path → checked) for files it lists."""
    if not checks:
        return record
    files = tuple(f._replace(checked=checks[f.path]) if f.path in checks else f for f in record.files)
    return record._replace(files=files, updated_at=now())


def identity(record: Record | None, repo_id: str, revision: str) -> str:
    """OWN when the record names this repo and revision; OTHER_REPO / OTHER_REVISION; UNRECORDED."""
    if record is None:
        return UNRECORDED
    if record.repo_id.lower() != repo_id.lower():
        return OTHER_REPO
    if revision not in (record.revision, record.commit):
        return OTHER_REVISION
    return OWN


OWN, UNRECORDED, OTHER_REPO, OTHER_REVISION = "own", "unverified", "other repo", "other revision"


@dataclass(frozen=True)
class FileResult:
    """What a run did with one file: fetched by the engine (whole or resumed), or kept as it was."""

    path: str
    size: int
    sha256: str | None
    bytes_fetched: int  # bytes received over the network, all attempts together
    resumed_from: int  # bytes of an earlier run kept in the file (0 when it had to start over)
    attempts: int = 0
    endpoint: str | None = None  # host that served the last bytes (None: kept)
    action: str = "download"  # keep | download | resume | reuse
    source: str | None = None  # reuse: the file whose bytes were linked or copied
    # The published inode as it was hashed (fstat of the open file): what its record check is of.
    stat: os.stat_result | None = field(default=None, compare=False, repr=False)
