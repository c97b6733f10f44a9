"""The `modelctl` command line: parse, call one core function, hand the result to output.

The commands are plain functions in the modules beside this one, grouped by what they import:
cli/listing.py (list, info), cli/project.py (init, cache-key), cli/doctor.py, cli/integrity.py
(verify, checksum, path), cli/disk.py (du, clean), cli/fetching.py (download, ensure) and
cli/registry_cmds.py (add, outdated, lock). This module builds the app, names every command in
COMMANDS and handles errors.

A command's module is imported only when that command is looked up (LazyCommands): `modelctl
list` never loads the download engine, and a command module imports its core at its top, like
any other module, instead of inside each function.
"""

import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from modelctl import output
from modelctl.cli.options import FORMAT, ConfigOpt
from modelctl.core import __version__
from modelctl.core.errors import ModelctlError, speak
from modelctl.core.logs import configure

speak(output.cli_words)  # every hint's next step in flags and commands


class LazyCommands(MutableMapping[str, Any]):  # click commands: Typer's own click on newer Typers
    """The root group's commands by name, each built from COMMANDS when first looked up.

    Written by hand: click's documented LazyGroup overrides get_command, but Typer's group also
    reads `commands` directly (its did-you-mean suggestions), so the mapping itself is lazy.
    Within `listing()` (the root's --help, completing a command's name) a command not built yet
    is its summary only: its name and docstring, read from its module's source unimported.
    """

    def __init__(self, built: MutableMapping[str, Any]) -> None:
        self._built = dict(built)
        self._listing = False

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if self._listing and (summary := _summary(name)) is not None:
                return summary
            self._built[name] = _build(name)  # KeyError for a name COMMANDS does not have
        return self._built[name]

    @contextlib.contextmanager
    def listing(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*(name for name, _, _ in COMMANDS), *self._built]))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _entry(name: str) -> tuple[str, str, tuple[str, ...]]:
    """(module, function, examples) of a COMMANDS entry; KeyError for a name it does not have."""
    for entry, where, examples in COMMANDS:
        if entry == name:
            module, function = where.split(":")
            return module, function, examples
    raise KeyError(name)


def _build(name: str) -> Any:
    """The click command of one COMMANDS entry: its module imported, its function made a command
    by a one-command Typer (typer.main.get_command, Typer's own public way to a click object)."""
    module, function, examples = _entry(name)
    single = typer.Typer(add_completion=False)  # the root has the completion options
    single.command(name, epilog=_epilog(examples))(
        getattr(importlib.import_module(f"modelctl.cli.{module}"), function)
    )
    return typer.main.get_command(single)


def _summary(name: str) -> Any:
    """A command as the root's --help lists it, its module unimported (that would load the
    engine, huggingface_hub and the rest: 0.14 s more for `modelctl --help`). None without the
    module's source (a build with .pyc only): then the command itself is built."""
    import ast  # here: only the root's --help and completion read sources

    module, function, _ = _entry(name)
    try:
        tree = ast.parse(Path(__file__).with_name(f"{module}.py").read_text(encoding="utf-8"))
    except OSError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return TyperCommand(name=name, help=ast.get_docstring(node))
    return None


class ModelctlGroup(TyperGroup):
    """The root group: the one place where ModelctlError becomes a message and an exit code."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lazy = LazyCommands(self.commands)
        self.commands = self.lazy

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self.lazy.listing():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        with self.lazy.listing():  # the commands' names and summaries, then the root's options
            return super().shell_complete(ctx, incomplete)

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
        configure(verbose=verbose, log_file=log_file, stream=sys.stderr)


# Every command, in the order --help lists them: its name, where its function is (a module of
# cli/, imported when the command is looked up) and the examples its --help ends with. A new
# command is one entry here.
COMMANDS = (
    ("list", "listing:list_command", ("modelctl list", "modelctl list --size 0.5b --json")),
    ("info", "listing:info_command", ("modelctl info fastvlm-0.5b", "modelctl info --size 7b --json")),
    (
        "add",
        "registry_cmds:add_command",
        ("modelctl add apple/FastVLM-0.5B --size 0.5b", "modelctl add org/model --files '*.json' --download"),
    ),
    ("path", "integrity:path_command", ('cd "$(modelctl path fastvlm-0.5b)"',)),
    ("cache-key", "project:cache_key_command", ('echo "models-$(modelctl cache-key)"',)),
    ("init", "project:init_command", ("modelctl init", "modelctl init --force")),
    ("doctor", "doctor:doctor_command", ("modelctl doctor", "modelctl doctor --json")),
    (
        "download",
        "fetching:download_command",
        ("modelctl download fastvlm-0.5b", "modelctl download --size 7b --include '*.json' --dry-run"),
    ),
    (
        "ensure",
        "fetching:ensure_command",
        ("modelctl ensure", "MODEL_DIR=$(modelctl ensure fastvlm-0.5b -q)"),
    ),
    (
        "verify",
        "integrity:verify_command",
        ("modelctl verify --all", "modelctl verify fastvlm-0.5b --no-cache"),
    ),
    (
        "clean",
        "disk:clean_command",
        ("modelctl clean --incomplete --dry-run", "modelctl clean fastvlm-7b --yes"),
    ),
    ("du", "disk:du_command", ("modelctl du", "modelctl du --json | jq .summary")),
    (
        "checksum",
        "integrity:checksum_command",
        ("modelctl checksum model.safetensors", "modelctl checksum --algo md5 *.bin"),
    ),
    ("lock", "registry_cmds:lock_command", ("modelctl lock", "modelctl lock --check")),
    (
        "outdated",
        "registry_cmds:outdated_command",
        ("modelctl outdated", "modelctl outdated fastvlm-0.5b --json"),
    ),
)


def _epilog(examples: tuple[str, ...]) -> str:
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in examples)


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
