"""`modelctl ensure`: verify, move bad files aside, fetch only what is missing or bad, verify again.

Bad files go to `<model>/.modelctl/quarantine/<stamp>/`; they are deleted once the repaired model
verifies, and put back if the download fails, so a failed repair never leaves less than before.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from modelctl.core.errors import ModelctlError
from modelctl.core.record import META_DIR, read_record
from modelctl.core.registry import ModelSpec
from modelctl.core.settings import DownloadOptions
from modelctl.fetch.download import (
    DownloadEvents,
    DownloadReport,
    ModelFailure,
    plan_downloads,
    record_results,
    run_downloads,
)
from modelctl.store.reuse import Candidate, reuse_files
from modelctl.store.storage import (
    QUARANTINE_DIR,
    Location,
    folder_lock,
    folder_names,
    forget_partials,
    locate,
    probe_root,
)
from modelctl.store.verify import ModelVerdict, VerifyReport, verify_models
from modelctl.store.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsureReport:
    before: VerifyReport
    after: VerifyReport
    repaired: dict[str, tuple[str, ...]]  # model id → files fetched again (or "*" for a whole model)
    download: DownloadReport | None
    failed: tuple[ModelFailure, ...] = ()  # models whose repair failed (only with keep_going)

    @property
    def health(self) -> str:
        return self.after.health


def ensure_selection(
    workspace: Workspace, ids: Sequence[str], size: str | None, everything: bool
) -> tuple[ModelSpec, ...]:
    """Named models, else every required model plus the optional ones already on disk."""
    registry = workspace.registry
    if ids or size is not None or everything:
        return registry.select(ids, size, everything)
    return tuple(
        spec
        for spec in registry.models
        if spec.required or any(loc.exists for loc in locate(spec, workspace.roots))
    )


def ensure_models(
    workspace: Workspace,
    specs: Sequence[ModelSpec],
    options: DownloadOptions,
    events: DownloadEvents,
    *,
    use_cache: bool = True,
    keep_going: bool = False,
) -> EnsureReport:
    """Repair what verify finds bad; `use_cache=False` re-hashes every file first (suspected bit rot).

    One model's failed repair does not stop the others': they are repaired and verified, then the
    failure is raised (naming every failed model), or with `keep_going` left in `report.failed`.
    """
    with _one_thread_at_a_time(workspace, specs):
        return _ensure_held(workspace, specs, options, events, use_cache=use_cache, keep_going=keep_going)


# Process-wide locks by model folder path. The folder's flock (storage.folder_lock) keeps processes
# apart only while one downloads; threads sharing a process (a service's ModelLoader, threads with one
# ModelManager) must also not verify, quarantine and restore one folder at the same time: a second
# thread would move files the first already moved aside, or discard the first's quarantine.
_FOLDER_LOCKS: dict[str, threading.RLock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


@contextmanager
def _one_thread_at_a_time(workspace: Workspace, specs: Sequence[ModelSpec]) -> Iterator[None]:
    """Hold this process's lock on every folder the models may live in; a later thread waits, then
    finds the model repaired. Taken in sorted order, so overlapping selections cannot deadlock."""
    keys = sorted(
        {
            os.path.abspath(state.root.path / name)
            for spec in specs
            for state in workspace.roots
            for name in folder_names(spec, state.root)
        }
    )
    with _FOLDER_LOCKS_GUARD:
        locks = [_FOLDER_LOCKS.setdefault(key, threading.RLock()) for key in keys]
    with ExitStack() as stack:
        for lock in locks:
            stack.enter_context(lock)
        yield


def _ensure_held(
    workspace: Workspace,
    specs: Sequence[ModelSpec],
    options: DownloadOptions,
    events: DownloadEvents,
    *,
    use_cache: bool,
    keep_going: bool,
) -> EnsureReport:
    before = verify_models(workspace, specs, explicit=True, use_cache=use_cache)
    broken = [v for v in before.models if not v.is_ok]
    if not broken or options.offline:
        if not options.offline:
            _tidy(before)
        return EnsureReport(before, before, {}, None)
    folders = sorted({v.location.path for v in broken if v.location is not None and _is_writable(v.location)})
    with ExitStack() as held:
        # Quarantine, download, verify and restore all happen under each folder's lock, the
        # lock a download publishes under: no other modelctl moves or publishes a file between
        # our verdict and our repair. Taken in path order, so two ensures cannot deadlock.
        for folder in folders:
            held.enter_context(folder_lock(folder, options.lock_timeout, partial(events.lock_wait, folder)))
        if folders:  # what was broken before we held the locks may have been repaired meanwhile
            again = verify_models(workspace, [v.spec for v in broken], explicit=True)
            broken = [v for v in again.models if not v.is_ok]
            if not broken:
                return EnsureReport(before, verify_models(workspace, specs, explicit=True), {}, None)
        return _repair(workspace, specs, options, events, before, broken, keep_going=keep_going)


def _is_writable(location: Location) -> bool:
    """True when the copy may be repaired in place: not a read-only store, nor a read-only mount."""
    return not location.root.is_read_only and os.access(location.path, os.W_OK | os.X_OK)


def _repair(
    workspace: Workspace,
    specs: Sequence[ModelSpec],
    options: DownloadOptions,
    events: DownloadEvents,
    before: VerifyReport,
    broken: Sequence[ModelVerdict],
    *,
    keep_going: bool,
) -> EnsureReport:
    """Move the bad files aside, fetch, verify; put them back where the repair failed (locks held)."""
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    moved: dict[str, _Aside] = {}
    linked: dict[str, list[tuple[Path, str]]] = {}
    repaired: dict[str, tuple[str, ...]] = {}
    for verdict in broken:
        if verdict.location is None or not _is_writable(verdict.location):
            # Absent, or in a read-only store or mount: a complete copy goes to the first writable
            # root, the good files linked or copied from it (reuse.py), only the rest fetched.
            repaired[verdict.spec.id] = ("*",)
            continue
        linked[verdict.spec.id] = _linked_copies(workspace, verdict)
        moved[verdict.spec.id] = _quarantine(verdict, stamp)
        repaired[verdict.spec.id] = verdict.repairable or _incomplete(verdict)
        log.info("%s: quarantined %s", verdict.spec.id, ", ".join(verdict.repairable))
    ids = tuple(v.spec.id for v in broken)
    try:
        fresh = _refresh(workspace)
        plan = plan_downloads(
            fresh,
            replace(options, ids=ids, size=None, everything=False, force=False),
            events,
            keep_going=True,
        )
        download = run_downloads(plan, options, events, keep_going=True)
    except (ModelctlError, KeyboardInterrupt) as err:  # no space, Ctrl-C: every repair stops
        log.warning("repair failed (%s); restoring quarantined files", err)
        _restore(moved)
        if isinstance(err, ModelctlError):
            still = "; ".join(f"{i}: {', '.join(repaired[i])}" for i in ids)
            # Same class, exit code and hint as the failure itself (no space: 5, lock mismatch: 3).
            raise err.reworded(
                f"Repair failed, the bad files were put back ({still}): {err.message}"
            ) from err
        raise
    failed_ids = [f.spec.id for f in download.failed]
    if failed_ids:
        log.warning("repair failed for %s; restoring their quarantined files", ", ".join(failed_ids))
        _restore({i: moved[i] for i in failed_ids if i in moved})
    after = verify_models(_refresh(workspace), specs, explicit=True)
    for verdict in after.models:
        if verdict.is_ok and verdict.spec.id in moved:
            _discard(moved[verdict.spec.id])
            _forget_quarantine(verdict)
            _repair_linked_copies(verdict, linked.get(verdict.spec.id, []), options, events)
    if failed_ids and not keep_going:
        error = download.error()
        still = "; ".join(f"{i}: {', '.join(repaired[i])}" for i in failed_ids)
        # Same class, exit code and hint as the (worst) failure itself.
        raise error.reworded(
            f"Repair failed, the bad files were put back ({still}): {error.message}"
        ) from error
    return EnsureReport(before, after, repaired, download, download.failed)


def _linked_copies(workspace: Workspace, verdict: ModelVerdict) -> list[tuple[Path, str]]:
    """(folder, file) of the model's copies in other roots that share a bad file's inode (hard links).

    An in-place edit of one hard-linked copy changed them all: each is repaired with this one.
    """
    assert verdict.location is not None
    here = verdict.location.path
    out: list[tuple[Path, str]] = []
    others: list[Location] | None = None  # located once, only when some bad file has other links
    for rel in verdict.repairable:
        try:
            st = (here / rel).lstat()
        except OSError:
            continue
        if st.st_nlink < 2:
            continue
        if others is None:
            others = [
                o
                for o in locate(verdict.spec, workspace.roots)
                if o.exists and not o.is_other and o.path != here and _is_writable(o)
            ]
        for other in others:
            try:
                theirs = (other.path / rel).lstat()
            except OSError:
                continue
            if (theirs.st_dev, theirs.st_ino) == (st.st_dev, st.st_ino):
                out.append((other.path, rel))
    return out


def _repair_linked_copies(
    verdict: ModelVerdict,
    linked: Sequence[tuple[Path, str]],
    options: DownloadOptions,
    events: DownloadEvents,
) -> None:
    """Give each copy that shared a repaired file's bad inode the repaired bytes (cloned, linked or
    copied, then verified: reuse.py), and record them in that copy's record."""
    assert verdict.location is not None and verdict.location.record is not None
    good = verdict.location.path
    listed = verdict.location.record.by_path()
    by_folder: dict[Path, list[str]] = {}
    for folder, rel in linked:
        by_folder.setdefault(folder, []).append(rel)
    for folder, rels in sorted(by_folder.items()):
        with folder_lock(folder, options.lock_timeout, partial(events.lock_wait, folder)):
            found = [
                (listed[rel], Candidate(good / rel, "the repaired copy", True, listed[rel].checked))
                for rel in rels
                if rel in listed
            ]
            results = reuse_files(folder, found)
            record = read_record(folder)
            if record is not None:
                record_results(folder, record, results)
            for rel in rels:
                if rel in results:
                    log.info(
                        "%s: %s in %s repaired too (it shared the bad bytes)", verdict.spec.id, rel, folder
                    )
                else:
                    log.warning(
                        "%s: %s in %s shares no good bytes yet: run ensure there",
                        verdict.spec.id,
                        rel,
                        folder,
                    )


def _refresh(workspace: Workspace) -> Workspace:
    """Roots may have been created by a download: look at them again."""
    return Workspace(workspace.registry, tuple(probe_root(s.root) for s in workspace.roots))


@dataclass(frozen=True)
class _Aside:
    """Files moved out of a model folder: the stamp folder and (original, aside) pairs."""

    folder: Path
    pairs: tuple[tuple[Path, Path], ...]


def _quarantine(verdict: ModelVerdict, stamp: str) -> _Aside:
    """Move the model's bad files (those that exist and the model names) into its quarantine folder.

    Files the model's record does not name are the user's: reported as extra, never moved.
    """
    assert verdict.location is not None
    model_folder = verdict.location.path
    aside = model_folder / META_DIR / QUARANTINE_DIR / stamp
    pairs = []
    for rel in verdict.repairable:
        source = model_folder / rel
        if not source.is_file() or source.is_symlink():
            continue
        _forget_older_copies(model_folder / META_DIR / QUARANTINE_DIR, rel)
        target = aside / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        pairs.append((source, target))
    return _Aside(aside, tuple(pairs))


def _incomplete(verdict: ModelVerdict) -> tuple[str, ...]:
    """What a repair with no bad file to replace does: complete or check the model's files."""
    if any(f.check == "record" for f in verdict.findings):
        return ("(checked against the Hub)",)
    return ("(completed)",)


def _forget_older_copies(quarantine: Path, rel: str) -> None:
    """Keep at most one quarantined copy per file: earlier runs' copies of rel are deleted."""
    if not quarantine.is_dir() or quarantine.is_symlink():
        return
    for stamp in quarantine.iterdir():
        old = stamp / rel
        if old.is_file() and not old.is_symlink():
            old.unlink()
            for parent in old.parents:  # drop the folders this left empty, up to the stamp's
                if parent == quarantine or any(parent.iterdir()):
                    break
                parent.rmdir()


def _restore(moved: dict[str, _Aside]) -> None:
    """Put quarantined files back where nothing new took their place."""
    for aside in moved.values():
        for original, copy in aside.pairs:
            if copy.exists() and not original.exists():
                os.replace(copy, original)
        _discard(aside)


def _discard(aside: _Aside | None) -> None:
    if aside is not None:
        shutil.rmtree(aside.folder, ignore_errors=True)  # our own folder; rmtree follows no symlink


def _tidy(report: VerifyReport) -> None:
    """Healthy models: remove what killed runs left (partials of complete files, quarantines),
    unless another modelctl is at work on the folder (then its run tidies up)."""
    for verdict in report.models:
        loc = verdict.location
        if loc is None or loc.scan is None or not _is_writable(loc):
            continue
        if not loc.scan.partials and not (loc.path / META_DIR / QUARANTINE_DIR).exists():
            continue
        try:
            with folder_lock(loc.path, 0.0, lambda pid: None):
                forget_partials(loc.path, verdict.expected)
                _forget_quarantine(verdict)
        except (ModelctlError, OSError) as err:
            log.info("%s: leftovers not removed now (%s)", verdict.spec.id, err)


def _forget_quarantine(verdict: ModelVerdict) -> None:
    """The model verifies: what earlier, killed repairs left aside is no longer needed (lock held)."""
    if verdict.location is not None:
        quarantine = verdict.location.path / META_DIR / QUARANTINE_DIR
        if quarantine.is_dir() and not quarantine.is_symlink():
            shutil.rmtree(quarantine, ignore_errors=True)
