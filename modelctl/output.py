"""The only module that writes to the terminal: tables, JSON, warnings, errors and hints.

stdout carries the answer (a table or JSON); stderr carries status, warnings, hints and errors.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from modelctl.errors import ModelctlError
from modelctl.events import NullEvents
from modelctl.manager import ListReport, ModelState, Workspace
from modelctl.registry import ModelSpec, RegistrySource
from modelctl.storage import Location, RootState

if TYPE_CHECKING:
    from rich.console import Console

    from modelctl.clean import CleanPlan, CleanResult
    from modelctl.doctor import DoctorReport
    from modelctl.download import DownloadPlan, DownloadReport, ModelPlan
    from modelctl.ensure import EnsureReport
    from modelctl.events import DownloadEvents
    from modelctl.lockfile import LockFile
    from modelctl.project import InitResult
    from modelctl.transfer import FileJob, FileResult
    from modelctl.verify import ModelVerdict, VerifyReport

# Rich is imported inside the functions that draw: `--json` output never pays the ~25 ms that
# rich.console and rich.table cost at start-up (bench/startup).

_REASONS = {
    "--config": "from --config",
    "MODELCTL_CONFIG": "from MODELCTL_CONFIG",
    "CI_MINIMAL_MODELS": "CI_MINIMAL_MODELS is set",
    "found": "found in this folder or a parent",
    "bundled": "the bundled default",
}
_STATUS_STYLE = {
    "present": "green",
    "partial": "yellow",
    "unverified": "yellow",
    "missing": "red",
    "other repo": "red",
    "other revision": "red",
}


def visible(text: str, *, keep_newlines: bool = True) -> str:
    """text with every unprintable character shown as an escape (`\\x1b`, `\\r`, `\\u202e`).

    Names and messages come from servers, registries and file systems: a raw ESC or CR would drive
    the terminal (retitle it, rewrite lines, hide text). Only our own line breaks are kept.
    """
    if text.isprintable():
        return text
    return "".join(
        ch
        if ch.isprintable() or (keep_newlines and ch == "\n")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def escape(text: str) -> str:
    """text made visible (see `visible`) and escaped for Rich markup: safe in any console.print."""
    from rich.markup import escape as escape_markup

    return escape_markup(visible(text))


class _Sink:
    """sys.stdout or sys.stderr as this module writes to them, whatever became of them.

    stdout carries the answer: closed (`>&-`) it is an error, exit 1; a reader gone (`| head -1`) took
    what it wanted, so the rest goes to /dev/null and the command ends as it would have (exit 0, as
    ripgrep does: `set -o pipefail` scripts keep working). stderr carries status and progress, which
    are best-effort: closed, or its reader gone, the work goes on without them.
    """

    def __init__(self, stream: TextIO | None, *, is_answer: bool) -> None:
        self._stream = stream
        self._is_answer = is_answer

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        try:
            return self._stream is not None and self._stream.isatty()
        except ValueError:  # closed
            return False

    def write(self, text: str) -> int:
        if self._stream is None:
            if self._is_answer and text:
                raise ModelctlError(
                    "Cannot write the answer: standard output is closed.",
                    hint="Run it with stdout open; `> /dev/null` discards the answer.",
                )
            return len(text)
        try:
            self._stream.write(text)
        except (OSError, ValueError) as err:
            self._lost(err)
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as err:
                self._lost(err)

    def _lost(self, err: OSError | ValueError) -> None:
        if self._is_answer and not isinstance(err, BrokenPipeError):
            reason = (err.strerror if isinstance(err, OSError) else None) or str(err)
            raise ModelctlError(
                f"Cannot write the answer to standard output: {reason}.",
                hint="Check where stdout goes (a full disk, a closed file), then run the command again.",
            ) from err
        # Later writes, and Python's flush at exit, go to /dev/null instead of failing again.
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())  # type: ignore[union-attr]
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass  # no file descriptor (CliRunner): each write fails again, quietly


def _stdout() -> _Sink:
    # Made per call, not at import: CliRunner swaps sys.stdout between invocations.
    return _Sink(sys.stdout, is_answer=True)


def _stderr() -> _Sink:
    return _Sink(sys.stderr, is_answer=False)


def _out() -> Console:
    # Piped output is read by programs and people's pagers: never cut a table at 80 columns.
    from rich.console import Console

    file = _stdout()
    width = None if file.isatty() or os.environ.get("COLUMNS") else 400
    return Console(file=cast("IO[str]", file), highlight=False, emoji=False, soft_wrap=False, width=width)


def _err() -> Console:
    from rich.console import Console

    return Console(file=cast("IO[str]", _stderr()), highlight=False, emoji=False, soft_wrap=True)


def _answer(text: str) -> None:
    """Plain text on stdout (JSON, paths for scripts): exact when piped, escapes made visible on a terminal."""
    out = _stdout()
    out.write(visible(text) if out.isatty() else text)
    out.flush()


def print_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    import json  # only --json pays for it

    _answer(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- stderr


def warn(messages: Iterable[str]) -> None:
    console = _err()
    for message in messages:
        console.print(f"[yellow]Warning:[/] {escape(message)}")


def status(message: str) -> None:
    _err().print(escape(message), style="dim")


def registry_note(source: RegistrySource) -> None:
    status(f"Registry: {source.path} ({_REASONS.get(source.reason, source.reason)})")


def error(err: ModelctlError, *, show_traceback: bool = False) -> None:
    """Render an expected failure: what happened, then what to do next."""
    console = _err()
    if show_traceback:
        _stderr().write(visible("".join(traceback.format_exception(err))))
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


def _manifest_json(state: ModelState) -> dict[str, Any] | None:
    from modelctl.record import record_json

    return None if state.record is None else record_json(state.record)


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
        "unverified": report.count_status("unverified"),
        "missing": report.count_status("missing"),
        "other": report.count_status("other repo") + report.count_status("other revision"),
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
        f"{s['total']} model{'' if s['total'] == 1 else 's'}: {s['present']} present, {s['partial']} partial, "
        + (f"{s['unverified']} unverified, " if s["unverified"] else "")
        + (f"{s['other']} held by another repo or revision, " if s["other"] else "")
        + f"{s['missing']} missing"
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
            item["manifest"] = _manifest_json(state)
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
    if state.record:
        facts.add_row(
            "record",
            escape(f"{state.record.repo_id}@{state.record.commit} (updated {state.record.updated_at})"),
        )
    elif found is not None:
        facts.add_row("record", "none: unverified (`modelctl ensure` checks it against the Hub)")
    for loc in state.others:
        other = loc.record
        assert other is not None
        facts.add_row(
            f"{loc.root.name} root",
            escape(f"{loc.path} holds {other.repo_id}@{other.revision}: not this model"),
        )
    if state.missing:
        facts.add_row("missing", escape(", ".join(state.missing)))
    if state.mismatched:
        facts.add_row("wrong size", escape(", ".join(state.mismatched)))
    if state.partials:
        facts.add_row("partial", escape(", ".join(state.partials)))
    console.print(facts)
    expected = {f.path: f for f in state.record.selected(spec.files)} if state.record else {}
    if state.files or expected:
        files = Table(box=None, header_style="bold", pad_edge=False)
        files.add_column("file")
        files.add_column("on disk", justify="right")
        files.add_column("expected", justify="right")
        files.add_column("hash")
        files.add_column("state")
        on_disk = {f.path: f.size for f in state.files}
        states = {
            **dict.fromkeys(state.unchecked, "unverified"),
            **dict.fromkeys(state.bad, "bad"),
            **dict.fromkeys(state.mismatched, "wrong size"),
        }
        for name in sorted(set(on_disk) | set(expected)):
            record = expected.get(name)
            digest = (
                (f"sha256:{record.sha256[:16]}…" if record.sha256 else f"git-sha1:{record.blob_id}")
                if record
                else ""
            )
            files.add_row(
                escape(name),
                human_bytes(on_disk[name]) if name in on_disk else "missing",
                human_bytes(record.size) if record else "",
                digest,
                states.get(name, "verified" if record and name in on_disk else ""),
            )
        console.print(files)


# --------------------------------------------------------------------------- download


def _mb_per_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / max(seconds, 1e-6) / 1e6:.0f} MB/s"


class QuietEvents(NullEvents):
    """--quiet: report nothing while working."""


class PlainEvents(QuietEvents):
    """One line on stderr per model, file start, retry and finish (stderr is not a terminal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}

    def _line(self, text: str) -> None:
        with self._lock:  # best-effort: stderr closed or its reader gone, the download goes on
            err = _stderr()
            err.write(visible(text, keep_newlines=False) + "\n")
            err.flush()

    def model_start(self, plan: ModelPlan) -> None:
        todo = [f for f in plan.files if f.action != "keep"]
        need = sum(f.needed for f in todo)
        self._line(
            f"{plan.spec.id}: {len(todo)} to fetch ({need:,} bytes), {len(plan.files) - len(todo)} kept, "
            f"into {plan.folder} ({plan.root.name} root) at {plan.snapshot.commit[:12]}"
            + (f" (on disk: {plan.behind[:12]}, an older commit)" if plan.behind else "")
        )

    def lock_wait(self, folder: Path, pid: int | None) -> None:
        self._line(
            f"waiting for {'pid ' + str(pid) if pid else 'another process'}, which holds the lock on {folder}"
        )

    def metadata_retry(self, repo_id: str, attempt: int, delay: float, reason: str) -> None:
        self._line(f"retry {repo_id} metadata (attempt {attempt + 1}) in {delay:.1f} s: {reason}")

    def file_start(self, job: FileJob, offset: int) -> None:
        self._started[job.rel_path] = time.monotonic()
        how = f"resume at {offset:,} of" if offset else "start"
        self._line(f"  {how} {job.rel_path} ({job.size:,} bytes)")

    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None:
        self._line(f"  retry {job.rel_path} (attempt {attempt + 1}) in {delay:.1f} s: {reason}")

    def file_done(self, job: FileJob, result: FileResult) -> None:
        took = time.monotonic() - self._started.get(job.rel_path, time.monotonic())
        self._line(
            f"  done {job.rel_path}: {result.fetched:,} bytes from {result.endpoint} in {took:.1f} s "
            f"({_mb_per_s(result.fetched, took)}), sha256 {result.sha256[:12]}… verified"
        )


class RichEvents(PlainEvents):
    """Animated progress on a terminal: overall bytes plus one bar per file in flight."""

    def __init__(self) -> None:
        super().__init__()
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_err(),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None

    def __enter__(self) -> RichEvents:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _line(self, text: str) -> None:
        self.progress.console.print(visible(text, keep_newlines=False), markup=False, highlight=False)

    def model_start(self, plan: ModelPlan) -> None:
        super().model_start(plan)
        need = sum(f.needed for f in plan.files)
        if self._overall is not None:
            self.progress.remove_task(self._overall)
        self._overall = self.progress.add_task(f"{visible(plan.spec.id)} (total)", total=need or None)

    def file_start(self, job: FileJob, offset: int) -> None:
        self._started[job.rel_path] = time.monotonic()
        self._tasks[job.rel_path] = self.progress.add_task(
            visible(job.rel_path, keep_newlines=False), total=job.size, completed=offset
        )

    def file_advance(self, job: FileJob, nbytes: int) -> None:
        self.progress.advance(self._tasks[job.rel_path], nbytes)
        if self._overall is not None:
            self.progress.advance(self._overall, nbytes)

    def file_retry(self, job: FileJob, attempt: int, delay: float, reason: str) -> None:
        super().file_retry(job, attempt, delay, reason)
        task = self._tasks.get(job.rel_path)
        if task is not None:
            self.progress.update(
                task, description=f"{visible(job.rel_path, keep_newlines=False)} (retry {attempt})"
            )

    def file_done(self, job: FileJob, result: FileResult) -> None:
        task = self._tasks.pop(job.rel_path, None)
        if task is not None:
            self.progress.remove_task(task)
        super().file_done(job, result)


@contextmanager
def download_events(*, quiet: bool, as_json: bool) -> Iterator[DownloadEvents]:
    """Rich progress on a terminal, plain lines otherwise, nothing with --quiet."""
    from modelctl.logs import mute_unless_configured

    mute_unless_configured()  # the events say each retry; the log says it only where -v/--log-file ask
    if quiet:
        yield QuietEvents()
    elif _stderr().isatty() and not as_json:
        with RichEvents() as events:
            yield events
    else:
        yield PlainEvents()


def render_plan(plan: DownloadPlan, *, as_json: bool) -> None:
    """--dry-run: per file keep / download / resume and the bytes each needs."""
    if as_json:
        print_json(
            {
                "registry": _registry_json(plan.workspace.registry.source),
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
                            }
                            for f in m.files
                        ],
                    }
                    for m in plan.models
                ],
                "bytes_needed": plan.needed,
            }
        )
        return
    from rich.filesize import decimal as human_bytes
    from rich.table import Table

    registry_note(plan.workspace.registry.source)
    console = _out()
    for m in plan.models:
        console.print(
            f"[bold]{escape(m.spec.id)}[/] {escape(m.spec.repo_id)}@{escape(m.snapshot.commit[:12])} "
            f"→ {escape(str(m.folder))} ({m.root.name} root)"
        )
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("file", "action", "size", "to fetch", "why"):
            table.add_column(column, justify="right" if column in ("size", "to fetch") else "left")
        for f in m.files:
            table.add_row(
                escape(f.remote.path),
                f.action,
                human_bytes(f.remote.size),
                human_bytes(f.needed),
                escape(f.reason),
            )
        console.print(table)
    console.print(f"Dry run: {human_bytes(plan.needed)} to fetch; nothing was changed.")


def render_download(report: DownloadReport, *, as_json: bool, quiet: bool) -> None:
    if as_json:
        print_json(
            {
                "registry": _registry_json(report.plan.workspace.registry.source),
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
                            }
                            for f in m.files
                        ],
                    }
                    for m in report.models
                ],
                "bytes_fetched": report.bytes_fetched,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    if quiet:
        for m in report.models:
            _answer(f"{m.folder}\n")
        return
    from rich.filesize import decimal as human_bytes

    console = _out()
    for m in report.models:
        fetched = sum(1 for f in m.files if f.action != "keep")
        console.print(
            f"{escape(m.spec.id)}: {escape(str(m.folder))} ({m.root.name} root), {fetched} fetched, "
            f"{len(m.files) - fetched} kept, {human_bytes(m.bytes_fetched)}"
        )
    console.print(
        f"Fetched {human_bytes(report.bytes_fetched)} in {report.seconds:.1f} s "
        f"({_mb_per_s(report.bytes_fetched, report.seconds)}); every file verified by hash."
    )


# --------------------------------------------------------------------------- verify

_HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
_FINDING_STYLE = {"ok": "green", "note": "yellow", "bad": "red"}


def _verdict_json(v: ModelVerdict) -> dict[str, Any]:
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


def _verdict_line(v: ModelVerdict) -> str:
    if not v.is_present:
        return f"{v.spec.id}: not downloaded" + (" (required)" if v.spec.required else " (optional)")
    files = {f.path for f in v.findings if f.path}
    if v.is_ok:
        cached = sum(1 for f in v.findings if f.detail == "cached")
        return f"{v.spec.id}: ok, {len(files)} files checked" + (
            f" ({cached} hashes from cache)" if cached else ""
        )
    return f"{v.spec.id}: {len(v.bad_files)} bad of {len(files)} files: {', '.join(v.bad_files)}"


def render_verify(report: VerifyReport, *, as_json: bool, note: bool = True) -> None:
    if as_json:
        print_json(
            {
                "registry": _registry_json(report.workspace.registry.source),
                "level": report.level,
                "health": report.health,
                "models": [_verdict_json(v) for v in report.models],
                "hashed_bytes": report.hashed_bytes,
                "cached_files": report.cached_files,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    from rich.table import Table

    if note:
        registry_note(report.workspace.registry.source)
        warn(report.workspace.warnings)
    console = _out()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("model", "file", "check", "status", "detail"):
        table.add_column(column, overflow="fold")
    rows = 0
    for v in report.models:
        for f in v.findings:
            if f.status == "ok":
                continue
            status = "BAD" if f.status == "bad" else f.status
            table.add_row(
                escape(v.spec.id),
                escape(f.path or "-"),
                f.check,
                f"[{_FINDING_STYLE[f.status]}]{status}[/]",
                escape(f.detail),
            )
            rows += 1
    if rows:
        console.print(table)
    for v in report.models:
        style = "green" if v.is_ok and v.is_present else "red" if not v.is_ok else "dim"
        console.print(f"[{style}]{escape(_verdict_line(v))}[/]")
    health = report.health
    console.print(
        f"Health: [{_HEALTH_STYLE[health]}]{health}[/] ({report.level}; hashed {report.hashed_bytes:,} bytes "
        f"in {report.seconds:.1f} s, {report.cached_files} files from cache)"
    )


# --------------------------------------------------------------------------- ensure


def render_ensure(report: EnsureReport, *, as_json: bool, quiet: bool) -> None:
    if as_json:
        download = report.download
        print_json(
            {
                "registry": _registry_json(report.after.workspace.registry.source),
                "health": report.health,
                "health_before": report.before.health,
                "repaired": {model: list(paths) for model, paths in report.repaired.items()},
                "bytes_fetched": download.bytes_fetched if download else 0,
                "models": [_verdict_json(v) for v in report.after.models],
            }
        )
        return
    if quiet:
        for v in report.after.models:
            if v.location is not None:
                _answer(f"{v.location.path}\n")
        return

    console = _out()
    if not report.repaired:
        console.print("Nothing to repair.")
    for model, paths in report.repaired.items():
        what = "the whole model" if paths == ("*",) else ", ".join(paths)
        console.print(f"Repaired {escape(model)}: {escape(what)}")
    render_verify(report.after, as_json=False, note=False)


# --------------------------------------------------------------------------- clean, checksum


def render_clean(plan: CleanPlan, result: CleanResult | None, *, as_json: bool) -> None:
    """The removals planned (result None: --dry-run or before confirming) or done."""
    removed = {id(r) for r in result.removed} if result else set()
    errors = {id(r): why for r, why in result.failed} if result else {}
    if as_json:
        print_json(
            {
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
        )
        return
    from rich.filesize import decimal as human_bytes
    from rich.table import Table

    console = _out()
    if not plan.removals:
        console.print("Nothing to remove.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("model", "root", "path", "size", "why", "done"):
        table.add_column(column, justify="right" if column == "size" else "left", overflow="fold")
    for r in plan.removals:
        done = (
            "removed"
            if id(r) in removed
            else (f"[red]failed: {escape(errors[id(r)])}[/]" if id(r) in errors else "")
        )
        table.add_row(
            escape(r.model), r.root, escape(str(r.path)), human_bytes(r.bytes), escape(r.reason), done
        )
    console.print(table)
    if result is None:
        console.print(f"Would free {human_bytes(plan.bytes)}.")
    else:
        console.print(
            f"Freed {human_bytes(sum(r.bytes for r in result.removed))}; {len(result.failed)} failed."
        )


def checksum_line(algo: str, digest: str, path: Path) -> None:
    _answer(f"{algo}:{digest}  {path}\n")


# --------------------------------------------------------------------------- lock


def render_lock(lock: LockFile, ids: list[str], *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
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
                    for m in (lock.models[i] for i in ids)
                ],
            }
        )
        return
    console = _out()
    if lock.replaced:
        warn([f"{lock.replaced}; written anew with only the models locked now"])
    for model_id in ids:
        m = lock.models[model_id]
        console.print(
            visible(f"{m.id}: {m.repo_id}@{m.revision} → {m.commit} ({len(m.files)} files)"), markup=False
        )
    console.print(
        visible(f"Wrote {lock.path}. Commit it; CI then downloads and verifies exactly these files."),
        markup=False,
    )


def render_lock_check(registry: Path, differences: list[str], *, as_json: bool) -> None:
    if as_json:
        print_json({"registry": str(registry), "in_sync": not differences, "differences": differences})
        return
    if not differences:
        _out().print("models.yaml and models.lock agree.")
        return
    warn(differences)
    _err().print("[bold]Hint:[/] run `modelctl lock` and commit models.lock.")


# --------------------------------------------------------------------------- small answers


def plain_line(text: str) -> None:
    """One line on stdout, for $(modelctl …) in scripts."""
    _answer(text + "\n")


def render_init(result: InitResult) -> None:
    console = _out()
    console.print(visible(f"Wrote {result.registry}"), markup=False)
    if result.added_lines:
        lines = " ".join(line for line in result.added_lines if not line.startswith("#"))
        console.print(visible(f"Added to {result.gitignore}: {lines}"), markup=False)
    console.print("Next: edit models.yaml, then `modelctl list` and `modelctl ensure`.", markup=False)


def render_doctor(report: DoctorReport, *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "needs_attention": report.needs_attention,
                "versions": report.versions,
                "checks": [
                    {"area": c.area, "status": c.status, "detail": c.detail, "hint": c.hint or None}
                    for c in report.checks
                ],
            }
        )
        return

    console = _out()
    marks = {"ok": "[green]ok[/]     ", "note": "[yellow]note[/]   ", "problem": "[red]PROBLEM[/]"}
    for c in report.checks:
        console.print(f"{marks[c.status]} {c.area:<9} {escape(c.detail)}")
        if c.hint and c.status != "ok":
            console.print(f"{'':8} {'':<9} [bold]Hint:[/] {escape(c.hint)}")
    console.print(
        "Nothing needs attention." if not report.needs_attention else "Some things need attention (above)."
    )
