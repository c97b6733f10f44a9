"""The only module that writes to the terminal: tables, JSON, warnings, errors and hints.

stdout carries the answer (a table or JSON); stderr carries status, warnings, hints and errors.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from modelctl.errors import ModelctlError
from modelctl.manager import ListReport, ModelState, Workspace
from modelctl.registry import ModelSpec, RegistrySource
from modelctl.storage import Location, RootState

if TYPE_CHECKING:
    from rich.console import Console

# Rich is imported inside the functions that draw: `--json` output never pays the ~25 ms that
# rich.console and rich.table cost at start-up (bench/startup).

_REASONS = {
    "--config": "from --config",
    "MODELCTL_CONFIG": "from MODELCTL_CONFIG",
    "CI_MINIMAL_MODELS": "CI_MINIMAL_MODELS is set",
    "found": "found in this folder or a parent",
    "bundled": "the bundled default",
}
_STATUS_STYLE = {"present": "green", "partial": "yellow", "missing": "red"}


def _out() -> Console:
    # Made per call, not at import: CliRunner swaps sys.stdout between invocations.
    # Piped output is read by programs and people's pagers: never cut a table at 80 columns.
    from rich.console import Console

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 400
    return Console(file=sys.stdout, highlight=False, emoji=False, soft_wrap=False, width=width)


def _err() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, emoji=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    import json  # only --json pays for it

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- stderr


def warn(messages: Iterable[str]) -> None:
    from rich.markup import escape

    console = _err()
    for message in messages:
        console.print(f"[yellow]Warning:[/] {escape(message)}")


def status(message: str) -> None:
    from rich.markup import escape

    _err().print(escape(message), style="dim")


def registry_note(source: RegistrySource) -> None:
    status(f"Registry: {source.path} ({_REASONS.get(source.reason, source.reason)})")


def error(err: ModelctlError, *, show_traceback: bool = False) -> None:
    """Render an expected failure: what happened, then what to do next."""
    from rich.markup import escape

    console = _err()
    if show_traceback:
        sys.stderr.write("".join(traceback.format_exception(err)))
    console.print(f"[bold red]Error:[/] {escape(err.message)}")
    if err.hint:
        console.print(f"[bold]Hint:[/] {escape(err.hint)}")


# --------------------------------------------------------------------------- data


def _registry_json(source: RegistrySource) -> dict[str, Any]:
    return {"path": str(source.path), "reason": source.reason}


def _root_json(state: RootState) -> dict[str, Any]:
    return {
        "name": state.root.name,
        "path": str(state.root.path),
        "exists": state.exists,
        "readable": state.is_readable,
        "writable": state.is_writable,
        "problem": state.problem,
    }


def _spec_json(spec: ModelSpec) -> dict[str, Any]:
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


def _location_json(loc: Location) -> dict[str, Any]:
    return {
        "root": loc.root.name,
        "path": str(loc.path),
        "exists": loc.exists,
        "bytes": loc.scan.bytes if loc.scan else 0,
        "file_count": len(loc.scan.files) if loc.scan else 0,
        "problem": loc.problem,
    }


def _state_json(state: ModelState) -> dict[str, Any]:
    found = state.found
    return {
        "status": state.status,
        "root": found.root.name if found else None,
        "path": str(found.path) if found else None,
        "shadowed": [{"root": loc.root.name, "path": str(loc.path)} for loc in state.shadowed],
        "bytes": state.bytes,
        "file_count": len(state.files),
        "missing": list(state.missing),
        "partials": list(state.partials),
    }


def _header_json(workspace: Workspace) -> dict[str, Any]:
    return {
        "registry": _registry_json(workspace.registry.source),
        "roots": [_root_json(r) for r in workspace.roots],
    }


def _summary(report: ListReport) -> dict[str, int]:
    return {
        "total": len(report.models),
        "present": report.count_status("present"),
        "partial": report.count_status("partial"),
        "missing": report.count_status("missing"),
        "required_not_present": report.required_missing,
        "bytes": report.bytes,
    }


# --------------------------------------------------------------------------- list


def render_list(report: ListReport, *, as_json: bool) -> None:
    if as_json:
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
            item.update(_state_json(state))
            models.append(item)
        print_json(
            {
                **_header_json(report.workspace),
                "models": models,
                "summary": _summary(report),
                "warnings": list(report.warnings),
            }
        )
        return
    from rich.filesize import decimal as human_bytes
    from rich.markup import escape
    from rich.table import Table

    registry_note(report.workspace.registry.source)
    warn(report.warnings)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "family/size", "repo@revision", "required", "status", "root", "on disk"):
        table.add_column(column, justify="right" if column == "on disk" else "left", no_wrap=column == "id")
    for state in report.models:
        spec = state.spec
        found = state.found
        root = found.root.name if found else "-"
        if state.shadowed:
            root += " (shadows " + ", ".join(loc.root.name for loc in state.shadowed) + ")"
        table.add_row(
            escape(spec.id),
            escape("/".join(p for p in (spec.family, spec.size) if p) or "-"),
            escape(f"{spec.repo_id}@{spec.revision}"),
            "yes" if spec.required else "optional",
            f"[{_STATUS_STYLE[state.status]}]{state.status}[/]",
            root,
            human_bytes(state.bytes) if state.found else "-",
        )
    console = _out()
    if report.models:
        console.print(table)
    s = _summary(report)
    line = (
        f"{s['total']} model{'' if s['total'] == 1 else 's'}: {s['present']} present, {s['partial']} partial, {s['missing']} missing"
        f" ({s['required_not_present']} required not present); {human_bytes(s['bytes'])} on disk"
    )
    console.print(line)


# --------------------------------------------------------------------------- info


def render_info(report: ListReport, *, as_json: bool) -> None:
    if as_json:
        models = []
        for state in report.models:
            item: dict[str, Any] = {"id": state.spec.id, "spec": _spec_json(state.spec)}
            item.update(_state_json(state))
            item["locations"] = [_location_json(loc) for loc in state.locations]
            item["files"] = [{"path": f.path, "size": f.size} for f in state.files]
            item["manifest"] = None  # expected files, sizes and hashes arrive with downloads
            models.append(item)
        print_json({**_header_json(report.workspace), "models": models, "warnings": list(report.warnings)})
        return
    registry_note(report.workspace.registry.source)
    warn(report.warnings)
    console = _out()
    for index, state in enumerate(report.models):
        if index:
            console.print()
        _render_one_info(console, state)


def _render_one_info(console: Console, state: ModelState) -> None:
    from rich.filesize import decimal as human_bytes
    from rich.markup import escape
    from rich.table import Table

    spec = state.spec
    style = _STATUS_STYLE[state.status]
    console.print(f"[bold]{escape(spec.id)}[/]  [{style}]{state.status}[/]")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("repo", escape(f"{spec.repo_id}@{spec.revision}"))
    if spec.family or spec.size:
        facts.add_row("family/size", escape("/".join(p for p in (spec.family, spec.size) if p)))
    facts.add_row("required", "yes" if spec.required else "no (optional)")
    facts.add_row("files", escape(", ".join(spec.files)) if spec.files else "every file in the repo")
    facts.add_row("folder", escape(spec.folder_name))
    for name, pin in spec.checksums.items():
        facts.add_row("pin", escape(f"{name}  {pin}"))
    if spec.description:
        facts.add_row("description", escape(spec.description))
    found = state.found
    for loc in state.locations:
        if loc.exists:
            mark = "found" if loc is found else "shadowed"
            detail = f"{mark}, {len(loc.scan.files) if loc.scan else 0} files, {human_bytes(loc.scan.bytes if loc.scan else 0)}"
        else:
            detail = loc.problem or "not here"
        facts.add_row(f"{loc.root.name} root", escape(f"{loc.path}  ({detail})"))
    if state.missing:
        facts.add_row("missing", escape(", ".join(state.missing)))
    if state.partials:
        facts.add_row("partial", escape(", ".join(state.partials)))
    console.print(facts)
    if state.files:
        files = Table(box=None, header_style="bold", pad_edge=False)
        files.add_column("file")
        files.add_column("on disk", justify="right")
        for item in state.files:
            files.add_row(escape(item.path), human_bytes(item.size))
        console.print(files)
