"""Integrity of model folders: presence, size, hashes, format headers, leftovers. Returns a report.

What a file must be comes from the folder's manifest (written by `download`), from the registry's
checksum pins, and from the registry's literal `files:` names. Hashing is parallel (threads:
hashlib and file reads release the GIL) and remembered per file by (device, inode, size,
mtime_ns) in `.modelctl/verify-cache.json`, so an unchanged file is never hashed twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from modelctl.formats import check_file
from modelctl.lockfile import LockedModel, locked_for, read_lock
from modelctl.manager import Workspace
from modelctl.registry import ModelSpec
from modelctl.storage import META_DIR, Location, Manifest, is_glob, locate, read_manifest

CACHE_NAME = "verify-cache.json"
CACHE_VERSION = 1
CHUNK = 1 << 20
OK, BAD, NOTE = "ok", "bad", "note"
HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
LEVELS = ("none", "size", "sha256")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expectation:
    """What one file must be. Hash fields are None when nothing says."""

    path: str
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None  # git blob id of the content (non-LFS files)
    pins: tuple[tuple[str, str], ...] = ()  # (algo, hex) from the registry's checksums


@dataclass(frozen=True)
class Finding:
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
    spec: ModelSpec, manifest: Manifest | None, locked: LockedModel | None = None
) -> dict[str, Expectation]:
    """Every file the model must have, with what is known of its size and hashes.

    models.lock wins over the manifest (it is what the project asked for); the manifest wins over
    the registry's literal `files:` names; checksum pins are added to whichever applies.
    """
    out: dict[str, Expectation] = {}
    if locked is not None:
        for r in locked.files:
            out[r.path] = Expectation(r.path, r.size, r.sha256, None if r.sha256 else r.blob_id)
    elif manifest is not None:
        for f in manifest.files:
            out[f.path] = Expectation(f.path, f.size, f.sha256, None if f.is_lfs else f.blob_id)
    else:
        for name in spec.files:
            if not is_glob(name):
                out[name] = Expectation(name)
    for name, pin in spec.checksums.items():
        base = out.get(name, Expectation(name))
        out[name] = Expectation(
            base.path, base.size, base.sha256, base.git_sha1, ((pin.algo, pin.hexdigest),)
        )
    return out


# --------------------------------------------------------------------------- hashing


@dataclass
class _HashJob:
    """Digests wanted for one file; filled in by the pool (or the cache)."""

    path: Path
    algos: set[str]
    key: tuple[int, int, int, int]  # dev, ino, size, mtime_ns
    digests: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    from_cache: bool = False


def _hash_into(job: _HashJob) -> int:
    """Hash job.path once for all wanted algorithms; return the bytes read."""
    hashers: dict[str, hashlib._Hash] = {}
    for algo in job.algos:
        if algo == "git-sha1":
            hashers[algo] = hashlib.sha1(b"blob %d\0" % job.key[2])
        else:
            hashers[algo] = hashlib.new(algo)
    done = 0
    try:
        with job.path.open("rb", buffering=0) as f:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while n := f.readinto(view):
                chunk = view[:n]
                for h in hashers.values():
                    h.update(chunk)
                done += n
    except OSError as err:
        job.error = err.strerror or str(err)
        return done
    job.digests.update({algo: h.hexdigest() for algo, h in hashers.items()})
    return done


class VerifyCache:
    """Digests of files by (device, inode, size, mtime_ns), kept in the model's metadata folder."""

    def __init__(self, folder: Path, *, read_only: bool = False) -> None:
        self.path = folder / META_DIR / CACHE_NAME
        self.entries: dict[str, dict[str, object]] = {}
        self.dirty = False
        self.read_only = read_only  # a shared store: use what is cached there, never write
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict):
                self.entries = data["files"]
        except (OSError, ValueError, AttributeError):
            self.entries = {}  # absent or damaged: start over, it is only a cache

    def get(self, rel: str, key: tuple[int, int, int, int]) -> dict[str, str]:
        entry = self.entries.get(rel)
        if not isinstance(entry, dict) or entry.get("key") != list(key):
            return {}
        digests = entry.get("digests")
        return {str(k): str(v) for k, v in digests.items()} if isinstance(digests, dict) else {}

    def put(self, rel: str, key: tuple[int, int, int, int], digests: dict[str, str]) -> None:
        merged = {**self.get(rel, key), **digests}
        self.entries[rel] = {"key": list(key), "digests": merged, "at": _now()}
        self.dirty = True

    def save(self) -> None:
        """Merge with what another run may have written meanwhile, then replace atomically."""
        if not self.dirty or self.read_only or not self.path.parent.is_dir():
            return
        other = VerifyCache(self.path.parent.parent).entries
        entries = {**other, **self.entries}
        tmp = self.path.with_name(f"{CACHE_NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": entries}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only root: verifying still worked


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
    plans = []
    jobs: list[_HashJob] = []
    for spec in specs:
        found = next((loc for loc in locate(spec, workspace.roots) if loc.exists), None)
        plans.append(_Plan(spec, found, level, use_cache, jobs, locked_for(lock, spec)))
    hashed = 0
    todo = [j for j in jobs if not j.from_cache]
    if todo:
        with ThreadPoolExecutor(max_workers=workers or min(len(todo), os.cpu_count() or 2)) as pool:
            # Largest files first, so the pool does not end waiting on one big file.
            todo.sort(key=lambda j: -j.key[2])
            hashed = sum(pool.map(_hash_into, todo))
    verdicts = tuple(p.finish(explicit) for p in plans)
    for v in verdicts:
        for f in v.findings:
            if f.status != OK:
                log.info("%s: %s %s %s %s", v.spec.id, f.path or "-", f.check, f.status, f.detail)
    cached = sum(1 for j in jobs if j.from_cache)
    return VerifyReport(workspace, level, verdicts, hashed, cached, time.monotonic() - start)


class _Plan:
    """One model's checks: cheap ones now, hash jobs queued, findings assembled in finish()."""

    def __init__(
        self,
        spec: ModelSpec,
        found: Location | None,
        level: str,
        use_cache: bool,
        jobs: list[_HashJob],
        locked: LockedModel | None,
    ) -> None:
        self.spec = spec
        self.found = found
        self.level = level
        self.findings: list[Finding] = []
        self.hash_checks: list[tuple[Expectation, _HashJob]] = []
        self.cache: VerifyCache | None = None
        if found is None or found.scan is None:
            return
        folder = found.path
        manifest = read_manifest(folder)
        if manifest is None and (folder / META_DIR / "manifest.json").exists():
            self.findings.append(
                Finding(
                    ".modelctl/manifest.json",
                    "format",
                    NOTE,
                    "unreadable manifest ignored; run download to rebuild it",
                )
            )
        self.cache = VerifyCache(folder, read_only=found.root.is_read_only) if use_cache else None
        if locked is not None and manifest is not None and manifest.commit != locked.commit:
            self.findings.append(
                Finding(
                    "", "commit", BAD, f"on disk {manifest.commit[:12]}, models.lock {locked.commit[:12]}"
                )
            )
        expected = expectations(spec, manifest, locked)
        on_disk = {f.path for f in found.scan.files}
        for exp in expected.values():
            self._check_file(folder, exp, jobs)
        for rel in sorted(on_disk - set(expected)):
            problem = check_file(folder / rel)
            if problem:
                self.findings.append(Finding(rel, "format", BAD, problem))
            elif manifest is not None:
                self.findings.append(Finding(rel, "extra", NOTE, "not in the manifest"))
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
            self.findings.append(Finding(exp.path, "present", BAD, "missing"))
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
        if problem:
            self.findings.append(Finding(exp.path, "format", BAD, problem))
            return
        algos = set()
        if self.level == "sha256":
            if exp.sha256:
                algos.add("sha256")
            if exp.git_sha1:
                algos.add("git-sha1")
        algos.update(algo for algo, _ in exp.pins)  # pins are checked at every level but none
        if self.level == "none":
            algos.clear()
        if not algos:
            self.findings.append(Finding(exp.path, "size" if exp.size is not None else "present", OK))
            return
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        job = _HashJob(path, algos, key)
        if self.cache is not None:
            known = self.cache.get(exp.path, key)
            if algos <= set(known):
                job.digests = {a: known[a] for a in algos}
                job.from_cache = True
        jobs.append(job)
        self.hash_checks.append((exp, job))

    def finish(self, explicit: bool) -> ModelVerdict:
        if self.found is None:
            # A model never downloaded is a problem when it is required or was asked for by name.
            status = BAD if (self.spec.required or explicit) else NOTE
            finding = Finding("", "present", status, "not downloaded in any root")
            return ModelVerdict(self.spec, None, (finding,), False)
        for exp, job in self.hash_checks:
            if job.error:
                self.findings.append(Finding(exp.path, "readable", BAD, job.error))
                continue
            wanted = [("sha256", exp.sha256), ("git-sha1", exp.git_sha1), *exp.pins]
            for algo, hexdigest in wanted:
                if hexdigest is None or algo not in job.algos:
                    continue
                actual = job.digests.get(algo)
                if actual == hexdigest:
                    self.findings.append(Finding(exp.path, algo, OK, "cached" if job.from_cache else ""))
                else:
                    self.findings.append(Finding(exp.path, algo, BAD, f"expected {hexdigest}, got {actual}"))
            if self.cache is not None and not job.from_cache and job.digests:
                self.cache.put(exp.path, job.key, job.digests)
        if self.cache is not None:
            self.cache.save()
        order = {BAD: 0, NOTE: 1, OK: 2}
        findings = sorted(self.findings, key=lambda f: (order[f.status], f.path, f.check))
        return ModelVerdict(self.spec, self.found, tuple(findings), True)


def checksum_files(paths: Sequence[Path], algo: str) -> list[tuple[Path, str]]:
    """Digest of each file (in parallel); MissingModelError names the first that cannot be read."""
    from modelctl.errors import MissingModelError

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
        jobs.append(_HashJob(path, {algo}, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)))
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 2) or 1) as pool:
        list(pool.map(_hash_into, jobs))
    for job in jobs:
        if job.error:
            raise MissingModelError(f"Cannot read {job.path}: {job.error}", hint="Check its permissions.")
    return [(job.path, job.digests[algo]) for job in jobs]
