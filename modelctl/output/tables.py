"""The human format: each report as Rich tables and sentences on stdout, notes and warnings on stderr.

Numbers are humanised here and only here; a value the JSON contract computes (a summary, what a
removal came to) is read from modelctl.output.contract, not computed again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from modelctl.core.errors import worded
from modelctl.output import contract
from modelctl.output.console import (
    cli_words,
    err,
    escape,
    mb_per_s,
    out,
    registry_note,
    status,
    visible,
    warn,
)
from modelctl.store.storage import (
    READ_ONLY_ROOTS,  # the CLI has imported storage already (cli/options.py)
    ROOT_NAMES,
)

if TYPE_CHECKING:
    from rich.console import Console

    from modelctl.fetch.download import DownloadPlan, DownloadReport
    from modelctl.ops.add import AddReport
    from modelctl.ops.clean import CleanReport
    from modelctl.ops.doctor import DoctorReport
    from modelctl.ops.ensure import EnsureReport
    from modelctl.ops.locking import LockCheck, LockReport
    from modelctl.ops.outdated import OutdatedReport
    from modelctl.ops.project import InitResult
    from modelctl.store.usage import DiskUse
    from modelctl.store.verify import ModelVerdict, VerifyReport
    from modelctl.store.workspace import InfoReport, ListReport, ModelState

# Rich is imported inside the functions that draw (see console.py).

Drawer = TypeVar("Drawer", bound=Callable[..., None])

# Report type (its class name) → the function drawing it for people: output.render finds it here
# (the JSON is contract.JSON_OF's), so a new report adds its function below and nothing else.
TABLE_OF: dict[str, Callable[[Any], None]] = {}


def table_of(report_type: str) -> Callable[[Drawer], Drawer]:
    """Make the decorated function the table of report_type (a class name) for output.render."""

    def register(fn: Drawer) -> Drawer:
        TABLE_OF[report_type] = fn
        return fn

    return register


_STATUS_STYLE = {
    "present": "green",
    "partial": "yellow",
    "unverified": "yellow",
    "missing": "red",
    "other repo": "red",
    "other revision": "red",
}
_HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
_FINDING_STYLE = {"ok": "green", "note": "yellow", "bad": "red"}
_DOCTOR_VERSIONS = ("modelctl", "huggingface_hub", "typer", "rich")


# --------------------------------------------------------------------------- list, info


@table_of("ListReport")
def render_list(report: ListReport) -> None:
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
            human_bytes(state.bytes + contract.partial_bytes(state)) if state.found else "-",
        )
    console = out()
    if report.models:
        console.print(table)
    s = contract.list_summary(report)
    line = (
        f"{s['total']} model{'' if s['total'] == 1 else 's'}: {s['present']} present, {s['partial']} partial, "
        + (f"{s['unverified']} unverified, " if s["unverified"] else "")
        + (f"{s['other']} held by another repo or revision, " if s["other"] else "")
        + f"{s['missing']} missing"
        f" ({s['required_not_present']} required not present); "
        + (
            f"{human_bytes(s['bytes'] + s['partial_bytes'])} on disk "
            f"({human_bytes(s['partial_bytes'])} of it partial downloads)"
            if s["partial_bytes"]
            else f"{human_bytes(s['bytes'])} on disk"
        )
    )
    console.print(line)


@table_of("InfoReport")
def render_info(report: InfoReport) -> None:
    registry_note(report.workspace.registry.source)
    warn(report.warnings)
    console = out()
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
    sharing = state.sharing()
    for loc in state.locations:
        if loc.exists:
            mark = "found" if loc is found else "shadowed"
            held = contract.location_json(loc)
            detail = f"{mark}, {held['file_count']} files, {human_bytes(held['bytes'])}"
            if sharing.get(loc.path):  # hard links: an in-place edit of one changes the other
                detail += ", shares bytes with " + ", ".join(str(p) for p in sharing[loc.path])
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
        on_disk = dict(state.files)
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


# --------------------------------------------------------------------------- download, ensure


@table_of("DownloadPlan")
def render_plan(plan: DownloadPlan) -> None:
    """--dry-run: per file keep / reuse / download / resume and the bytes each needs."""
    from rich.filesize import decimal as human_bytes
    from rich.table import Table

    # The registry note is download's own (printed before planning): once, not again here.
    console = out()
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


@table_of("DownloadReport")
def render_download(report: DownloadReport) -> None:
    from rich.filesize import decimal as human_bytes

    console = out()
    for m in report.models:
        fetched = sum(1 for f in m.files if f.action not in ("keep", "reuse"))
        reused = sum(1 for f in m.files if f.action == "reuse")
        console.print(
            f"{escape(m.spec.id)}: {escape(str(m.folder))} ({m.root.name} root), {fetched} fetched, "
            + (f"{reused} reused, " if reused else "")
            + f"{len(m.files) - fetched - reused} kept, {human_bytes(m.bytes_fetched)}"
        )
    summary = contract.download_summary(report)
    reused = summary["files_reused"]
    reused_note = (
        f"{reused} file{'' if reused == 1 else 's'} reused (linked or copied from this machine, verified)"
        if reused
        else ""
    )
    if summary["files_fetched"]:
        console.print(
            f"Fetched {human_bytes(report.bytes_fetched)} in {report.seconds:.1f} s "
            f"({mb_per_s(report.bytes_fetched, report.seconds)}); every file verified by hash."
            + (f" {reused_note[0].upper()}{reused_note[1:]}." if reused else "")
        )
    elif reused and not summary["files_kept"]:
        console.print(f"Nothing to fetch; {reused_note}.")
    elif reused:
        console.print(f"Nothing to fetch; {reused_note}; {_kept_sentence(summary)}.")
    else:  # nothing was fetched, so nothing was verified by a download's hash: say what was done
        console.print(f"Nothing to fetch; {_kept_sentence(summary)}.")
    warn(_shadowed_downloads(report))


def _shadowed_downloads(report: DownloadReport) -> list[str]:
    """A copy downloaded (say `--to project`) that another root's copy hides: `path` and the API
    would go on using the other one, so say so, and what to do."""
    from modelctl.store.usage import shadowing_copy  # start-up: `list` and `--help` never need it

    notes = []
    workspace = report.plan.workspace
    for m in report.models:
        if m.root.name not in ROOT_NAMES:  # --to PATH: outside the roots, never the copy in use
            continue
        other = shadowing_copy(workspace, m.spec, m.folder)
        if other is None:
            continue
        use_this = (
            f"the {other.root.name} root is read-only"
            if other.root.is_read_only
            else f"to use this copy, remove that one with `modelctl clean {m.spec.id} --root {other.root.name}`"
            + (" (other projects may use it)" if other.root.is_machines else "")
        )
        notes.append(
            f"{m.spec.id}: the copy in {m.folder} ({m.root.name} root) is shadowed by {other.path} "
            f"({other.root.name} root): `modelctl path {m.spec.id}` and the API use that one. {use_this[0].upper()}"
            f"{use_this[1:]}; to drop this copy, `modelctl clean {m.spec.id} --shadowed --root {m.root.name}`."
        )
    return notes


def _kept_sentence(summary: dict[str, Any]) -> str:
    kept, hashed = summary["files_kept"], summary["files_hashed_now"]
    files = f"{kept} file{'' if kept == 1 else 's'} kept"
    if summary["offline"]:
        return f"{files}, verified on disk (offline)"
    if summary["level"] in ("none", "size"):
        return f"{files}, matched by their record or their size (verify: {summary['level']})"
    if not hashed:
        return f"{files}, verified by their record"
    if hashed >= kept:
        return f"{files}, verified by hashing them now"
    return f"{files}: {hashed} verified by hashing them now, {kept - hashed} by their record"


@table_of("EnsureReport")
def render_ensure(report: EnsureReport) -> None:
    console = out()
    if not report.repaired:
        console.print("Nothing to repair.")
    absent = {v.spec.id for v in report.before.models if v.location is None}
    for model, paths in report.repaired.items():
        if model in absent:  # nothing was there to repair: a first download
            console.print(f"Downloaded {escape(model)}: it was not on disk")
            continue
        what = "the whole model" if paths == ("*",) else ", ".join(paths)
        console.print(f"Repaired {escape(model)}: {escape(what)}")
    render_verify(report.after, note=False)


# --------------------------------------------------------------------------- verify, clean


def _verdict_line(v: ModelVerdict) -> str:
    if not v.is_present:
        return f"{v.spec.id}: not downloaded" + (" (required)" if v.spec.required else " (optional)")
    files = {f.path for f in v.findings if f.path}
    if v.is_ok:
        # Files, as the Health line counts them (a file can have several hashes: sha256, git-sha1, pins).
        cached = len({f.path for f in v.findings if f.detail == "cached"})
        return f"{v.spec.id}: ok, {_files(len(files))} checked" + (
            f" ({_files(cached)} from cache)" if cached else ""
        )
    return f"{v.spec.id}: {len(v.bad_files)} bad of {len(files)} files: {', '.join(v.bad_files)}"


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


@table_of("VerifyReport")
def render_verify(report: VerifyReport, *, note: bool = True) -> None:
    from rich.table import Table

    if note:
        registry_note(report.workspace.registry.source)
        warn(report.workspace.warnings)
    console = out()
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


@table_of("CleanReport")
def render_clean(report: CleanReport) -> None:
    """The removals planned (done None: --dry-run or before confirming) or done."""
    from rich.filesize import decimal as human_bytes
    from rich.table import Table

    console = out()
    if not report.plan.removals:
        console.print("Nothing to remove.")
        return
    data = contract.clean_json(report)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("model", "root", "path", "size", "why", "done"):
        table.add_column(column, justify="right" if column == "size" else "left", overflow="fold")
    for item in data["items"]:
        done = (
            "removed"
            if item["removed"]
            else (f"[red]failed: {escape(item['error'])}[/]" if item["error"] is not None else "")
        )
        table.add_row(
            escape(item["model"] or "-"),
            item["root"],
            escape(item["path"]),
            human_bytes(item["bytes"]),
            escape(item["reason"]),
            done,
        )
    console.print(table)
    if report.done is None:
        console.print(f"Would free {human_bytes(data['bytes'])}.")
    else:
        console.print(f"Freed {human_bytes(data['bytes_freed'])}; {len(report.done.failed)} failed.")


# --------------------------------------------------------------------------- lock, init, doctor


@table_of("LockReport")
def render_lock(report: LockReport) -> None:
    data = contract.lock_json(report)
    console = out()
    if data["replaced"]:
        warn([f"{data['replaced']}; written anew with only the models locked now"])
    for m in data["models"]:
        console.print(
            visible(f"{m['id']}: {m['repo_id']}@{m['revision']} → {m['commit']} ({m['files']} files)"),
            markup=False,
        )
    console.print(
        visible(f"Wrote {data['path']}. Commit it; CI then downloads and verifies exactly these files."),
        markup=False,
    )


@table_of("LockCheck")
def render_lock_check(check: LockCheck) -> None:
    lock = check.lock.name
    if not check.differences and not check.lock_exists:  # lock --check --missing-ok, a first run
        status(f"No {lock} yet: nothing to check (run `modelctl lock` and commit {lock}).")
        return
    if not check.differences:
        out().print(visible(f"{check.registry.name} and {lock} agree."), markup=False)
        return
    warn(list(check.differences))
    err().print(f"[bold]Hint:[/] run `modelctl lock` and commit {escape(lock)}.")


@table_of("InitResult")
def render_init(result: InitResult) -> None:
    console = out()
    console.print(visible(f"Wrote {result.registry}"), markup=False)
    if result.added_lines:
        lines = " ".join(line for line in result.added_lines if not line.startswith("#"))
        console.print(visible(f"Added to {result.gitignore}: {lines}"), markup=False)
    console.print("Next: edit models.yaml, then `modelctl list` and `modelctl ensure`.", markup=False)


@table_of("DoctorReport")
def render_doctor(report: DoctorReport) -> None:
    console = out()
    marks = {"ok": "[green]ok[/]     ", "note": "[yellow]note[/]   ", "problem": "[red]PROBLEM[/]"}
    # The versions a bug report needs, as `doctor --json` gives them; a package not installed is a check.
    versions = ", ".join(
        f"{name} {report.versions[name]}" for name in _DOCTOR_VERSIONS if report.versions.get(name)
    )
    if versions:
        console.print(f"{'':7} {'versions':<9} {escape(versions)}")
    for c in report.checks:
        console.print(f"{marks[c.status]} {c.area:<9} {escape(c.detail)}")
        if c.hint and c.status != "ok":
            console.print(f"{'':8} {'':<9} [bold]Hint:[/] {escape(worded(c.hint, c.steps, cli_words))}")
    console.print(
        "Nothing needs attention." if not report.needs_attention else "Some things need attention (above)."
    )


# --------------------------------------------------------------------------- du


@table_of("DiskUse")
def render_disk_use(report: DiskUse) -> None:
    """Per root, each folder: whose it is, its bytes, and the `clean` that removes it; then totals."""
    from rich.filesize import decimal as human_bytes
    from rich.table import Table

    registry_note(report.workspace.registry.source)
    warn(report.warnings)
    data = contract.disk_use_json(report)
    console = out()
    for root in data["roots"]:
        folders = [f for f in data["folders"] if f["root"] == root["name"]]
        where = f"{root['name']} root {root['path']}"
        if not root["exists"] or root["problem"]:
            console.print(escape(f"{where}: {root['problem'] or 'not created yet'}"))
            continue
        read_only = (
            " (read-only: never cleaned)" if not root["writable"] and root["name"] in READ_ONLY_ROOTS else ""
        )
        console.print(
            f"[bold]{escape(where)}[/]{read_only}: {len(folders)} folder{'' if len(folders) == 1 else 's'}, "
            f"{human_bytes(root['disk_bytes'])}"
        )
        if not folders:
            continue
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("folder", "holds", "size", "partial", "quarantine", "clean with"):
            numeric = column in ("size", "partial", "quarantine")
            table.add_column(column, justify="right" if numeric else "left", overflow="fold")
        for f in folders:
            table.add_row(
                escape(Path(f["path"]).name),
                escape(_holds(f)),
                human_bytes(f["disk_bytes"]),
                human_bytes(f["partial_bytes"]) if f["partial_bytes"] else "-",
                human_bytes(f["quarantine_bytes"]) if f["quarantine_bytes"] else "-",
                escape("\n".join(f["clean"]) or "-"),
            )
        console.print(table)
    s = data["summary"]
    parts = [
        f"{human_bytes(s[key])} {what}"
        for key, what in (
            ("shadowed_bytes", "in shadowed copies"),
            ("unnamed_bytes", "in folders no registry model names"),
            ("partial_bytes", "in partial downloads"),
            ("quarantine_bytes", "in quarantine"),
        )
        if s[key]
    ]
    console.print(
        f"Total: {human_bytes(s['disk_bytes'])} in {s['folder_count']} folder{'' if s['folder_count'] == 1 else 's'}"
        + (f"; {', '.join(parts)}." if parts else ".")
    )


def _holds(folder: dict[str, Any]) -> str:
    if folder["kind"] == "unnamed":
        held = f"{folder['repo_id']}@{folder['revision']}" if folder["repo_id"] else "no record"
        return f"no registry model names it ({held})"
    models = ", ".join(folder["models"])
    if folder["kind"] == "shadowed":
        return f"{models}, shadowed by {folder['shadowed_by']}"
    return f"{models} (in use)"


# --------------------------------------------------------------------------- add, outdated


@table_of("AddReport")
def render_add(report: AddReport) -> None:
    from rich.filesize import decimal as human_bytes

    data = contract.add_json(report)
    model = data["model"]
    count = len(data["files"])
    out().print(
        visible(
            f"Added {model['id']} to {data['registry']['path']} (line {model['line']}): "
            f"{model['repo_id']}@{model['revision']} is {data['commit'][:12]}, "
            f"{count} file{'' if count == 1 else 's'}, {human_bytes(data['bytes'])}."
        ),
        markup=False,
    )
    if not report.downloading:
        err().print(f"[bold]Next:[/] modelctl download {escape(model['id'])}")


@table_of("OutdatedReport")
def render_outdated(report: OutdatedReport) -> None:
    from rich.filesize import decimal as human_bytes
    from rich.table import Table

    data = contract.outdated_json(report)
    registry_note(report.workspace.registry.source)
    console = out()
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("model", "status", "commit", "head", "from", "files", "to fetch"):
        table.add_column(column, justify="right" if column in ("files", "to fetch") else "left")
    style = {"current": "green", "behind": "yellow"}
    for m in data["models"]:
        status = m["status"]
        table.add_row(
            escape(m["id"]),
            f"[{style[status]}]{status}[/]" if status in style else status,
            (m["commit"] or "-")[:12],
            (m["head"] or "-")[:12],
            m["source"] or "-",
            str(len(m["files"])) if status == "behind" else "-",
            human_bytes(m["bytes"]) if status == "behind" else "-",
        )
    console.print(table)
    for m in data["models"]:
        for f in m["files"]:
            size = "" if f["change"] == "removed" else f" ({human_bytes(f['size'])})"
            console.print(visible(f"  {m['id']}: {f['change']} {f['path']}{size}"), markup=False)
    s = data["summary"]
    console.print(
        f"{s['behind']} of {s['total']} model{'' if s['total'] == 1 else 's'} behind"
        + (f", {human_bytes(s['bytes'])} to fetch." if s["behind"] else ".")
    )
    behind = [m for m in data["models"] if m["status"] == "behind"]
    locked = " ".join(m["id"] for m in behind if m["source"] == "lock")
    on_disk = " ".join(m["id"] for m in behind if m["source"] == "disk")
    if locked:
        err().print(
            f"[bold]Hint:[/] run `modelctl lock {escape(locked)}`, review models.lock, "
            f"then `modelctl download {escape(locked)}`."
        )
    if on_disk:
        err().print(f"[bold]Hint:[/] run `modelctl download {escape(on_disk)}` to fetch the changed files.")
