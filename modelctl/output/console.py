"""Where output goes: stdout and stderr as sinks, unprintable characters made visible, and the plain lines.

stdout carries the answer (a table, JSON, a path); stderr carries status, warnings, hints and errors.
Every other module of the package writes through the sinks and consoles made here.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from modelctl.core.errors import ModelctlError, Step
from modelctl.core.logs import redact

if TYPE_CHECKING:
    from rich.console import Console

    from modelctl.core.registry import RegistrySource

# Rich is imported inside the functions that draw: `--json` output never pays the ~25 ms that
# rich.console and rich.table cost at start-up (bench/startup).

_REASONS = {
    "--config": "from --config",
    "MODELCTL_CONFIG": "from MODELCTL_CONFIG",
    "CI_MINIMAL_MODELS": "CI_MINIMAL_MODELS is set",
    "found": "found in this folder or a parent",
    "bundled": "the bundled default",
}


def cli_words(step: Step) -> str:
    """A hint's step as the command line says it: `--to PATH`, `` `modelctl lock MODEL` ``."""
    if step.kind == "option":
        return f"--{step.name} {step.value}".rstrip()
    return f"`{command_line(step)}`"


def command_line(step: Step) -> str:
    """A command step as the line to type: `HF_HUB_OFFLINE=0 modelctl download x --offline`."""
    words = [*step.env.split(), "modelctl", step.name, *step.value.split(), *(f"--{o}" for o in step.options)]
    return " ".join(words)


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


def mb_per_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / max(seconds, 1e-6) / 1e6:.0f} MB/s"


class Sink:
    """sys.stdout or sys.stderr as this package writes to them, whatever became of them.

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
        text = redact(text)  # an endpoint's password never reaches the terminal, a pipe or JSON
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


def stdout() -> Sink:
    # Made per call, not at import: CliRunner swaps sys.stdout between invocations.
    return Sink(sys.stdout, is_answer=True)


def stderr() -> Sink:
    return Sink(sys.stderr, is_answer=False)


def out() -> Console:
    """A Rich console on stdout, for the answer."""
    # Piped output is read by programs and people's pagers: never cut a table at 80 columns.
    from rich.console import Console

    file = stdout()
    width = None if file.isatty() or os.environ.get("COLUMNS") else 400
    return Console(file=cast("IO[str]", file), highlight=False, emoji=False, soft_wrap=False, width=width)


def err() -> Console:
    """A Rich console on stderr, for status, warnings and progress."""
    from rich.console import Console

    return Console(file=cast("IO[str]", stderr()), highlight=False, emoji=False, soft_wrap=True)


# --------------------------------------------------------------------------- stdout: plain answers


def answer(text: str) -> None:
    """Plain text on stdout (JSON, paths for scripts): exact when piped, escapes made visible on a terminal."""
    sink = stdout()
    sink.write(visible(text) if sink.isatty() else text)
    sink.flush()


def print_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    import json  # only --json pays for it

    answer(json.dumps(data, indent=2) + "\n")


def plain_line(text: str) -> None:
    """One line on stdout, for $(modelctl …) in scripts."""
    answer(text + "\n")


def checksum_line(algo: str, digest: str, path: Path) -> None:
    answer(f"{algo}:{digest}  {path}\n")


# --------------------------------------------------------------------------- stderr


def warn(messages: Iterable[str]) -> None:
    console = err()
    for message in messages:
        console.print(f"[yellow]Warning:[/] {escape(message)}")


def status(message: str) -> None:
    err().print(escape(message), style="dim")


def registry_note(source: RegistrySource) -> None:
    status(f"Registry: {source.path} ({_REASONS.get(source.reason, source.reason)})")


def error(failure: ModelctlError, *, show_traceback: bool = False) -> None:
    """Render an expected failure: what happened, then what to do next."""
    console = err()
    if show_traceback:
        stderr().write(visible("".join(traceback.format_exception(failure))))
    console.print(f"[bold red]Error:[/] {escape(failure.message)}")
    if failure.hint:
        console.print(f"[bold]Hint:[/] {escape(failure.hint)}")
