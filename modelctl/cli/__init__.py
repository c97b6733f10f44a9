"""The `modelctl` command line: parse, call one core function, hand the result to output.

The commands are plain functions in cli/listing.py (list, info), cli/project.py (path, cache-key,
init, doctor), cli/fetching.py (download, ensure) and cli/integrity.py (verify, clean, checksum,
lock); this module builds the app, lists the commands in COMMANDS and handles errors.
"""

import os
import signal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from modelctl import output
from modelctl.cli import disk, fetching, integrity, listing, project, registry_cmds
from modelctl.cli.options import FORMAT, ConfigOpt
from modelctl.core import __version__
from modelctl.core.errors import ModelctlError


class ModelctlGroup(TyperGroup):
    """The root group: the one place where ModelctlError becomes a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        asked = _asks_for_json(ctx)  # read before click hands the arguments to the command
        try:
            return super().invoke(ctx)
        except ModelctlError as err:
            if _answers_in_json(ctx, asked):
                output.error_json(err)
            output.error(err, show_traceback=_is_debug())
            raise typer.Exit(int(err.exit_code)) from None
        except typer.TyperException as err:  # a command line Typer rejects: a bad value, an unknown option
            if _answers_in_json(
                ctx, asked
            ):  # Typer still prints the usage and the message on stderr, as always
                code = int(getattr(err, "exit_code", 1))
                message = err.format_message() if hasattr(err, "format_message") else str(err)
                output.usage_error_json(message, code)
            raise
        except KeyboardInterrupt as err:
            _interrupted(err, _answers_in_json(ctx, asked))

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:  # Ctrl-C while the command line is parsed: the same message and exit code as later
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as err:
            _interrupted(err, as_json=False)


def _interrupted(err: KeyboardInterrupt, as_json: bool) -> NoReturn:
    """Ctrl-C (exit 130), SIGTERM (143) or SIGHUP (129): say so, after the cleanup already ran."""
    signum = getattr(err, "signum", signal.SIGINT)
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    interrupted = ModelctlError(
        f"Interrupted{by}. Finished files are in place; partial downloads were kept.",
        hint="Run the same command again to resume where it stopped.",
    )
    if as_json:
        output.error_json(interrupted, exit_code=128 + signum)
    output.error(interrupted)
    raise typer.Exit(128 + signum) from None


def _asks_for_json(ctx: Any) -> bool:
    """Whether the command line asks for --json (before any `--`)."""
    args = list(ctx.args)  # what follows the command's name
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _answers_in_json(ctx: Any, asked: bool) -> bool:
    """Whether the failing command answers in JSON: the Format it resolved (cli/options.py), or,
    when it failed before that (Typer rejected its command line), what its command line asked."""
    fmt = ctx.meta.get(FORMAT)
    return bool(fmt.is_json) if fmt is not None else asked


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
    if value:  # on stdout: v=$(modelctl --version) is the answer
        output.plain_line(f"modelctl {__version__}")
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
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Manage model files from the Hugging Face Hub: registry, storage roots, verified downloads."""
    ctx.obj = {"config": config}
    if verbose or log_file is not None:
        import sys

        from modelctl.core.logs import configure

        configure(verbose=verbose, log_file=log_file, stream=sys.stderr)


# Every command, in the order --help lists them, with the examples its --help ends with: a new
# command is one entry here.
COMMANDS = (
    ("list", listing.list_command, ("modelctl list", "modelctl list --size 0.5b --json")),
    ("info", listing.info_command, ("modelctl info fastvlm-0.5b", "modelctl info --size 7b --json")),
    (
        "add",
        registry_cmds.add_command,
        ("modelctl add apple/FastVLM-0.5B --size 0.5b", "modelctl add org/model --files '*.json' --download"),
    ),
    ("path", project.path_command, ('cd "$(modelctl path fastvlm-0.5b)"',)),
    ("cache-key", project.cache_key_command, ('echo "models-$(modelctl cache-key)"',)),
    ("init", project.init_command, ("modelctl init", "modelctl init --force")),
    ("doctor", project.doctor_command, ("modelctl doctor", "modelctl doctor --json")),
    (
        "download",
        fetching.download_command,
        ("modelctl download fastvlm-0.5b", "modelctl download --size 7b --include '*.json' --dry-run"),
    ),
    ("ensure", fetching.ensure_command, ("modelctl ensure", "MODEL_DIR=$(modelctl ensure fastvlm-0.5b -q)")),
    (
        "verify",
        integrity.verify_command,
        ("modelctl verify --all", "modelctl verify fastvlm-0.5b --no-cache"),
    ),
    (
        "clean",
        integrity.clean_command,
        ("modelctl clean --incomplete --dry-run", "modelctl clean fastvlm-7b --yes"),
    ),
    ("du", disk.du_command, ("modelctl du", "modelctl du --json | jq .summary")),
    (
        "checksum",
        integrity.checksum_command,
        ("modelctl checksum model.safetensors", "modelctl checksum --algo md5 *.bin"),
    ),
    ("lock", integrity.lock_command, ("modelctl lock", "modelctl lock --check")),
    (
        "outdated",
        registry_cmds.outdated_command,
        ("modelctl outdated", "modelctl outdated fastvlm-0.5b --json"),
    ),
)


def _epilog(examples: tuple[str, ...]) -> str:
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in examples)


for _name, _command, _examples in COMMANDS:
    app.command(_name, epilog=_epilog(_examples))(_command)

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
