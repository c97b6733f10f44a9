"""`modelctl download`: decide per file (keep, reuse, download, resume), check disk space, then fetch.

The decision is a pure function of what the Hub lists and what is on disk (`decide`): in the
folder, and elsewhere on the machine (the Hugging Face cache, other roots: see reuse.py); the plan
is printed by --dry-run. Running a plan takes each model folder's lock, re-surveys the folder
(another modelctl may have finished files meanwhile), fetches in parallel and writes the manifest.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from modelctl.core.errors import (
    BadChecksumError,
    DownloadError,
    MissingModelError,
    ModelctlError,
    NotEnoughSpaceError,
    UsageError,
    command,
    disk_error,
    option,
    spoken,
)
from modelctl.core.hashing import GIT_SHA1, hash_file
from modelctl.core.lockfile import LockedModel, LockFile, locked_for, read_lock
from modelctl.core.record import (
    META_DIR,
    OWN,
    UNRECORDED,
    Checked,
    FileResult,
    Record,
    RepoFile,
    Snapshot,
    checked_now,
    identity,
    is_glob,
    is_safe_relative,
    plan_record,
    read_record,
    trusted_record,
    with_checks,
    write_record,
)
from modelctl.core.registry import ModelSpec
from modelctl.core.retry import RetryPolicy, retry_call
from modelctl.core.settings import DownloadOptions
from modelctl.net.engine import Engine
from modelctl.net.hub import HubAccess, fetch_snapshot, hub_access, retry_reason
from modelctl.net.transfer import (
    FileJob,
    TransferEvents,
    content_length,
    plain_headers,
    resumable_bytes,
)
from modelctl.store import reuse
from modelctl.store.space import check_space
from modelctl.store.storage import (
    PARTIAL_SUFFIX,
    PARTIALS_DIR,
    ROOT_NAMES,
    SIDECAR_SUFFIX,
    Root,
    folder_lock,
    folder_names,
    forget_partials,
    hf_cache_path,
    is_pinned_elsewhere,
    partial_path,
    ranges_path,
    sidecar_path,
)
from modelctl.store.verify import verify_models
from modelctl.store.workspace import PRESENT, ModelState, Workspace, model_state

KEEP, DOWNLOAD, RESUME = "keep", "download", "resume"
REUSE = reuse.REUSE  # linked or copied from a file already on the machine, then verified


class DownloadEvents(TransferEvents, Protocol):
    """What planning and running a download report; output/progress.py shows it (Rich or lines)."""

    def model_start(self, plan: ModelPlan) -> None: ...
    def lock_wait(self, folder: Path, pid: int | None) -> None: ...
    def metadata_retry(self, repo_id: str, attempt: int, delay: float, reason: str) -> None: ...
    def file_reused(self, folder: Path, result: FileResult) -> None: ...


class NullEvents:
    """Events that report nothing: the library API's default, and --quiet's."""

    def model_start(self, plan: ModelPlan) -> None:
        pass

    def lock_wait(self, folder: Path, pid: int | None) -> None:
        pass

    def metadata_retry(self, repo_id: str, attempt: int, delay: float, reason: str) -> None:
        pass

    def file_reused(self, folder: Path, result: FileResult) -> None:
        pass

    def file_start(self, job: FileJob, offset: int) -> None:
        pass

    def file_advance(self, job: FileJob, nbytes: int) -> None:
        pass

    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None:
        pass

    def file_done(self, job: FileJob, result: FileResult) -> None:
        pass


log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class FileDecision:
    """What `decide` chose for one file of the plan: keep, reuse, resume or download it, and why."""

    remote: RepoFile
    action: str  # keep | reuse | download | resume
    offset: int  # bytes already on disk (resume)
    reason: str
    # What the survey saw on disk, kept for the run:
    sha256: str | None = None  # the file's content sha256, when known (the record or hashed now)
    checked: Checked | None = None  # the check that vouches for the file (record or hashed now)
    reuse_from: reuse.Candidate | None = None  # the same bytes elsewhere on the machine (not yet verified)

    @property
    def needed(self) -> int:
        """Bytes to fetch."""
        return 0 if self.action in (KEEP, REUSE) else self.remote.size - self.offset

    @property
    def disk_needed(self) -> int:
        """Bytes to write on the folder's disk: what is fetched, and what is copied (a link takes none)."""
        if self.action == REUSE:
            source = self.reuse_from
            return 0 if source is not None and source.is_link else self.remote.size
        return self.needed

    @property
    def source(self) -> str | None:
        """reuse: the file whose bytes are taken."""
        if self.action != REUSE or self.reuse_from is None:
            return None
        return str(self.reuse_from.path)


def decide(
    remote: RepoFile,
    on_disk: int | None,
    *,
    verified: bool = False,
    partial: int | None = None,
    force: bool = False,
    sha256: str | None = None,
    checked: Checked | None = None,
    reuse_from: reuse.Candidate | None = None,
) -> FileDecision:
    """Keep, reuse, resume or download one file, in that order of preference (pure: no I/O).

    on_disk: the size of the file in the folder (None: none); verified: good enough to keep at
    the registry's verify level; partial: bytes of a resumable partial download (None: none);
    sha256, checked: what is known of the file on disk; reuse_from: the same bytes elsewhere.
    """

    def made(action: str, offset: int, reason: str) -> FileDecision:
        return FileDecision(remote, action, offset, reason, sha256, checked, reuse_from)

    if force:
        return made(DOWNLOAD, 0, spoken("{0}", option("force")))
    if on_disk is not None and verified:
        return made(KEEP, 0, "present and matching")
    if reuse_from is not None:
        return made(REUSE, 0, reuse_from.describe())
    if partial is not None and 0 < partial <= remote.size:
        return made(RESUME, partial, "partial download")
    if on_disk is None:
        return made(DOWNLOAD, 0, "missing")
    return made(DOWNLOAD, 0, "differs from the Hub")


@dataclass(frozen=True)
class ModelPlan:
    spec: ModelSpec
    root: Root
    folder: Path
    snapshot: Snapshot
    files: tuple[FileDecision, ...]
    is_offline: bool = False
    in_place: bool = False  # complete where it is (the shared store): nothing to run
    behind: str | None = None  # the commit on disk when it is an older one of this revision

    @property
    def needed(self) -> int:
        return sum(f.needed for f in self.files)

    @property
    def disk_needed(self) -> int:
        return sum(f.disk_needed for f in self.files)


# Hashes computed this run, by (path, size, mtime_ns, inode): the survey under the lock repeats
# the planning survey, and must not hash a multi-GB file twice.
HashMemo = dict[tuple[str, int, int, int], tuple[dict[str, str], os.stat_result]]


@dataclass(frozen=True)
class ModelFailure:
    """A model that could not be planned, fetched or locked: the other models go on without it."""

    spec: ModelSpec
    error: ModelctlError


@dataclass(frozen=True)
class DownloadPlan:
    workspace: Workspace
    models: tuple[ModelPlan, ...]
    access: HubAccess | None = None
    failed: tuple[ModelFailure, ...] = ()  # models that could not be planned (run_downloads reports them)
    hashes: HashMemo = field(default_factory=dict, compare=False, repr=False)

    @property
    def needed(self) -> int:
        return sum(m.needed for m in self.models)

    def error(self) -> ModelctlError:
        """The error for the models that could not be planned (for --dry-run, after the plan)."""
        return failure_error(self.failed, [m.spec.id for m in self.models], "planned")


def plan_downloads(
    workspace: Workspace, options: DownloadOptions, events: DownloadEvents, *, keep_going: bool = False
) -> DownloadPlan:
    """Resolve every selected model on the Hub (or on disk, offline) and decide each file.

    A model that cannot be planned (a repo the Hub does not have, say) is set aside in
    `plan.failed` and the others are planned; only when none can be (and not `keep_going`) does
    this raise, the error of the worst failure.
    """
    specs = _select(workspace, options)
    access = None if options.offline else hub_access_for(workspace, options)
    hashes: HashMemo = {}
    lock = read_lock(workspace.registry) if options.revision is None else None  # --revision overrides
    plans = []
    failed = []
    for spec in specs:
        if options.revision is not None:  # --revision: that revision is the model asked for
            spec = spec._replace(revision=options.revision)
        try:
            plans.append(_plan_model(workspace, spec, options, events, access, lock, hashes))
        except ModelctlError as err:
            log.warning("%s: cannot be planned: %s", spec.id, err.message)
            failed.append(ModelFailure(spec, err))
    if failed and not plans and not keep_going:
        raise failure_error(failed, (), "downloaded")
    plan = DownloadPlan(workspace, tuple(plans), access, tuple(failed), hashes)
    check_space((m.root.name, m.folder, m.disk_needed) for m in plan.models)
    return plan


def _plan_model(
    workspace: Workspace,
    spec: ModelSpec,
    options: DownloadOptions,
    events: DownloadEvents,
    access: HubAccess | None,
    lock: LockFile | None,
    hashes: HashMemo,
) -> ModelPlan:
    locked = locked_for(lock, spec)
    if access is None:
        return _offline_plan(workspace, spec, options, locked, hashes)
    snapshot = resolve_snapshot(access, spec, options, events, locked.commit if locked else None)
    # Judged once, for the target and the store (--to names the target: neither is needed).
    state = model_state(spec, workspace.roots, locked) if options.to is None else None
    root, folder = _target(workspace, spec, options.to, locked, state)
    if locked is not None:
        _check_against_lock(locked, snapshot)
        snapshot = Snapshot(snapshot.repo_id, locked.revision, locked.commit, snapshot.files)
        remote = wanted_files(spec, locked.snapshot(), options)
    else:
        remote = wanted_files(spec, snapshot, options)
    shared = None if state is None or options.force else _complete_in_store(state, snapshot, remote)
    if shared is not None:  # complete and verified in the read-only store: used where it is
        return shared
    sources = None if options.force else reuse_sources(workspace, spec, folder)
    files = _survey(folder, remote, workspace.registry.verify, options.force, hashes, sources)
    for f in files:
        log.debug("%s: %s %s (%s)", spec.id, f.action, f.remote.path, f.reason)
    log.info(
        "%s: %s@%s → %s, %d bytes to fetch",
        spec.id,
        spec.repo_id,
        snapshot.commit,
        folder,
        sum(f.needed for f in files),
    )
    previous = read_record(folder)
    behind = previous.commit if previous is not None and previous.commit != snapshot.commit else None
    return ModelPlan(spec, root, folder, snapshot, files, behind=behind)


def _complete_in_store(state: ModelState, snapshot: Snapshot, remote: Sequence[RepoFile]) -> ModelPlan | None:
    """A plan that keeps the model where it is when its copy in use is in the read-only store and
    complete at this commit by this machine's own checks (`list`: present (shared)); else None.

    Copying it into a writable root would only duplicate it (a whole copy per machine when the
    store is on another file system); `--to` still makes a copy.
    """
    found, record = state.found, state.record
    if found is None or not found.root.is_read_only or state.status != PRESENT or record is None:
        return None
    listed = record.by_path()
    if record.commit != snapshot.commit or any(
        f.path not in listed or not listed[f.path].same_content(f) for f in remote
    ):
        return None
    files = tuple(FileDecision(f, KEEP, 0, "present in the shared store", None) for f in remote)
    return ModelPlan(state.spec, found.root, found.path, snapshot, files, in_place=True)


def hub_access_for(workspace: Workspace, options: DownloadOptions) -> HubAccess:
    """Where the Hub is and who we are: --endpoint/--token, else the environment, else the registry."""
    return hub_access(
        options.endpoints,
        options.token,
        options.policy.timeout,
        registry_endpoints=workspace.registry.endpoints,
    )


def resolve_snapshot(
    access: HubAccess,
    spec: ModelSpec,
    options: DownloadOptions,
    events: DownloadEvents,
    commit: str | None = None,
) -> Snapshot:
    """The repo at `commit` (the locked one), else at --revision, else at the registry's revision.

    A url model is its registry entry: no Hub is asked (only its servers, for sizes not given).
    """
    if spec.urls:
        return url_snapshot(spec, options.policy)
    revision = commit or spec.revision

    def fetch(attempt: int, target: int) -> Snapshot:
        return fetch_snapshot(access, spec.repo_id, revision, command=options.rerun([spec.id]))

    def on_retry(attempt: int, delay: float, reason: str, target: int) -> None:
        events.metadata_retry(spec.repo_id, attempt, delay, reason)

    return retry_call(fetch, options.policy, retry_on=retry_reason, on_retry=on_retry)


def url_snapshot(spec: ModelSpec, policy: RetryPolicy) -> Snapshot:
    """The snapshot of a url model: its files as the registry pins them, a commit digesting them.

    The commit changes whenever a URL, path or sha256 does, so the record sees a new "commit"
    (files it no longer lists become `outdated`) exactly as for a Hub repo.
    """
    import hashlib
    import json

    entries = sorted((u.path, u.url, u.sha256) for u in spec.urls)
    commit = hashlib.sha256(json.dumps(entries).encode("utf-8")).hexdigest()[:40]
    files = tuple(
        RepoFile(u.path, u.size if u.size is not None else content_length(u.url, policy), u.sha256, "")
        for u in sorted(spec.urls, key=lambda u: u.path)
    )
    return Snapshot(spec.repo_id, spec.revision, commit, files)


def _select(workspace: Workspace, options: DownloadOptions) -> tuple[ModelSpec, ...]:
    registry = workspace.registry
    if not options.ids and options.size is None and not options.everything:
        ids = ", ".join(m.id for m in registry.models) or "(none)"
        sizes = ", ".join(registry.sizes) or "(none)"
        raise UsageError(
            spoken("Name the models to download: MODEL ..., {0} or {1}.", option("size", "S"), option("all")),
            hint=f"Models in {registry.path}: {ids}. Sizes: {sizes}, or 'all'.",
        )
    return registry.select(options.ids, options.size, options.everything)


def _named_target(workspace: Workspace, spec: ModelSpec, to: str, pinned: str | None) -> tuple[Root, Path]:
    """The root and folder of `--to NAME` (a root of the registry) or `--to PATH`."""
    states = workspace.roots
    if to in ROOT_NAMES:
        state = next((s for s in states if s.root.name == to), None)
        if state is None:
            raise UsageError(spoken("{0}", option("to", to)) + f": the registry configures no {to} root.")
        root = state.root
        if root.is_read_only or not (state.is_writable or (state.exists and os.access(root.path, os.W_OK))):
            raise DownloadError(
                f"The {to} root {root.path} is not writable.",
                hint="Choose another root with {0}, or fix the folder's permissions.",
                steps=(option("to"),),
                api_hint="Pass cache_dir= to ModelManager.from_config, or fix the folder's permissions.",
            )
    else:
        root = Root("custom", Path(to).expanduser().absolute())
    folder = _folder_in(spec, root, pinned) or root.path / folder_names(spec, root)[0]
    _refuse_other(spec, folder)
    return root, folder


def _target(
    workspace: Workspace,
    spec: ModelSpec,
    to: str | None,
    locked: LockedModel | None,
    judged: ModelState | None = None,
) -> tuple[Root, Path]:
    """--to, else the writable root the model is already in, else the registry's `download: to:`
    root (`cache_dir:` names the project root), else the first writable root.

    A folder whose record names another repo or revision is never written into. judged: the
    model's model_state, when the caller has it already.
    """
    states = workspace.roots
    pinned = locked.commit if locked is not None else None  # its own user-root folder (folder_names)
    if to is not None:
        return _named_target(workspace, spec, to, pinned)
    found = (judged or model_state(spec, states, locked)).found
    if found is not None and not found.root.is_read_only and os.access(found.path, os.W_OK | os.X_OK):
        return found.root, found.path
    chosen = workspace.registry.download_to
    if chosen is not None:
        state = next(s for s in states if s.root.name == chosen)
        if not state.is_writable or state.problem is not None:
            raise DownloadError(
                f"The {chosen} root {state.root.path}, where {workspace.registry.path.name} sends "
                f"downloads, is not writable" + (f" ({state.problem})." if state.problem else "."),
                hint="Fix the folder's permissions, change `download: to:` (or `cache_dir:`) in the "
                "registry, or choose another root with {0}.",
                steps=(option("to"),),
            )
        free = _folder_in(spec, state.root, pinned)
        if free is not None:  # else its folder holds another model: the first writable root's, as before
            return state.root, free
    for state in states:
        if state.is_writable and state.problem is None:
            free = _folder_in(spec, state.root, pinned)
            if free is not None:
                return state.root, free
    tried = "; ".join(f"{s.root.name} {s.root.path}" for s in states)
    raise DownloadError(
        f"No storage root is writable for {spec.id} (tried {tried}).",
        hint="Set MODELCTL_HOME to a writable folder, or pass {0}.",
        steps=(option("to", "PATH"),),
        api_hint="Set MODELCTL_HOME to a writable folder, or pass cache_dir= to ModelManager.from_config.",
    )


def _refuse_links_out(root: Root, folder: Path) -> None:
    """DownloadError when the model folder, or its `.modelctl/`, is a symlink that leaves the root.

    Nothing outside the storage roots is ever written: a link is named, not followed.
    """
    for path in (folder, folder / META_DIR):
        if not path.is_symlink():
            continue
        target = Path(os.path.realpath(path))
        if path == folder and target.is_relative_to(Path(os.path.realpath(root.path))):
            continue  # a model folder linked to another place inside its root is followed
        raise DownloadError(
            f"{path} is a symlink to {target}, outside the {root.name} root {root.path}; nothing was written.",
            hint="Replace the link with a real folder (or move the files into the root), then run again.",
        )


def _folder_in(spec: ModelSpec, root: Root, pinned: str | None) -> Path | None:
    """The folder a download of spec goes to under root: the layout's first that holds nothing
    else (no record, or this model's) and, when models.lock pins a commit, not another commit."""
    names = folder_names(spec, root, commit=pinned)
    for name in names[:2] if pinned and root.is_machines else names[:1]:  # never the 0.1 layout's
        folder = root.path / name
        record = read_record(folder)
        if identity(record, spec.repo_id, spec.revision) in (OWN, UNRECORDED) and not is_pinned_elsewhere(
            root, record, pinned
        ):
            return folder
    return None


def _refuse_other(spec: ModelSpec, folder: Path, record: Record | None = None) -> None:
    """DownloadError when the folder's record names another repo or revision than spec."""
    record = record or read_record(folder)
    if record is not None and identity(record, spec.repo_id, spec.revision) not in (OWN, UNRECORDED):
        raise DownloadError(
            f"{folder} holds {record.repo_id}@{record.revision}, not {spec.repo_id}@{spec.revision} "
            f"({spec.id}); nothing was written there.",
            hint="Remove or move that folder yourself, or give the model its own `local_dir:` in the registry.",
        )


def _parents(path: str) -> list[str]:
    """The folders a repo path lies in: "a/b/c.json" → ["a", "a/b"]."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _check_against_lock(locked: LockedModel, snapshot: Snapshot) -> None:
    """The Hub must still serve, for the locked commit, exactly the locked files."""
    listed = {f.path: f for f in snapshot.files}
    differ = [f.path for f in locked.files if listed.get(f.path) != f]
    if differ:
        raise BadChecksumError(
            f"The Hub's files of {locked.repo_id}@{locked.commit[:12]} differ from models.lock: "
            f"{', '.join(differ)}; nothing was downloaded.",
            hint="If the repo was rewritten on purpose, run {0} again and review the change.",
            steps=(command("lock"),),
        )


def check_listing(snapshot: Snapshot, done: str = "nothing was downloaded") -> None:
    """Refuse a listing with a name no model folder can hold, before any byte (DownloadError).

    Names that would land outside the folder, control characters, lone surrogates, a path listed
    twice, or a file that another listed path uses as a folder.
    """
    where = f"{snapshot.repo_id}@{snapshot.commit[:12]}"
    listed_paths = {f.path for f in snapshot.files}
    seen: set[str] = set()
    for remote in snapshot.files:
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in remote.path):  # no file system can name it
            raise DownloadError(
                f"{where} lists a file name that is not valid Unicode (a lone surrogate), {remote.path!r}; {done}.",
                hint="Report this repo/mirror: modelctl refuses names no file system can hold.",
            )
        if not is_safe_relative(remote.path):
            raise DownloadError(
                f"{where} lists a file named {remote.path!r}, which would land outside the model folder; {done}.",
                hint="Report this repo/mirror; modelctl refuses such names.",
            )
        if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in remote.path):
            raise DownloadError(
                f"{where} lists a file name with control characters, {remote.path!r}; {done}.",
                hint="Report this repo/mirror: such names can rewrite your terminal; modelctl refuses them.",
            )
        if remote.path in seen:
            raise DownloadError(
                f"{where} lists {remote.path!r} twice; {done}.",
                hint="Report this repo/mirror: a listing must name each file once.",
            )
        seen.add(remote.path)
        folder = next((p for p in _parents(remote.path) if p in listed_paths), None)
        if folder is not None:
            raise DownloadError(
                f"{where} lists both a file {folder!r} and {remote.path!r} inside it as a folder; {done}.",
                hint="Report this repo/mirror: a path cannot be a file and a folder at once.",
            )


def wanted_files(spec: ModelSpec, snapshot: Snapshot, options: DownloadOptions) -> tuple[RepoFile, ...]:
    """The snapshot's files that the registry's `files:` and --include/--exclude select."""
    check_listing(snapshot)
    patterns = spec.files + options.include
    out = []
    listed_paths = {f.path for f in snapshot.files}
    for remote in snapshot.files:
        if patterns and not any(fnmatch.fnmatchcase(remote.path, p) for p in patterns):
            continue
        if any(fnmatch.fnmatchcase(remote.path, p) for p in options.exclude):
            continue
        out.append(remote)
    absent = [p for p in (*spec.files, *spec.checksums) if not is_glob(p) and p not in listed_paths]
    if absent:
        raise MissingModelError(
            f"{spec.repo_id}@{snapshot.revision} has no file named {', '.join(absent)}; nothing was downloaded.",
            hint=f"Check `files:` and `checksums:` of {spec.id} in the registry.",
        )
    if not out:
        listed = ", ".join(patterns) if patterns else "every file"
        raise MissingModelError(
            f"No file of {spec.repo_id}@{snapshot.revision} matches {listed}.",
            hint=f"Check `files:` of {spec.id} in the registry and {{0}}/{{1}}.",
            steps=(option("include"), option("exclude")),
            api_hint=f"Check `files:` of {spec.id} in the registry.",
        )
    return tuple(out)


def _survey(
    folder: Path,
    remote: Sequence[RepoFile],
    level: str,
    force: bool,
    hashes: HashMemo,
    sources: reuse.Sources | None = None,
) -> tuple[FileDecision, ...]:
    """Look at the folder (stat, record, sidecars; hash files the record cannot vouch for), and
    for a file it lacks, at `sources` (the HF cache, other roots: stats and records, no hashing)."""
    record = trusted_record(folder, is_read_only=False)  # another machine's checks are claims
    known = record.by_path() if record is not None else {}
    out = []
    for item in remote:
        on_disk, verified, sha256, checked = _on_disk(folder, item, known.get(item.path), level, hashes)
        partial = resumable_bytes(folder, item.path, item.size, item.sha256, item.blob_id)
        found = sources.candidate(item) if sources is not None and not verified else None
        out.append(
            decide(
                item,
                on_disk,
                verified=verified,
                partial=partial,
                force=force,
                sha256=sha256,
                checked=checked,
                reuse_from=found,
            )
        )
    return tuple(out)


def reuse_sources(workspace: Workspace, spec: ModelSpec, folder: Path) -> reuse.Sources:
    """Where the model's bytes may already be: the other roots' folders and the HF cache."""
    roots = [(s.root.name, s.root.path) for s in workspace.roots if s.is_usable]
    same_model = [
        (s.root.name, s.root.path / name)
        for s in workspace.roots
        if s.is_usable
        for name in folder_names(spec, s.root)
    ]
    return reuse.find_sources(roots, spec.repo_id, folder, same_model, hf_cache_path())


def _reuse(model: ModelPlan, events: DownloadEvents) -> dict[str, FileResult]:
    """Under the lock: link or copy in, verified, the files the survey found on the machine; {path: result}.

    A file whose source fails its check is left to the fetch.
    """
    found = [(f.remote, f.reuse_from) for f in model.files if f.action == REUSE and f.reuse_from is not None]
    results = reuse.reuse_files(model.folder, found) if found else {}
    for result in results.values():
        events.file_reused(model.folder, result)
    return results


def _on_disk(
    folder: Path, remote: RepoFile, entry: RepoFile | None, level: str, hashes: HashMemo
) -> tuple[int | None, bool, str | None, Checked | None]:
    """The file in the folder: (its size or None, good enough to keep at `level`, its sha256 and
    the check that vouches for it when known), from the record's check of this very stat, else hashed."""
    dest = folder / remote.path
    try:
        st = None if dest.is_symlink() or not dest.is_file() else dest.stat()
    except OSError:
        st = None
    if st is None:
        return None, False, None, None
    if st.st_size != remote.size:
        return st.st_size, False, None, None
    algo, expected = ("sha256", remote.sha256) if remote.sha256 else ("git-sha1", remote.blob_id)
    if entry is not None and entry.checked is not None and entry.checked.is_current(st):
        digests = entry.checked.digests
        if algo in digests:  # hashed at this very stat: matching or known bad, no need to hash again
            ok = digests[algo] == expected
            return st.st_size, ok, digests.get("sha256"), entry.checked if ok else None
    if level in ("none", "size"):  # the registry asks for no more than this
        return st.st_size, True, None, None
    key = (str(dest), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in hashes:
        try:
            digests, hashed = hash_file(dest, ("sha256", GIT_SHA1))
        except OSError as err:  # gone, or changed while hashed (another process at work): not kept
            log.info("%s: not kept, could not hash it (%s)", dest, err)
            return st.st_size, False, None, None
        hashes[key] = (digests, hashed)
    digests, hashed = hashes[key]  # the check is of the inode hashed, whatever the path held at the stat
    checked = checked_now(hashed, digests)
    ok = hashed.st_size == remote.size and checked.digests[algo] == expected
    return hashed.st_size, ok, digests["sha256"], checked


def _offline_plan(
    workspace: Workspace,
    spec: ModelSpec,
    options: DownloadOptions,
    locked: LockedModel | None,
    hashes: HashMemo,
) -> ModelPlan:
    """Offline: the model must already be complete on disk and verify (by its record or models.lock)."""
    verdict = verify_models(workspace, [spec], explicit=True).models[0]
    found = verdict.location
    record = found.record if found is not None else None
    if verdict.is_ok and found is not None and record is not None:
        files = tuple(
            FileDecision(f._replace(checked=None), KEEP, 0, "offline")
            for f in (locked.files if locked is not None else record.selected(spec.files))
        )
        snapshot = Snapshot(record.repo_id, record.revision, record.commit, tuple(f.remote for f in files))
        return ModelPlan(spec, found.root, found.path, snapshot, files, is_offline=True)
    problems = [
        f"{f.path}: {f.detail}" if f.path else f.detail for f in verdict.findings if f.status == "bad"
    ]
    # What complete is, offline, comes only from models.lock or the model's own record (written
    # before the first byte of a download): the HF cache shows what someone fetched, not what the
    # commit lists. With such a listing, what is missing may still be on the machine.
    listing: Snapshot | None = None
    if locked is not None:
        listing = locked.snapshot()
    elif record is not None:
        listed = tuple(f._replace(checked=None) for f in record.selected(spec.files))
        listing = Snapshot(record.repo_id, record.revision, record.commit, listed)
    if listing is not None and not options.force:
        root, folder = _target(workspace, spec, options.to, locked)
        remote = wanted_files(spec, listing, options)
        sources = reuse_sources(workspace, spec, folder)
        files = _survey(folder, remote, workspace.registry.verify, False, hashes, sources)
        lacking = [f.remote.path for f in files if f.action not in (KEEP, REUSE)]
        if not lacking:
            return ModelPlan(spec, root, folder, listing, files)
        problems.append("not on this machine (HF cache, other roots): " + ", ".join(lacking))
    if found is not None:
        where = f" in {found.path}"
    else:
        where = " (searched: " + ", ".join(f"{s.root.name} {s.root.path}" for s in workspace.roots) + ")"
    raise _incomplete_offline(spec, listing, problems, where, options)


def _incomplete_offline(
    spec: ModelSpec, listing: Snapshot | None, problems: list[str], where: str, options: DownloadOptions
) -> MissingModelError:
    """The error of a model offline mode cannot complete: what is missing, and how to get it."""
    hint = "Connect and run {0} to fetch what is missing"
    cached = _hf_snapshots(spec.repo_id) if listing is None else []
    if cached:  # the files may all be there: only the listing of the commit is missing
        problems = [
            f"the HF cache holds {spec.repo_id} at {', '.join(f'{c[:12]} ({n} files)' for c, n in cached)}, "
            "but nothing on this machine says which files its commit has (no record, no models.lock)"
        ]
        hint = (
            "Nothing needs downloading: run {1} once online, so the HF cache can be used "
            "offline (it only writes models.lock; {2} where the environment turns offline mode on)"
        )
    elif listing is None:  # with models.lock, what the HF cache holds can fill the model offline
        hint += "; or run {1} once online, so the HF cache can be used offline"
    return MissingModelError(
        f"{spec.id} is not complete on disk and offline mode is on{where}:\n  " + "\n  ".join(problems),
        hint=hint + ".",
        api_hint=OFFLINE_API_HINT,
        steps=(
            options.rerun([spec.id], online=True),
            command("lock"),
            command("lock", env="HF_HUB_OFFLINE=0"),
        ),
    )


def _no_copy_offline(model_id: str, paths: list[str], options: DownloadOptions) -> MissingModelError:
    return MissingModelError(
        f"{model_id}: offline, and no good copy of {', '.join(paths)} "
        "is on this machine (the copies found failed their hash check, or went away).",
        hint="Connect and run {0} to fetch them.",
        api_hint=OFFLINE_API_HINT,
        steps=(options.rerun([model_id], online=True),),
    )


def _hf_snapshots(repo_id: str) -> list[tuple[str, int]]:
    """(commit, files) of each snapshot the Hugging Face cache holds for repo_id, newest first."""
    snapshots = hf_cache_path() / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    out = []
    try:
        entries = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            files = sum(1 for p in entry.rglob("*") if not p.is_dir())
            if files:
                out.append((entry.name, files))
    return out


OFFLINE_API_HINT = (
    "Download it online: ModelManager.from_config(offline=False), with HF_HUB_OFFLINE unset (or 0)."
)

# --------------------------------------------------------------------------- run


@dataclass(frozen=True)
class ModelOutcome:
    spec: ModelSpec
    root: Root
    folder: Path
    commit: str
    files: tuple[FileResult, ...]

    @property
    def bytes_fetched(self) -> int:
        return sum(f.bytes_fetched for f in self.files)


@dataclass(frozen=True)
class DownloadReport:
    plan: DownloadPlan
    models: tuple[ModelOutcome, ...]
    seconds: float
    failed: tuple[ModelFailure, ...] = ()  # the plan's failures, then the run's

    @property
    def bytes_fetched(self) -> int:
        return sum(m.bytes_fetched for m in self.models)

    def error(self) -> ModelctlError:
        """The error to raise for the failed models (the worst one's class), naming every one."""
        return failure_error(self.failed, [m.spec.id for m in self.models], "downloaded")


def run_downloads(
    plan: DownloadPlan, options: DownloadOptions, events: DownloadEvents, *, keep_going: bool = False
) -> DownloadReport:
    """Fetch what the plan needs, model by model, each under its folder's lock.

    One model's failure does not stop the others; at the end, the report's `error()` is raised
    when any model failed (the plan's failures included), unless `keep_going`.
    """
    start = time.monotonic()
    outcomes = []
    failed = list(plan.failed)
    for model in plan.models:
        if model.is_offline or model.in_place:
            outcomes.append(_kept(model))
            continue
        try:
            outcomes.append(_run_model(model, plan, options, events))
        except ModelctlError as err:
            log.warning("%s: download failed: %s", model.spec.id, err.message)
            failed.append(ModelFailure(model.spec, err))
    report = DownloadReport(plan, tuple(outcomes), time.monotonic() - start, tuple(failed))
    if failed and not keep_going:
        raise report.error()
    return report


def _kept(model: ModelPlan) -> ModelOutcome:
    files = tuple(
        FileResult(f.remote.path, f.remote.size, f.remote.sha256, 0, 0, action=KEEP) for f in model.files
    )
    return ModelOutcome(model.spec, model.root, model.folder, model.snapshot.commit, files)


def _run_model(
    model: ModelPlan, plan: DownloadPlan, options: DownloadOptions, events: DownloadEvents
) -> ModelOutcome:
    folder = model.folder
    _refuse_links_out(model.root, folder)
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder, options.lock_timeout, lambda pid: events.lock_wait(folder, pid)):
        # Another modelctl may have fetched files while we waited: decide again under the lock.
        remote = [f.remote for f in model.files]
        sources = None if options.force else reuse_sources(plan.workspace, model.spec, folder)
        files = _survey(folder, remote, plan.workspace.registry.verify, options.force, plan.hashes, sources)
        model = ModelPlan(model.spec, model.root, folder, model.snapshot, files, behind=model.behind)
        try:
            record = _write_plan(model)  # before the first byte: what a complete model is
        except OSError as err:
            raise disk_error(err, f"{model.spec.id}: writing its record in {folder}") from None
        events.model_start(model)
        reused = _reuse(model, events)  # bytes already on the machine: not fetched
        wanted = [f for f in files if f.action != KEEP and f.remote.path not in reused]
        if plan.access is None:  # offline: the plan found every file on the machine
            if wanted:
                record_results(folder, record, reused)
                raise _no_copy_offline(model.spec.id, [f.remote.path for f in wanted], options)
            jobs = []
        else:  # the endpoint that answered the metadata is tried first for the files too
            access = (
                plan.access.starting_with(model.snapshot.endpoint) if model.snapshot.endpoint else plan.access
            )
            jobs = [_job(model, f, access) for f in wanted]
        results: dict[str, FileResult] = dict(reused)
        failures: list[ModelctlError] = []
        engine = Engine(
            jobs,
            options.policy,
            events,
            connections=options.connections or plan.workspace.registry.connections,  # None: adapts (pace.py)
            max_files=options.max_workers,
            split_size=options.split_size,
        )
        try:
            engine.run()
        except KeyboardInterrupt:  # workers stop at their next chunk, keeping their partial files
            record_results(folder, record, {**results, **engine.results})
            raise
        results.update(engine.results)
        failures.extend(engine.errors.values())
        try:
            record_results(folder, record, results)
        except OSError as err:
            failures.append(disk_error(err, f"{model.spec.id}: writing its record"))
        if not failures:  # every file of the commit is in place: what earlier runs left is not wanted
            forget_partials(folder, (f.remote.path for f in files))
    if failures:
        raise _worst(failures, model)
    outcomes = []
    for f in files:
        if f.action == KEEP:
            sha256 = f.remote.sha256 or f.sha256
            outcomes.append(FileResult(f.remote.path, f.remote.size, sha256, 0, 0, action=KEEP))
        else:
            outcomes.append(results[f.remote.path])
    return ModelOutcome(model.spec, model.root, folder, model.snapshot.commit, tuple(outcomes))


def _job(model: ModelPlan, plan: FileDecision, access: HubAccess) -> FileJob:
    remote = plan.remote
    dest = model.folder / remote.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.parent.resolve().is_relative_to(model.folder.resolve()):
        raise DownloadError(f"{remote.path}: its folder leads outside {model.folder} through a symlink.")
    if plan.action == DOWNLOAD:  # --force, or a partial that is not this file's: no stale resume
        for stale in (partial_path, sidecar_path, ranges_path):
            stale(model.folder, remote.path).unlink(missing_ok=True)
    if model.spec.urls:  # plain URLs, not a Hub endpoint: the token is never sent there
        urls = tuple(u.url for u in model.spec.urls if u.path == remote.path)
        headers: Callable[[str], dict[str, str]] = plain_headers
    else:
        urls = access.file_urls(model.snapshot.repo_id, model.snapshot.commit, remote.path)
        headers = access.headers_for
    return FileJob(
        urls=urls,
        folder=model.folder,
        dest=dest,
        rel_path=remote.path,
        size=remote.size,
        sha256=remote.sha256,
        blob_id=remote.blob_id,
        commit=model.snapshot.commit,
        headers=headers,
    )


def _write_plan(model: ModelPlan) -> Record:
    """Record the commit's every file before fetching: pending until verified, never dropped.

    Kept files carry the check that vouched for them. A folder that another run filled with a
    different model meanwhile is refused.
    """
    snap = model.snapshot
    previous = read_record(model.folder)
    _refuse_other(model.spec, model.folder, previous)
    _sweep_sidecars(model.folder)
    listing = (f._replace(checked=None) for f in snap.files)
    record = plan_record(snap.repo_id, snap.revision, snap.commit, listing, previous)
    kept = {f.remote.path: f.checked for f in model.files if f.action == KEEP and f.checked is not None}
    record = with_checks(record, kept)
    write_record(model.folder, record)
    return record


def _sweep_sidecars(folder: Path) -> None:
    """Remove sidecars whose partial is gone (a run killed between publishing and tidying up)."""
    where = folder / META_DIR / PARTIALS_DIR
    if where.is_dir() and not where.is_symlink():
        for sidecar in where.glob("*" + SIDECAR_SUFFIX):
            if not sidecar.with_suffix(PARTIAL_SUFFIX).exists():
                sidecar.unlink(missing_ok=True)


def record_results(folder: Path, record: Record, results: Mapping[str, FileResult]) -> None:
    """Mark the files fetched and verified this run; every other file stays as the plan has it."""
    checks = {}
    listed = record.by_path()
    for rel, result in results.items():
        if result.stat is None:
            continue  # nothing says which inode was hashed: stays pending
        digests = {"sha256": result.sha256} if result.sha256 else {}  # the engine always hashes
        entry = listed.get(rel)
        if entry is not None and not entry.is_lfs:
            digests["git-sha1"] = entry.blob_id  # the transfer checked it before publishing
        # The stat of the inode that was hashed (taken from its open file), never a stat of the
        # path now: another process may have renamed other bytes into place since.
        checks[rel] = checked_now(result.stat, digests)
    write_record(folder, with_checks(record, checks))


def _rank(err: ModelctlError) -> int:
    """Integrity first, then disk space, then not-found, then the rest: the worst decides the exit code."""
    order = (BadChecksumError, NotEnoughSpaceError, MissingModelError)
    return next((i for i, kind in enumerate(order) if isinstance(err, kind)), len(order))


def failure_error(failed: Sequence[ModelFailure], done: Sequence[str], verb: str) -> ModelctlError:
    """One error for the models that failed: the worst one's class, exit code and hint, naming them all.

    A lone failure with nothing done is its own error, unchanged. `done` names the models that
    succeeded; `verb` says what happened to them ("downloaded", "locked in models.lock").
    """
    if len(failed) == 1 and not done:
        return failed[0].error
    worst = min(failed, key=lambda f: _rank(f.error))
    total = len(failed) + len(done)
    lines = [f"{len(failed)} of {total} models failed: {', '.join(f.spec.id for f in failed)}."]
    lines += [f"  {f.spec.id}: {f.error.message}" for f in failed]
    lines.append(f"The others were {verb}: {', '.join(done)}." if done else f"No model was {verb}.")
    return worst.error.reworded("\n".join(lines))


def _worst(failures: Sequence[ModelctlError], model: ModelPlan) -> ModelctlError:
    """The error that decides the exit code (see _rank), its message naming the other failures."""
    worst = min(failures, key=_rank)
    others = [f"  {e.message}" for e in failures if e is not worst]
    if others:
        worst.message += f"\nAlso failed for {model.spec.id}:\n" + "\n".join(others)
    return worst
