"""The only package that writes to the terminal. A command hands its report to `render(report, fmt)`.

    console.py   stdout and stderr, escaping, status / warn / error, JSON and plain lines
    contract.py  the JSON contract: one function per report returning the dict `--json` prints
    tables.py    the human format: Rich tables and sentences
    progress.py  download progress: nothing, plain lines, or Rich bars

This module holds the formats and `render`, which picks a report's renderer by its type.
"""

from __future__ import annotations

import contextlib
import enum
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from modelctl.core.errors import ModelctlError
from modelctl.output import contract, tables
from modelctl.output.console import (
    checksum_line,
    cli_words,
    error,
    plain_line,
    print_json,
    registry_note,
    status,
    warn,
)

if TYPE_CHECKING:
    from modelctl.fetch.download import DownloadEvents

__all__ = [
    "Format",
    "checksum_line",
    "cli_words",
    "download_events",
    "error",
    "error_json",
    "plain_line",
    "registry_note",
    "render",
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


def render(report: object, fmt: Format) -> None:
    """The one place a format picks a renderer, by the report's type: its JSON (contract.JSON_OF),
    with -q each of its models' paths (for `$(modelctl ensure -q x)`), else its table
    (tables.TABLE_OF)."""
    kind = type(report).__name__
    if fmt.is_json:
        print_json(contract.JSON_OF[kind](report))
    elif fmt.is_quiet:
        for model in contract.JSON_OF[kind](report).get("models", ()):
            if model.get("path") is not None:
                plain_line(model["path"])
    else:
        tables.TABLE_OF[kind](report)


def error_json(failure: ModelctlError, *, exit_code: int | None = None) -> None:
    """--json and a failure: `{"error": {type, message, hint, exit_code}}` on stdout, never nothing."""
    _print_json_quietly(contract.error_json(failure, exit_code=exit_code))


def usage_error_json(message: str, exit_code: int) -> None:
    """--json and a command line that Typer rejected: the same `{"error": …}` shape on stdout."""
    _print_json_quietly(contract.usage_error_json(message, exit_code))


def _print_json_quietly(data: dict[str, Any]) -> None:
    with contextlib.suppress(ModelctlError):  # stdout closed: the error still goes to stderr
        print_json(data)
