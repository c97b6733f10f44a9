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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelctl.core.errors import DownloadError, MissingModelError, command, spoken
from modelctl.core.formats import check_file
from modelctl.core.hashing import Hasher, HashTask, hash_files
from modelctl.core.lockfile import LockedModel, locked_for, read_lock
from modelctl.core.record import (
    META_DIR,
    RECORD_NAME,
    Checked,
    Record,
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
class Expectation:
    """What one file must be for verify: a RepoFile's size and hash (None when only a name is known,
    e.g. a literal in `files:` that the commit lacks) plus the registry's checksum pins."""

    path: str
    size: int | None = None
    sha256: str | None = None
    blob_id: str | None = None  # git blob id of the content (non-LFS files)
    pins: tuple[tuple[str, str], ...] = ()  # (algo, hex) from the registry's checksums


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
) -> dict[str, Expectation] | None:
    """Every file the model must have, with what is known of its size and hashes.

    models.lock wins over the record (it is what the project asked for); checksum pins are added
    to whichever applies. None when neither says which files the model has (no record).
    """
    files = expected_files(spec, record, locked)
    if files is None:
        return None
    out = {f.path: Expectation(f.path, f.size, f.sha256, None if f.is_lfs else f.blob_id) for f in files}
    for name in spec.files:
        if not is_glob(name) and name not in out:
            out[name] = Expectation(name)  # the commit does not list it: missing
    return _with_pins(spec, out)


def _with_pins(spec: ModelSpec, out: dict[str, Expectation]) -> dict[str, Expectation]:
    for name, pin in spec.checksums.items():
        base = out.get(name, Expectation(name))
        out[name] = Expectation(base.path, base.size, base.sha256, base.blob_id, ((pin.algo, pin.hexdigest),))
    return out


# --------------------------------------------------------------------------- hashing


@dataclass
class _HashJob:
    """Digests wanted for one file; filled in by the pool (or the cache)."""

    path: Path
    algos: set[str]
    st: os.stat_result  # the file as it was when the job was made
    digests: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    from_cache: bool = False
    format_problem: str | None = None  # judged once the hash is known


def _hash_all(jobs: Sequence[_HashJob], workers: int | None = None) -> int:
    """Hash each job's file once for all its algorithms, on every core; return the bytes read."""
    tasks = [HashTask(job.path, Hasher(job.algos, job.st.st_size), job.st.st_size) for job in jobs]
    hashed = hash_files(tasks, workers)
    for job, task in zip(jobs, tasks, strict=True):
        if task.error is not None:
            job.error = task.error.strerror or str(task.error)
        else:
            assert task.stat is not None
            job.digests.update(task.hasher.hexdigests())
            job.st = task.stat  # the inode hashed (the path may hold another by now)
    return hashed


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
    jobs: list[_HashJob] = []
    for spec in specs:
        locked = locked_for(lock, spec)
        state = model_state(spec, workspace.roots, locked)
        checkers.append(_Checker(state, level, use_cache, jobs, locked))
    hashed = _hash_all([j for j in jobs if not j.from_cache], workers)
    verdicts = tuple(c.finish(explicit) for c in checkers)
    for v in verdicts:
        for f in v.findings:
            if f.status != OK:
                log.info("%s: %s %s %s %s", v.spec.id, f.path or "-", f.check, f.status, f.detail)
    cached = sum(1 for j in jobs if j.from_cache)
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
        jobs: list[_HashJob],
        locked: LockedModel | None,
    ) -> None:
        self.spec = spec = state.spec
        self.state = state
        self.found = found = state.found
        self.level = level
        self.use_cache = use_cache
        self.findings: list[Finding] = []
        self.hash_checks: list[tuple[Expectation, _HashJob]] = []
        self.expected: tuple[str, ...] = ()
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
            expected = _with_pins(spec, {n: Expectation(n) for n in spec.files if not is_glob(n)})
        self.known = record.by_path() if record is not None else {}
        self.expected = tuple(expected)
        on_disk = {f.path for f in found.scan.files}
        for exp in expected.values():
            self._check_file(folder, exp, jobs)
        for rel in sorted(on_disk - set(expected)):
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
        for rel in found.scan.partials:
            self.findings.append(Finding(rel, "leftover", NOTE, "partial download (resumable)"))
        for item in found.scan.skipped:
            self.findings.append(
                Finding(item.split(":", 1)[0], "readable", NOTE, item.split(":", 1)[-1].strip())
            )

    def _check_file(self, folder: Path, exp: Expectation, jobs: list[_HashJob]) -> None:
        path = folder / exp.path
        try:
            st = path.lstat()
        except FileNotFoundError:
            self.findings.append(Finding(exp.path, "present", BAD, self._absent(exp.path)))
            return
        except OSError as err:
            self.findings.append(Finding(exp.path, "readable", BAD, err.strerror or str(err)))
            return
        if not stat.S_ISREG(st.st_mode):
            self.findings.append(Finding(exp.path, "present", BAD, "not a regular file"))
            return
        if not os.access(path, os.R_OK):
            self.findings.append(Finding(exp.path, "readable", BAD, "permission denied"))
            return
        if st.st_size == 0 and exp.size != 0:
            self.findings.append(Finding(exp.path, "size", BAD, "empty (0 bytes)"))
            return
        if exp.size is not None and self.level != "none" and st.st_size != exp.size:
            self.findings.append(Finding(exp.path, "size", BAD, f"{st.st_size} bytes, expected {exp.size}"))
            return
        problem = check_file(path)
        has_hub_hash = self.level == "sha256" and bool(exp.sha256 or exp.blob_id)
        if problem and not has_hub_hash:
            self.findings.append(Finding(exp.path, "format", BAD, problem))
            return
        algos = set()
        if self.level == "sha256":
            if exp.sha256:
                algos.add("sha256")
            if exp.blob_id:
                algos.add("git-sha1")
        algos.update(algo for algo, _ in exp.pins)  # pins are checked at every level but none
        if self.level == "none":
            algos.clear()
        if not algos:
            self.findings.append(Finding(exp.path, "size" if exp.size is not None else "present", OK))
            return
        job = _HashJob(path, algos, st, format_problem=problem)
        entry = self.known.get(exp.path)
        if (
            self.use_cache
            and entry is not None
            and entry.checked is not None
            and entry.checked.is_current(st)
        ):
            known = entry.checked.digests
            if algos <= set(known):
                job.digests = {a: known[a] for a in algos}
                job.from_cache = True
        jobs.append(job)
        self.hash_checks.append((exp, job))

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
        checks: dict[str, Checked] = {}
        for exp, job in self.hash_checks:
            if job.error:
                self.findings.append(Finding(exp.path, "readable", BAD, job.error))
                continue
            wanted = [("sha256", exp.sha256), ("git-sha1", exp.blob_id), *exp.pins]
            if job.format_problem:
                # The Hub's own bytes are the Hub's file, whatever our format check thinks of them:
                # a warning, never a repair that would fetch the same bytes again and again.
                algo, hexdigest = ("sha256", exp.sha256) if exp.sha256 else ("git-sha1", exp.blob_id)
                hub_file = job.digests.get(algo) == hexdigest
                self.findings.append(
                    Finding(
                        exp.path,
                        "format",
                        NOTE if hub_file else BAD,
                        f"{job.format_problem} (the Hub's own bytes: they match its hash)"
                        if hub_file
                        else job.format_problem,
                    )
                )
            for algo, hexdigest in wanted:
                if hexdigest is None or algo not in job.algos:
                    continue
                actual = job.digests.get(algo)
                if actual == hexdigest:
                    self.findings.append(Finding(exp.path, algo, OK, "cached" if job.from_cache else ""))
                else:
                    self.findings.append(Finding(exp.path, algo, BAD, f"expected {hexdigest}, got {actual}"))
                    self.findings += self._sharing(exp.path, job.st)
            if not job.from_cache and job.digests and exp.path in self.known:
                old = self.known[exp.path].checked
                merged = {**(old.digests if old and old.is_current(job.st) else {}), **job.digests}
                checks[exp.path] = checked_now(job.st, merged)
        record = self.found.record
        if checks and record is not None:
            save_checks(self.found.path, record, checks, is_read_only=self.found.root.is_read_only)
        order = {BAD: 0, NOTE: 1, OK: 2}
        findings = sorted(self.findings, key=lambda f: (order[f.status], f.path, f.check))
        return ModelVerdict(self.spec, self.found, tuple(findings), True, self.expected)


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
    jobs = []
    for path in paths:
        try:
            st = path.stat()
        except OSError as err:
            raise MissingModelError(
                f"Cannot read {path}: {err.strerror or err}", hint="Check the path."
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise MissingModelError(f"{path} is not a regular file.", hint="Pass files, not folders.")
        jobs.append(_HashJob(path, {algo}, st))
    _hash_all(jobs)
    for job in jobs:
        if job.error:
            raise MissingModelError(f"Cannot read {job.path}: {job.error}", hint="Check its permissions.")
    return [(job.path, job.digests[algo]) for job in jobs]
