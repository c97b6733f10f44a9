"""`modelctl doctor`: everything that decides whether modelctl can work here, and what to fix."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from modelctl.core.errors import ModelctlError, Step, command, option
from modelctl.core.record import META_DIR
from modelctl.net.hub import DEFAULT_ENDPOINT, hub_access
from modelctl.store.storage import OWNER_NAME, PROJECT_ROOTS, Root, RootState, locate, lock_owner
from modelctl.store.usage import model_states
from modelctl.store.workspace import MISSING, PRESENT, Workspace, lock_in_force, model_state, open_workspace

OK, NOTE, PROBLEM = "ok", "note", "problem"
PACKAGES = ("modelctl", "typer", "rich", "huggingface_hub", "pyyaml", "platformdirs", "filelock")
OPTIONAL = ("hf_xet", "hf_transfer")


@dataclass(frozen=True)
class Check:
    area: str
    status: str  # ok | note | problem
    detail: str
    hint: str = ""  # what to do, its steps as `{0}`, ... (core.errors.worded)
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]
    versions: dict[str, str | None]

    @property
    def needs_attention(self) -> bool:
        return any(c.status == PROBLEM for c in self.checks)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_doctor(config: Path | None = None) -> DoctorReport:
    checks: list[Check] = []
    versions = {"python": platform.python_version(), **{p: _version(p) for p in (*PACKAGES, *OPTIONAL)}}
    checks.append(
        Check("python", OK, f"Python {versions['python']} on {platform.system()} {platform.machine()}")
    )
    for name in PACKAGES:
        if versions[name] is None:
            checks.append(Check("packages", PROBLEM, f"{name} is not installed", f"pip install {name}"))
    for name in OPTIONAL:
        state = versions[name] or "not installed (optional)"
        checks.append(Check("packages", OK if versions[name] else NOTE, f"{name}: {state}"))
    try:
        workspace = open_workspace(config)
    except ModelctlError as err:
        checks.append(Check("registry", PROBLEM, err.message, err.hint))
        return DoctorReport(tuple(checks), versions)
    source = workspace.registry.source
    checks.append(
        Check("registry", OK, f"{source.path} ({source.reason}), {len(workspace.registry.models)} models")
    )
    checks += _root_checks(workspace)
    checks += _hub_checks()
    checks += _model_checks(workspace)
    checks += _leftover_checks(workspace)
    checks += _git_checks(workspace)
    return DoctorReport(tuple(checks), versions)


def _root_checks(workspace: Workspace) -> list[Check]:
    out = []
    for state in workspace.roots:
        out.append(_root_check(state))
    if not any(s.is_writable for s in workspace.roots):
        out.append(
            Check(
                "storage",
                PROBLEM,
                "no storage root is writable: downloads have nowhere to go",
                "Set MODELCTL_HOME to a writable folder.",
            )
        )
    return out


def _root_check(state: RootState) -> Check:
    root = state.root
    anchor = next((p for p in (root.path, *root.path.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(anchor).free
    what = f"{root.name} root {root.path}: " + ("exists" if state.exists else "not created yet")
    what += f", {'writable' if state.is_writable else 'read-only'}, {free / 1e9:.1f} GB free"
    if state.problem:
        return Check(
            "storage",
            PROBLEM,
            f"{root.name} root skipped: {state.problem}",
            "Fix the folder's permissions or point the root elsewhere in models.yaml.",
        )
    return Check("storage", OK, what)


def _hub_checks() -> list[Check]:
    endpoint = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    out = [
        Check("hub", OK, f"endpoint {endpoint}" + (" (HF_ENDPOINT)" if os.environ.get("HF_ENDPOINT") else ""))
    ]
    try:
        token = hub_access().token
    except ModelctlError as err:
        return [Check("hub", PROBLEM, err.message, err.hint)]
    out.append(
        Check(
            "hub",
            OK,
            "a token is set" if token else "no token (public repos only)",
            "" if token else "Set HF_TOKEN or run `hf auth login` for gated or private repos.",
        )
    )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes")
    out.append(
        Check("hub", NOTE if offline else OK, "offline mode (HF_HUB_OFFLINE)" if offline else "online")
    )
    if os.environ.get("HF_HUB_ENABLE_HF_TRANSFER", "").strip().lower() in ("1", "true", "yes", "on"):
        # Accepted, not needed: bench/download measured the built-in engine against hf_transfer.
        out.append(
            Check(
                "hub",
                OK,
                "HF_HUB_ENABLE_HF_TRANSFER is set: modelctl's own engine does what it asks (files split "
                "over several connections, as many as pay, {0} to fix it) and verifies every byte before "
                "publishing; the variable changes nothing here",
                steps=(option("connections"),),
            )
        )
    return out


def _model_checks(workspace: Workspace) -> list[Check]:
    """Each model on disk judged by its record (no hashing): complete, or what is wrong and the fix."""
    try:
        lock = lock_in_force(workspace.registry)
    except ModelctlError as err:
        return [Check("models", PROBLEM, err.message, err.hint)]
    out = []
    for spec in workspace.registry.models:
        entry = lock.models.get(spec.id) if lock is not None else None
        state = model_state(
            spec, workspace.roots, entry if entry is not None and entry.matches(spec) else None
        )
        if state.status == PRESENT or (state.status == MISSING and not spec.required):
            continue
        if state.status == MISSING:  # required, and nowhere: the project cannot run
            out.append(
                Check(
                    "models",
                    PROBLEM,
                    f"{spec.id}: required, and not downloaded in any root",
                    "{0} downloads and verifies it.",
                    (command("ensure", spec.id),),
                )
            )
            continue
        problems = [*state.missing, *state.mismatched, *state.bad]
        detail = f"{spec.id}: {state.status}" + (f" ({', '.join(problems[:4])})" if problems else "")
        if state.found is not None:
            detail += f" in {state.found.path}"
        for line in state.warnings:
            detail += f"; {line.split(': ', 1)[-1]}"
        out.append(
            Check(
                "models",
                NOTE,  # the model's state, not the machine's: `verify`'s exit code judges it
                detail,
                "{0} completes and verifies it (resuming partial files).",
                (command("ensure", spec.id),),
            )
        )
    return out


def _leftover_checks(workspace: Workspace) -> list[Check]:
    out = []
    try:
        in_use = {
            s.spec.id: s.found.path for s in model_states(workspace, workspace.registry.models) if s.found
        }
    except ModelctlError:  # an unreadable models.lock: _model_checks reports it
        in_use = {}
    for spec in workspace.registry.models:
        for loc in locate(spec, workspace.roots):
            if not loc.exists or loc.scan is None:
                continue
            if loc.scan.partials:
                out.append(
                    Check(
                        "leftovers",
                        NOTE,
                        f"{spec.id}: {len(loc.scan.partials)} partial download{'' if len(loc.scan.partials) == 1 else 's'} in {loc.path}"
                        + ("" if in_use.get(spec.id) in (None, loc.path) else " (a shadowed copy)"),
                        *_partials_hint(spec.id, loc.root, in_use.get(spec.id) in (None, loc.path)),
                    )
                )
            pid = lock_owner(loc.path)
            if pid is not None and (loc.path / META_DIR / OWNER_NAME).exists() and not _alive(pid):
                out.append(
                    Check(
                        "leftovers",
                        NOTE,
                        f"{spec.id}: stale lock owner (pid {pid} is gone)",
                        "Harmless (the next run takes the lock over); {0} removes it.",
                        (command("clean", "", "incomplete"),),
                    )
                )
    return out


def _partials_hint(model: str, root: Root, is_in_use: bool) -> tuple[str, tuple[Step, ...]]:
    """Resume or remove partials; a plain `download` resumes the copy in use, not a shadowed one
    (which `--to` completes, linking bytes another root already holds rather than resuming)."""
    if root.is_read_only:
        return f"The {root.name} root is read-only: modelctl neither resumes nor removes them there.", ()
    remove = command("clean", model, "incomplete", f"root {root.name}")
    if is_in_use:
        return "{0} resumes them; {1} removes them.", (command("download", model), remove)
    return "{0} completes them; {1} removes them.", (command("download", model, f"to {root.name}"), remove)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _git_checks(workspace: Workspace) -> list[Check]:
    """Model files must never be committed: project and legacy roots inside a git tree must be ignored."""
    git = shutil.which("git")
    if git is None:
        return []
    out = []
    for state in workspace.roots:
        if state.root.name not in PROJECT_ROOTS:
            continue
        path = state.root.path
        anchor = next((p for p in (path, *path.parents) if p.is_dir()), None)
        if anchor is None:
            continue
        top = subprocess.run(
            [git, "-C", str(anchor), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
        )
        if top.returncode != 0:
            continue
        repo = Path(top.stdout.strip())
        try:
            rel = path.resolve().relative_to(repo.resolve())
        except ValueError:
            continue
        ignored = subprocess.run(
            [git, "-C", str(repo), "check-ignore", "-q", f"{rel.as_posix()}/"],
            capture_output=True,
            check=False,
        )
        if ignored.returncode != 0:
            exists = path.is_dir()  # a root not made yet holds nothing to commit: worth a note
            out.append(
                Check(
                    "git",
                    PROBLEM if exists else NOTE,
                    f"the {state.root.name} root {path} is inside the git work tree {repo} "
                    + (
                        "and not ignored: model files could be committed"
                        if exists
                        else "and would not be ignored once made"
                    ),
                    f"Add this line to {repo / '.gitignore'}: /{rel.as_posix()}/",
                )
            )
    return out
