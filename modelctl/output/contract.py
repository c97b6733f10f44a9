"""The JSON contract: for every report, the one function that turns it into the dict `--json` prints.

snake_case keys, sizes in bytes, paths as strings, arrays even when empty. Tables read the values
these functions compute (a summary, what a removal came to) instead of computing them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from modelctl.core.errors import worded
from modelctl.core.record import record_json
from modelctl.output.console import cli_words, command_line
from modelctl.store.storage import held_bytes, partial_downloads

if TYPE_CHECKING:
    from modelctl.core.errors import ModelctlError
    from modelctl.core.registry import ModelSpec, RegistrySource
    from modelctl.fetch.download import DownloadPlan, DownloadReport
    from modelctl.ops.add import AddReport
    from modelctl.ops.clean import CleanReport
    from modelctl.ops.doctor import DoctorReport
    from modelctl.ops.ensure import EnsureReport
    from modelctl.ops.locking import LockCheck, LockReport
    from modelctl.ops.outdated import OutdatedReport
    from modelctl.store.storage import Location, RootState
    from modelctl.store.usage import DiskUse
    from modelctl.store.verify import ModelVerdict, VerifyReport
    from modelctl.store.workspace import InfoReport, ListReport, ModelState, Workspace

Report = TypeVar("Report", bound=Callable[..., dict[str, Any]])

# Report type (its class name) → the function giving its JSON: output.render finds it here, so a
# new report adds its function below (and its table in tables.py) and nothing else.
JSON_OF: dict[str, Callable[[Any], dict[str, Any]]] = {}


def json_of(report_type: str) -> Callable[[Report], Report]:
    """Make the decorated function the JSON of report_type (a class name) for output.render."""

    def register(fn: Report) -> Report:
        JSON_OF[report_type] = fn
        return fn

    return register


# --------------------------------------------------------------------------- parts


def registry_json(source: RegistrySource) -> dict[str, Any]:
    return {"path": str(source.path), "reason": source.reason}


def root_json(state: RootState) -> dict[str, Any]:
    return {
        "name": state.root.name,
        "path": str(state.root.path),
        "exists": state.exists,
        "readable": state.is_readable,
        "writable": state.is_writable,
        "problem": state.problem,
    }


def spec_json(spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "repo_id": spec.repo_id,
        "revision": spec.revision,
        "family": spec.family,
        "size": spec.size,
        "required": spec.required,
        "files": list(spec.files),
        "local_dir": spec.folder_name,
        "checksums": {name: str(pin) for name, pin in spec.checksums.items()},
        "description": spec.description,
    }


def location_json(loc: Location) -> dict[str, Any]:
    return {
        "root": loc.root.name,
        "path": str(loc.path),
        "exists": loc.exists,
        "bytes": loc.scan.bytes if loc.scan else 0,
        "file_count": len(loc.scan.files) if loc.scan else 0,
        "problem": loc.problem,
    }


def partial_bytes(state: ModelState) -> int:
    """Bytes of the model's partial downloads (`.modelctl/partials/`): on disk, though not yet its files."""
    found = state.found
    if found is None or not state.partials:
        return 0
    return sum(held_bytes(partial) for _, partial in partial_downloads(found.path))


def state_json(state: ModelState) -> dict[str, Any]:
    found = state.found
    return {
        "status": state.status,
        "root": found.root.name if found else None,
        "path": str(found.path) if found else None,
        "shadowed": [{"root": loc.root.name, "path": str(loc.path)} for loc in state.shadowed],
        "bytes": state.bytes,
        "partial_bytes": partial_bytes(state),
        "file_count": len(state.files),
        "missing": list(state.missing),
        "mismatched": list(state.mismatched),
        "unverified": list(state.unchecked),
        "bad": list(state.bad),
        "partials": list(state.partials),
        "others": [
            {
                "root": loc.root.name,
                "path": str(loc.path),
                "repo_id": loc.record.repo_id if loc.record else None,
                "revision": loc.record.revision if loc.record else None,
            }
            for loc in state.others
        ],
    }


def manifest_json(state: ModelState) -> dict[str, Any] | None:
    return None if state.record is None else record_json(state.record)


def header_json(workspace: Workspace) -> dict[str, Any]:
    return {
        "registry": registry_json(workspace.registry.source),
        "roots": [root_json(r) for r in workspace.roots],
    }


def list_summary(report: ListReport) -> dict[str, int]:
    return {
        "total": len(report.models),
        "present": report.count_status("present"),
        "partial": report.count_status("partial"),
        "unverified": report.count_status("unverified"),
        "missing": report.count_status("missing"),
        "other": report.count_status("other repo") + report.count_status("other revision"),
        "required_not_present": report.required_missing,
        "bytes": report.bytes,
        "partial_bytes": sum(partial_bytes(m) for m in report.models),
    }


def verdict_json(v: ModelVerdict) -> dict[str, Any]:
    return {
        "id": v.spec.id,
        "required": v.spec.required,
        "present": v.is_present,
        "ok": v.is_ok,
        "root": v.location.root.name if v.location else None,
        "path": str(v.location.path) if v.location else None,
        "bad_files": list(v.bad_files),
        "findings": [
            {"path": f.path, "check": f.check, "status": f.status, "detail": f.detail} for f in v.findings
        ],
    }


# --------------------------------------------------------------------------- reports


@json_of("ListReport")
def list_json(report: ListReport) -> dict[str, Any]:
    models = []
    for state in report.models:
        spec = state.spec
        item = {
            "id": spec.id,
            "repo_id": spec.repo_id,
            "revision": spec.revision,
            "family": spec.family,
            "size": spec.size,
            "required": spec.required,
        }
        item.update(state_json(state))
        models.append(item)
    return {
        **header_json(report.workspace),
        "models": models,
        "summary": list_summary(report),
        "warnings": list(report.warnings),
    }


@json_of("InfoReport")
def info_json(report: ListReport | InfoReport) -> dict[str, Any]:
    models = []
    for state in report.models:
        item: dict[str, Any] = {"id": state.spec.id, "spec": spec_json(state.spec)}
        item.update(state_json(state))
        sharing = state.sharing()
        item["locations"] = [
            {**location_json(loc), "shares_bytes_with": [str(p) for p in sharing.get(loc.path, ())]}
            for loc in state.locations
        ]
        item["files"] = [{"path": path, "size": size} for path, size in state.files.items()]
        item["manifest"] = manifest_json(state)
        models.append(item)
    return {**header_json(report.workspace), "models": models, "warnings": list(report.warnings)}


@json_of("DownloadPlan")
def plan_json(plan: DownloadPlan) -> dict[str, Any]:
    """download --dry-run: per file keep / reuse / download / resume and the bytes each needs."""
    return {
        "registry": registry_json(plan.workspace.registry.source),
        "dry_run": True,
        "models": [
            {
                "id": m.spec.id,
                "repo_id": m.spec.repo_id,
                "revision": m.snapshot.revision,
                "commit": m.snapshot.commit,
                "commit_on_disk": m.behind,
                "root": m.root.name,
                "path": str(m.folder),
                "bytes_needed": m.needed,
                "files": [
                    {
                        "path": f.remote.path,
                        "size": f.remote.size,
                        "action": f.action,
                        "offset": f.offset,
                        "bytes_needed": f.needed,
                        "reason": f.reason,
                        "source": f.source,
                    }
                    for f in m.files
                ],
            }
            for m in plan.models
        ],
        "bytes_needed": plan.needed,
    }


@json_of("DownloadReport")
def download_json(report: DownloadReport) -> dict[str, Any]:
    return {
        "registry": registry_json(report.plan.workspace.registry.source),
        "dry_run": False,
        "models": [
            {
                "id": m.spec.id,
                "repo_id": m.spec.repo_id,
                "commit": m.commit,
                "root": m.root.name,
                "path": str(m.folder),
                "bytes_fetched": m.bytes_fetched,
                "files": [
                    {
                        "path": f.path,
                        "size": f.size,
                        "action": f.action,
                        "bytes_fetched": f.bytes_fetched,
                        "resumed_from": f.resumed_from,
                        "sha256": f.sha256,
                        "endpoint": f.endpoint,
                        "source": f.source,
                    }
                    for f in m.files
                ],
            }
            for m in report.models
        ],
        "bytes_fetched": report.bytes_fetched,
        "seconds": round(report.seconds, 3),
    }


def download_summary(report: DownloadReport) -> dict[str, Any]:
    """What a download did to its files: fetched, kept, and how the kept ones were vouched for.

    A file hashed this run and kept is in the plan's hash memo; a kept file not in it matched the
    hash its record holds for its current size and mtime (or only its size, at `verify: size`).
    """
    files = [f for m in report.models for f in m.files]
    fetched = sum(1 for f in files if f.action not in ("keep", "reuse"))
    reused = sum(1 for f in files if f.action == "reuse")
    offline = bool(report.plan.models) and all(m.is_offline for m in report.plan.models)
    return {
        "files_fetched": fetched,
        "files_reused": reused,
        "files_kept": len(files) - fetched - reused,
        "files_hashed_now": 0 if offline else len(report.plan.hashes),
        "offline": offline,
        "level": report.plan.workspace.registry.verify,
    }


@json_of("VerifyReport")
def verify_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "registry": registry_json(report.workspace.registry.source),
        "level": report.level,
        "health": report.health,
        "models": [verdict_json(v) for v in report.models],
        "hashed_bytes": report.hashed_bytes,
        "cached_files": report.cached_files,
        "seconds": round(report.seconds, 3),
    }


@json_of("EnsureReport")
def ensure_json(report: EnsureReport) -> dict[str, Any]:
    download = report.download
    return {
        "registry": registry_json(report.after.workspace.registry.source),
        "health": report.health,
        "health_before": report.before.health,
        "repaired": {model: list(paths) for model, paths in report.repaired.items()},
        "bytes_fetched": download.bytes_fetched if download else 0,
        "models": [verdict_json(v) for v in report.after.models],
    }


@json_of("CleanReport")
def clean_json(report: CleanReport) -> dict[str, Any]:
    """The removals planned (done None: --dry-run or before confirming) or done."""
    plan, result, registry = report.plan, report.done, report.registry
    removed = {id(r) for r in result.removed} if result else set()
    errors = {id(r): why for r, why in result.failed} if result else {}
    return {
        **({"registry": registry_json(registry)} if registry is not None else {}),
        "dry_run": result is None,
        "bytes": plan.bytes,
        "bytes_freed": sum(r.bytes for r in result.removed) if result else 0,
        "items": [
            {
                "model": r.model,
                "root": r.root,
                "path": str(r.path),
                "bytes": r.bytes,
                "reason": r.reason,
                "removed": id(r) in removed,
                "error": errors.get(id(r)),
            }
            for r in plan.removals
        ],
    }


@json_of("LockReport")
def lock_json(report: LockReport) -> dict[str, Any]:
    lock, ids = report.lock, report.ids
    return {
        "path": str(lock.path),
        "replaced": lock.replaced,
        "models": [
            {
                "id": m.id,
                "repo_id": m.repo_id,
                "revision": m.revision,
                "commit": m.commit,
                "files": len(m.files),
                "bytes": sum(f.size for f in m.files),
            }
            for m in (lock.models[i] for i in ids if i in lock.models)  # url models are not locked
        ],
    }


@json_of("LockCheck")
def lock_check_json(check: LockCheck) -> dict[str, Any]:
    return {
        "registry": str(check.registry),
        "lock": str(check.lock),
        "lock_exists": check.lock_exists,
        "in_sync": not check.differences,
        "differences": list(check.differences),
    }


@json_of("DoctorReport")
def doctor_json(report: DoctorReport) -> dict[str, Any]:
    return {
        "needs_attention": report.needs_attention,
        "versions": report.versions,
        "checks": [
            {
                "area": c.area,
                "status": c.status,
                "detail": c.detail,
                "hint": worded(c.hint, c.steps, cli_words) or None,
            }
            for c in report.checks
        ],
    }


def error_json(failure: ModelctlError, *, exit_code: int | None = None) -> dict[str, Any]:
    """A failure under --json: what stdout says instead of the report (the Error/Hint lines stay on stderr)."""
    return {
        "error": {
            "type": type(failure).__name__,
            "message": failure.message,
            "hint": failure.hint or None,
            "exit_code": int(failure.exit_code) if exit_code is None else exit_code,
        }
    }


def usage_error_json(message: str, exit_code: int) -> dict[str, Any]:
    """A command line Typer rejected, under --json (its usage text stays on stderr)."""
    return {
        "error": {
            "type": "UsageError",
            "message": message,
            "hint": "Run the command with --help to see the choices.",
            "exit_code": exit_code,
        }
    }


@json_of("DiskUse")
def disk_use_json(report: DiskUse) -> dict[str, Any]:
    """`du --json`: every folder under every root, whose it is, its bytes, and the clean that removes it."""

    def totals(of: Any) -> dict[str, int]:
        return {
            "bytes": of.total("bytes"),
            "partial_bytes": of.total("partial_bytes"),
            "quarantine_bytes": of.total("quarantine_bytes"),
            "disk_bytes": of.total("disk_bytes"),
            "shadowed_bytes": of.total("disk_bytes", "shadowed"),
            "unnamed_bytes": of.total("disk_bytes", "unnamed"),
            "folder_count": len(of.folders),
        }

    return {
        "registry": registry_json(report.workspace.registry.source),
        "roots": [{**root_json(r.state), **totals(r)} for r in report.roots],
        "folders": [
            {
                "root": f.root.name,
                "path": str(f.path),
                "kind": f.kind,
                "models": list(f.models),
                "shadowed_by": str(f.shadowed_by) if f.shadowed_by else None,
                "repo_id": f.repo_id,
                "revision": f.revision,
                "bytes": f.bytes,
                "partial_bytes": f.partial_bytes,
                "quarantine_bytes": f.quarantine_bytes,
                "disk_bytes": f.disk_bytes,
                "linked_bytes": f.linked_bytes,
                "clean": [command_line(step) for step in f.clean_steps],
            }
            for f in report.folders
        ],
        "summary": totals(report),
        "warnings": list(report.warnings),
    }


@json_of("AddReport")
def add_json(report: AddReport) -> dict[str, Any]:
    """`add`: the entry as the registry now reads it, the commit checked, and the download if asked."""
    result, download = report.added, report.download
    return {
        "registry": registry_json(result.registry.source),
        "model": {**spec_json(result.spec), "line": result.spec.line},
        "commit": result.commit,
        "files": [{"path": f.path, "size": f.size} for f in result.files],
        "bytes": result.bytes,
        "download": download_json(download) if download is not None else None,
    }


@json_of("OutdatedReport")
def outdated_json(report: OutdatedReport) -> dict[str, Any]:
    """`outdated`: per model the commit it is at (lock or disk), the head, and the files that differ."""
    models = [
        {
            "id": m.spec.id,
            "repo_id": m.spec.repo_id,
            "revision": m.spec.revision,
            "status": m.status,
            "source": m.source,
            "commit": m.commit,
            "head": m.head,
            "files": [
                {"path": path, "change": change, "size": size} for path, change, size in m.differences()
            ],
            "bytes": m.bytes,
        }
        for m in report.models
    ]
    statuses = [m["status"] for m in models]
    return {
        "registry": registry_json(report.workspace.registry.source),
        "models": models,
        "summary": {
            "total": len(models),
            "current": statuses.count("current"),
            "behind": statuses.count("behind"),
            "not_downloaded": statuses.count("not downloaded"),
            "unrecorded": statuses.count("unrecorded"),
            "bytes": sum(m["bytes"] for m in models),
        },
    }
