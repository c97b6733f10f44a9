"""The only package that writes to the terminal. A command calls one `render_…` function per report.

    console.py   stdout and stderr, escaping, status / warn / error, JSON and plain lines
    contract.py  the JSON contract: one function per report returning the dict `--json` prints
    tables.py    the human format: Rich tables and sentences
    progress.py  download progress: nothing, plain lines, or Rich bars

This module holds the formats and, for each report, the function that picks its renderer.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelctl.core.errors import ModelctlError
from modelctl.output import contract, tables
from modelctl.output.console import (
    checksum_line,
    error,
    plain_line,
    print_json,
    registry_note,
    status,
    warn,
)
from modelctl.output.tables import render_init

if TYPE_CHECKING:
    from modelctl.core.lockfile import LockFile
    from modelctl.core.registry import RegistrySource
    from modelctl.fetch.download import DownloadEvents, DownloadPlan, DownloadReport
    from modelctl.ops.add import AddResult
    from modelctl.ops.clean import CleanPlan, CleanResult
    from modelctl.ops.doctor import DoctorReport
    from modelctl.ops.ensure import EnsureReport
    from modelctl.ops.outdated import OutdatedReport
    from modelctl.store.usage import DiskUse
    from modelctl.store.verify import VerifyReport
    from modelctl.store.workspace import ListReport

__all__ = [
    "Format",
    "checksum_line",
    "download_events",
    "error",
    "error_json",
    "plain_line",
    "registry_note",
    "render_add",
    "render_clean",
    "render_disk_use",
    "render_doctor",
    "render_download",
    "render_ensure",
    "render_info",
    "render_init",
    "render_list",
    "render_lock",
    "render_lock_check",
    "render_outdated",
    "render_plan",
    "render_verify",
    "status",
    "usage_error_json",
    "warn",
]


class Format(enum.Flag):
    """How a command answers, resolved once from its --json and -q flags.

    HUMAN: tables on stdout; the registry note, warnings and progress on stderr.
    JSON: the report's contract on stdout; on stderr at most plain progress lines.
    QUIET: only each model's path on stdout (where the command has -q), nothing on stderr.
    `--json -q` is JSON | QUIET: JSON on stdout, nothing on stderr.
    """

    HUMAN = 0
    JSON = 1
    QUIET = 2

    @property
    def is_human(self) -> bool:
        return self == Format.HUMAN

    @property
    def is_json(self) -> bool:
        return Format.JSON in self

    @property
    def is_quiet(self) -> bool:
        return Format.QUIET in self


def download_events(fmt: Format) -> AbstractContextManager[DownloadEvents]:
    """Rich progress on a terminal, plain lines otherwise, nothing with --quiet (see progress.py)."""
    from modelctl.output import progress  # only the commands that download import it

    return progress.download_events(fmt)


def _render(
    fmt: Format,
    data: Callable[[], dict[str, Any]],
    human: Callable[[], None],
    *,
    paths_when_quiet: bool = False,
) -> None:
    """The one place a format picks a renderer: the contract's dict, its paths, or the tables."""
    if fmt.is_json:
        print_json(data())
    elif fmt.is_quiet and paths_when_quiet:  # -q: each model's path, for $(modelctl …)
        for model in data()["models"]:
            if model["path"] is not None:
                plain_line(model["path"])
    else:
        human()


def error_json(failure: ModelctlError, *, exit_code: int | None = None) -> None:
    """--json and a failure: `{"error": {type, message, hint, exit_code}}` on stdout, never nothing."""
    _print_json_quietly(contract.error_json(failure, exit_code=exit_code))


def usage_error_json(message: str, exit_code: int) -> None:
    """--json and a command line that Typer rejected: the same `{"error": …}` shape on stdout."""
    _print_json_quietly(contract.usage_error_json(message, exit_code))


def _print_json_quietly(data: dict[str, Any]) -> None:
    with contextlib.suppress(ModelctlError):  # stdout closed: the error still goes to stderr
        print_json(data)


def render_list(report: ListReport, fmt: Format) -> None:
    _render(fmt, lambda: contract.list_json(report), lambda: tables.render_list(report))


def render_info(report: ListReport, fmt: Format) -> None:
    _render(fmt, lambda: contract.info_json(report), lambda: tables.render_info(report))


def render_plan(plan: DownloadPlan, fmt: Format) -> None:
    """--dry-run: per file keep / download / resume and the bytes each needs."""
    _render(fmt, lambda: contract.plan_json(plan), lambda: tables.render_plan(plan))


def render_download(report: DownloadReport, fmt: Format) -> None:
    _render(
        fmt,
        lambda: contract.download_json(report),
        lambda: tables.render_download(report),
        paths_when_quiet=True,
    )


def render_verify(report: VerifyReport, fmt: Format) -> None:
    _render(fmt, lambda: contract.verify_json(report), lambda: tables.render_verify(report))


def render_ensure(report: EnsureReport, fmt: Format) -> None:
    _render(
        fmt,
        lambda: contract.ensure_json(report),
        lambda: tables.render_ensure(report),
        paths_when_quiet=True,
    )


def render_clean(
    plan: CleanPlan, result: CleanResult | None, fmt: Format, *, registry: RegistrySource
) -> None:
    """The removals planned (result None: --dry-run or before confirming) or done."""
    _render(
        fmt, lambda: contract.clean_json(plan, result, registry), lambda: tables.render_clean(plan, result)
    )


def render_lock(lock: LockFile, ids: list[str], fmt: Format) -> None:
    _render(fmt, lambda: contract.lock_json(lock, ids), lambda: tables.render_lock(lock, ids))


def render_lock_check(registry: Path, lock: Path, differences: list[str], fmt: Format) -> None:
    _render(
        fmt,
        lambda: contract.lock_check_json(registry, lock, differences),
        lambda: tables.render_lock_check(registry, lock, differences),
    )


def render_lock_missing(registry: Path, lock: Path, fmt: Format) -> None:
    """lock --check --missing-ok with no lock yet: nothing to compare, said so."""
    _render(
        fmt,
        lambda: contract.lock_check_json(registry, lock, []),
        lambda: status(f"No {lock.name} yet: nothing to check (run `modelctl lock` and commit {lock.name})."),
    )


def render_doctor(report: DoctorReport, fmt: Format) -> None:
    _render(fmt, lambda: contract.doctor_json(report), lambda: tables.render_doctor(report))


def render_disk_use(report: DiskUse, fmt: Format) -> None:
    _render(fmt, lambda: contract.disk_use_json(report), lambda: tables.render_disk_use(report))


def render_add(
    result: AddResult, download: DownloadReport | None, fmt: Format, *, is_downloading: bool = False
) -> None:
    """`add`: the entry added (and, under --json, the download --download ran)."""
    _render(
        fmt,
        lambda: contract.add_json(result, download),
        lambda: tables.render_add(result, is_downloading=is_downloading),
    )


def render_outdated(report: OutdatedReport, fmt: Format) -> None:
    _render(fmt, lambda: contract.outdated_json(report), lambda: tables.render_outdated(report))
