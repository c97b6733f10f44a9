"""Integrity of model folders: presence, size, hashes, format headers, leftovers. Returns a report.

Which files a model must have, and what each must hash to, comes from models.lock or from the
folder's record (record.py: every file of the commit, written before the first byte), plus the
registry's checksum pins. A folder with no record is *unverified*: nothing says it is complete.
Hashing uses every core to the end (hashing.hash_files: pieces of files handed between threads)
and its results go back into the record by (inode, size, mtime_ns), so an unchanged file is never
hashed twice and a file found bad stays bad for ensure, clean and download until its bytes change.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelctl.core.errors import DownloadError, MissingModelError, command, spoken
from modelctl.core.formats import check_file
from modelctl.core.hashing import GIT_SHA1, Checksum, Hasher, HashTask, hash_files
from modelctl.core.lockfile import LockedModel, locked_for, read_lock
from modelctl.core.record import (
    META_DIR,
    RECORD_NAME,
    Checked,
    Record,
    RepoFile,
    checked_now,
    is_glob,
    read_record,
    save_own_checks,
    with_checks,
    write_record,
)
from modelctl.core.registry import VERIFY_LEVELS, ModelSpec
from modelctl.store.storage import Location, folder_lock
from modelctl.store.workspace import ModelState, Workspace, expected_files, model_state

OK, BAD, NOTE = "ok", "bad", "note"
HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
LEVELS = VERIFY_LEVELS  # --level takes the registry's `verify:` levels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """One check's result on one file (path "" for the model as a whole): ok, bad or a note."""

    path: str
    check: str  # present, readable, size, sha256, git-sha1, md5, sha1, format, leftover, extra
    status: str  # ok | bad | note
    detail: str = ""


@dataclass(frozen=True)
class ModelVerdict:
    spec: ModelSpec
    location: Location | None
    findings: tuple[Finding, ...]
    is_present: bool
    expected: tuple[str, ...] = ()  # the files the model must have (the only ones repair may replace)

    @property
    def repairable(self) -> tuple[str, ...]:
        """Bad files that the model's record or models.lock names: ensure may replace these."""
        return tuple(p for p in self.bad_files if p in self.expected)

    @property
    def bad_files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.path for f in self.findings if f.status == BAD and f.path))

    @property
    def is_ok(self) -> bool:
        return not any(f.status == BAD for f in self.findings)


@dataclass(frozen=True)
class VerifyReport:
    workspace: Workspace
    level: str
    models: tuple[ModelVerdict, ...]
    hashed_bytes: int
    cached_files: int
    seconds: float

    @property
    def health(self) -> str:
        bad = [m for m in self.models if not m.is_ok]
        if any(m.spec.required for m in bad):
            return UNHEALTHY
        return DEGRADED if bad else HEALTHY


def expectations(
    spec: ModelSpec, record: Record | None, locked: LockedModel | None = None
) -> dict[str, RepoFile | None] | None:
    """Every file the model must have: {path: its file in the commit}, None for a name that only
    `files:` or `checksums:` gives (the commit lacks it: missing). The registry's checksum pins
    (spec.checksums) apply on top of whichever this is.

    models.lock wins over the record (it is what the project asked for). None when neither says
    which files the model has (no record).
    """
    files = expected_files(spec, record, locked)
    if files is None:
        return None
    out: dict[str, RepoFile | None] = {f.path: f for f in files}
    return _named(spec, out)


def _named(spec: ModelSpec, out: dict[str, RepoFile | None]) -> dict[str, RepoFile | None]:
    """out, and every literal name of `files:` and `checksums:` that it lacks (as None)."""
    for name in (*(n for n in spec.files if not is_glob(n)), *spec.checksums):
        out.setdefault(name, None)
    return out


def _wanted(remote: RepoFile | None, pin: Checksum | None) -> list[tuple[str, str]]:
    """(algo, hex) a file's content must hash to: the commit's sha256 or git blob id, and the pin."""
    out = []
    if remote is not None and remote.sha256:
        out.append(("sha256", remote.sha256))
    if remote is not None and not remote.is_lfs and remote.blob_id:
        out.append((GIT_SHA1, remote.blob_id))
    if pin is not None:
        out.append((pin.algo, pin.hexdigest))
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- verify


def verify_models(
    workspace: Workspace,
    specs: Sequence[ModelSpec],
    *,
    level: str | None = None,
    use_cache: bool = True,
    explicit: bool = False,
    workers: int | None = None,
) -> VerifyReport:
    """Check every selected model found on disk; hash in parallel; return the findings."""
    start = time.monotonic()
    level = level or workspace.registry.verify
    lock = read_lock(workspace.registry)
    checkers = []
    tasks: list[HashTask] = []  # every model's files to hash, hashed together on every core
    for spec in specs:
        locked = locked_for(lock, spec)
        state = model_state(spec, workspace.roots, locked)
        checkers.append(_Checker(state, level, use_cache, tasks, locked))
    hashed = hash_files(tasks, workers)
    verdicts = tuple(c.finish(explicit) for c in checkers)
    for v in verdicts:
        for f in v.findings:
            if f.status != OK:
                log.info("%s: %s %s %s %s", v.spec.id, f.path or "-", f.check, f.status, f.detail)
    cached = sum(c.cached for c in checkers)
    return VerifyReport(workspace, level, verdicts, hashed, cached, time.monotonic() - start)


def _unverified(spec: ModelSpec, *, is_old: bool) -> Finding:
    """A folder with no list of its commit's files: nothing can call it complete."""
    what = "a 0.1 manifest that lists only what was written" if is_old else "no modelctl record"
    return Finding(
        "",
        "record",
        BAD,
        f"unverified: {what}, so nothing says these are every file of {spec.repo_id}@{spec.revision}; "
        + spoken("{0} checks them against the Hub (fetching only what differs)", command("ensure", spec.id)),
    )


class _Checker:
    """One model's checks: cheap ones now, hash jobs queued, findings assembled in finish()."""

    def __init__(
        self,
        state: ModelState,
        level: str,
        use_cache: bool,
        tasks: list[HashTask],
        locked: LockedModel | None,
    ) -> None:
        self.spec = spec = state.spec
        self.state = state
        self.found = found = state.found
        self.level = level
        self.use_cache = use_cache
        self.findings: list[Finding] = []
        self.hashing: list[tuple[str, str | None, HashTask]] = []  # (path, format problem, its hash)
        self.cached = 0  # files whose digests the record's current checks gave
        self.checks: dict[str, Checked] = {}  # what hashing found, for the record
        self.files: dict[str, RepoFile | None] = {}  # what the model must have (see expectations)
        if found is None or found.scan is None:
            return
        folder = found.path
        record = found.record
        if record is None and (folder / META_DIR / RECORD_NAME).exists():
            self.findings.append(
                Finding(f"{META_DIR}/{RECORD_NAME}", "format", NOTE, "unreadable record ignored")
            )
        if locked is not None and record is not None and record.commit != locked.commit:
            # The files are judged by the lock's hashes below; the commit alone is not damage.
            self.findings.append(
                Finding(
                    "",
                    "commit",
                    NOTE,
                    f"on disk {record.commit[:12]}, models.lock {locked.commit[:12]}: files are checked against the lock",
                )
            )
        expected = expectations(spec, record, locked)
        if expected is None:
            self.findings.append(_unverified(spec, is_old=record is not None))
            expected = _named(spec, {})
        self.known = record.by_path() if record is not None else {}
        self.files = expected
        for rel, remote in expected.items():
            self._check_file(folder, rel, remote, tasks)
        self._check_others(folder, record)

    def _check_others(self, folder: Path, record: Record | None) -> None:
        """Notes on what the folder holds besides the model's files: extras, partials, the unreadable."""
        assert self.found is not None and self.found.scan is not None
        on_disk = set(self.found.scan.files)
        for rel in sorted(on_disk - self.files.keys()):
            problem = check_file(folder / rel)
            if problem and rel not in self.known:
                # With a record, a file it does not name is not the model's: the user's, left alone.
                status = BAD if record is None else NOTE
                self.findings.append(Finding(rel, "format", status, problem))
            elif record is not None and rel in set(record.outdated):
                self.findings.append(
                    Finding(
                        rel,
                        "extra",
                        NOTE,
                        f"not in commit {record.commit[:12]}; "
                        + spoken("{0} removes it", command("clean", "", "outdated")),
                    )
                )
            elif record is not None and rel not in self.known:
                self.findings.append(Finding(rel, "extra", NOTE, "not a file of the model's commit"))
        for rel in self.found.scan.partials:
            self.findings.append(Finding(rel, "leftover", NOTE, "partial download (resumable)"))
        for item in self.found.scan.skipped:
            self.findings.append(
                Finding(item.split(":", 1)[0], "readable", NOTE, item.split(":", 1)[-1].strip())
            )

    def _check_file(self, folder: Path, rel: str, remote: RepoFile | None, tasks: list[HashTask]) -> None:
        path = folder / rel
        size = remote.size if remote is not None else None
        try:
            st = path.lstat()
        except FileNotFoundError:
            self.findings.append(Finding(rel, "present", BAD, self._absent(rel)))
            return
        except OSError as err:
            self.findings.append(Finding(rel, "readable", BAD, err.strerror or str(err)))
            return
        if not stat.S_ISREG(st.st_mode):
            self.findings.append(Finding(rel, "present", BAD, "not a regular file"))
            return
        if not os.access(path, os.R_OK):
            self.findings.append(Finding(rel, "readable", BAD, "permission denied"))
            return
        if st.st_size == 0 and size != 0:
            self.findings.append(Finding(rel, "size", BAD, "empty (0 bytes)"))
            return
        if size is not None and self.level != "none" and st.st_size != size:
            self.findings.append(Finding(rel, "size", BAD, f"{st.st_size} bytes, expected {size}"))
            return
        problem = check_file(path)
        hub = _wanted(remote, None)
        if problem and not (self.level == "sha256" and hub):
            self.findings.append(Finding(rel, "format", BAD, problem))
            return
        pin = self.spec.checksums.get(rel)
        algos = {algo for algo, _ in hub} if self.level == "sha256" else set()
        if pin is not None:
            algos.add(pin.algo)  # pins are checked at every level but none
        if self.level == "none":
            algos.clear()
        if not algos:
            self.findings.append(Finding(rel, "size" if size is not None else "present", OK))
            return
        entry = self.known.get(rel)
        checked = entry.checked if entry is not None else None
        if (
            self.use_cache
            and checked is not None
            and checked.is_current(st)
            and algos <= set(checked.digests)
        ):
            self.cached += 1
            self._judge(rel, problem, {a: checked.digests[a] for a in algos}, st, from_cache=True)
            return
        task = HashTask(path, Hasher(algos, st.st_size), st.st_size)
        tasks.append(task)
        self.hashing.append((rel, problem, task))

    def _judge(
        self,
        rel: str,
        problem: str | None,
        digests: Mapping[str, str],
        st: os.stat_result,
        *,
        from_cache: bool,
    ) -> None:
        """Findings of one file's hashes (digests: of the algorithms asked), and its check to record."""
        remote = self.files.get(rel)
        if problem:
            # The Hub's own bytes are the Hub's file, whatever our format check thinks of them:
            # a warning, never a repair that would fetch the same bytes again and again.
            algo, hexdigest = _wanted(remote, None)[0]
            hub_file = digests.get(algo) == hexdigest
            detail = f"{problem} (the Hub's own bytes: they match its hash)" if hub_file else problem
            self.findings.append(Finding(rel, "format", NOTE if hub_file else BAD, detail))
        for algo, hexdigest in _wanted(remote, self.spec.checksums.get(rel)):
            if algo not in digests:
                continue
            actual = digests[algo]
            if actual == hexdigest:
                self.findings.append(Finding(rel, algo, OK, "cached" if from_cache else ""))
            else:
                self.findings.append(Finding(rel, algo, BAD, f"expected {hexdigest}, got {actual}"))
                self.findings += self._sharing(rel, st)
        if not from_cache and rel in self.known:
            old = self.known[rel].checked
            self.checks[rel] = checked_now(
                st, {**(old.digests if old and old.is_current(st) else {}), **digests}
            )

    def _sharing(self, rel: str, st: os.stat_result) -> list[Finding]:
        """Notes naming the model's copies in other roots that are hard links of this bad file."""
        if st.st_nlink < 2 or self.found is None:
            return []
        out = []
        for other in self.state.locations:
            if not other.exists or other.path == self.found.path:
                continue
            try:
                theirs = (other.path / rel).lstat()
            except OSError:
                continue
            if (theirs.st_dev, theirs.st_ino) == (st.st_dev, st.st_ino):
                detail = (
                    f"hard-linked with {other.path / rel} (the {other.root.name} root): the same bad bytes; "
                )
                detail += spoken("{0} repairs both", command("ensure"))
                out.append(Finding(rel, "shared", NOTE, detail))
        return out

    def _absent(self, rel: str) -> str:
        if rel in self.state.partials:
            return "missing: its download was interrupted (the partial file resumes)"
        entry = self.known.get(rel)
        return "missing: not downloaded yet" if entry is not None and entry.checked is None else "missing"

    def finish(self, explicit: bool) -> ModelVerdict:
        if self.found is None:
            # A model never downloaded is a problem when it is required or was asked for by name.
            status = BAD if (self.spec.required or explicit) else NOTE
            detail = "not downloaded in any root"
            others = self.state.others
            if others and others[0].record is not None:
                rec = others[0].record
                detail += f" ({others[0].path} holds {rec.repo_id}@{rec.revision}, not {self.spec.repo_id}@{self.spec.revision})"
            return ModelVerdict(self.spec, None, (Finding("", "present", status, detail),), False)
        for rel, problem, task in self.hashing:
            if task.error is not None:
                self.findings.append(Finding(rel, "readable", BAD, task.error.strerror or str(task.error)))
                continue
            assert task.stat is not None  # the inode hashed (the path may hold another by now)
            self._judge(rel, problem, task.hasher.hexdigests(), task.stat, from_cache=False)
        record = self.found.record
        if self.checks and record is not None:
            save_checks(self.found.path, record, self.checks, is_read_only=self.found.root.is_read_only)
        order = {BAD: 0, NOTE: 1, OK: 2}
        findings = sorted(self.findings, key=lambda f: (order[f.status], f.path, f.check))
        return ModelVerdict(self.spec, self.found, tuple(findings), True, tuple(self.files))


def save_checks(folder: Path, record: Record, checks: dict[str, Checked], *, is_read_only: bool) -> None:
    """Write what hashing found into the record, unless another modelctl is working on the model.

    Read again under the folder's lock: a download may have replaced the record meanwhile, and
    only checks of files whose expected content is unchanged are written into it. A folder that
    cannot be written (a read-only store or mount) has them kept in this machine's own state,
    so a file found bad there stays bad for every command.
    """
    if is_read_only or not os.access(folder, os.W_OK | os.X_OK):
        try:
            save_own_checks(folder, record, checks)
        except OSError as err:  # only a cache: the verdict stands
            log.info("%s: could not remember its checks (%s)", folder, err)
        return
    try:
        with folder_lock(folder, 0.0, lambda pid: None):
            current = read_record(folder)
            if current is None or (current.repo_id, current.commit) != (record.repo_id, record.commit):
                return
            before, now_known = record.by_path(), current.by_path()
            mine = {
                p: c for p, c in checks.items() if p in now_known and now_known[p].same_content(before[p])
            }
            write_record(folder, with_checks(current, mine))
    except (DownloadError, OSError):
        return  # busy or not writable: the record is only a cache here; the verdict stands


def checksum_files(paths: Sequence[Path], algo: str) -> list[tuple[Path, str]]:
    """Digest of each file (on every core); MissingModelError names the first that cannot be read."""
    tasks = []
    for path in paths:
        try:
            st = path.stat()
        except OSError as err:
            raise MissingModelError(
                f"Cannot read {path}: {err.strerror or err}", hint="Check the path."
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise MissingModelError(f"{path} is not a regular file.", hint="Pass files, not folders.")
        tasks.append(HashTask(path, Hasher({algo}, st.st_size), st.st_size))
    hash_files(tasks)
    for task in tasks:
        if task.error is not None:
            reason = task.error.strerror or str(task.error)
            raise MissingModelError(f"Cannot read {task.path}: {reason}", hint="Check its permissions.")
    return [(task.path, task.hasher.hexdigest(algo)) for task in tasks]
