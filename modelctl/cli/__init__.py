"""The `modelctl` command line: parse, call one core function, hand the result to output.

The commands are plain functions in cli/listing.py (list, info), cli/project.py (path, cache-key,
init, doctor), cli/fetching.py (download, ensure) and cli/integrity.py (verify, clean, checksum,
lock); this module builds the app, lists the commands in COMMANDS and handles errors.
"""

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from modelctl import __version__, output
from modelctl.cli import fetching, integrity, listing, project
from modelctl.cli.options import ConfigOpt
from modelctl.errors import ModelctlError


class ModelctlGroup(TyperGroup):
    """The root group: the one place where ModelctlError becomes a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ModelctlError as err:
            output.error(err, show_traceback=_is_debug())
            raise typer.Exit(int(err.exit_code)) from None
        except KeyboardInterrupt:
            output.error(
                ModelctlError(
                    "Interrupted. Finished files are in place; partial downloads were kept.",
                    hint="Run the same command again to resume where it stopped.",
                )
            )
            raise typer.Exit(130) from None


def _is_debug() -> bool:
    return os.environ.get("MODELCTL_DEBUG", "").strip().lower() in ("1", "true", "yes")


app = typer.Typer(
    cls=ModelctlGroup,
    name="modelctl",
    help="Manage model files from the Hugging Face Hub: registry, storage roots, verified downloads.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a traceback's locals could hold a token
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        output.status(f"modelctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug log on stderr.")] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            help="Append every action (with timestamps, retries, hashes) to this file.", show_default=False
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Manage model files from the Hugging Face Hub: registry, storage roots, verified downloads."""
    ctx.obj = {"config": config}
    if verbose or log_file is not None:
        import sys

        from modelctl.logs import configure

        configure(verbose=verbose, log_file=log_file, stream=sys.stderr)


# Every command, in the order --help lists them: a new command is one line here.
COMMANDS = (
    ("list", listing.list_command),
    ("info", listing.info_command),
    ("path", project.path_command),
    ("cache-key", project.cache_key_command),
    ("init", project.init_command),
    ("doctor", project.doctor_command),
    ("download", fetching.download_command),
    ("ensure", fetching.ensure_command),
    ("verify", integrity.verify_command),
    ("clean", integrity.clean_command),
    ("checksum", integrity.checksum_command),
    ("lock", integrity.lock_command),
)
for _name, _command in COMMANDS:
    app.command(_name)(_command)

__all__ = ["COMMANDS", "app", "main"]


def _hold_standard_fds() -> None:
    """Give a closed stdin, stdout or stderr (`>&-`) /dev/null, keeping sys.stdout/sys.stderr None.

    Otherwise the next file opened takes its number, and a write meant for the terminal (by a
    library, or a child process inheriting it) would land in that file: a model file, perhaps.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main() -> None:
    """Console-script entry point."""
    _hold_standard_fds()
    app(prog_name="modelctl")
