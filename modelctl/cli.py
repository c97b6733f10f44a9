"""The `modelctl` command line: parse, call one core function, hand the result to output.

No `from __future__ import annotations` here: Typer would then evaluate every annotation string
with typing.get_type_hints at each start (measured ~3 ms of `modelctl list`).
"""

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from modelctl import __version__, output
from modelctl.errors import ModelctlError, NotImplementedYetError
from modelctl.manager import Workspace, list_models, open_workspace


class ModelctlGroup(TyperGroup):
    """The root group: the one place where ModelctlError becomes a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ModelctlError as err:
            output.error(err, show_traceback=_is_debug())
            raise typer.Exit(int(err.exit_code)) from None


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

# Shared options, defined once.
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Registry file. Default: MODELCTL_CONFIG, else ./models.yaml or a parent's, else the bundled one.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
SizeOpt = Annotated[
    str | None,
    typer.Option("--size", "-s", help="Size variant, e.g. 0.5b, or 'all'.", show_default=False),
]
ModelsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Model ids from the registry.", show_default=False),
]


def _version(value: bool) -> None:
    if value:
        output.status(f"modelctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Manage model files from the Hugging Face Hub: registry, storage roots, verified downloads."""
    ctx.obj = {"config": config}


def _workspace(ctx: typer.Context, config: Path | None) -> Workspace:
    chosen = config if config is not None else (ctx.obj or {}).get("config")
    return open_workspace(chosen)


@app.command("list")
def list_command(
    ctx: typer.Context,
    size: SizeOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List every registry model: where it is, and whether its files are there."""
    report = list_models(_workspace(ctx, config), size=size)
    output.render_list(report, as_json=as_json)


@app.command("info")
def info_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    size: SizeOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show a model's spec, where it is in each root, and its files."""
    if not models and size is None:
        raise typer.BadParameter("name a MODEL or a --size (e.g. --size 0.5b)", param_hint="MODEL")
    report = list_models(_workspace(ctx, config), ids=models or (), size=size)
    output.render_info(report, as_json=as_json)


def _not_yet(command: str, issue: str) -> None:
    raise NotImplementedYetError(
        f"`modelctl {command}` is not implemented yet ({issue}).",
    )


@app.command("download", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def download_command() -> None:
    """Download models, resuming and verifying while streaming (not implemented yet)."""
    _not_yet("download", "the downloads issue")


@app.command("verify", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def verify_command() -> None:
    """Check every file of the models against sizes, hashes and format headers (not implemented yet)."""
    _not_yet("verify", "the integrity issue")


@app.command("ensure", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def ensure_command() -> None:
    """Verify, repair only what is bad, and report health (not implemented yet)."""
    _not_yet("ensure", "the integrity issue")


@app.command("clean", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def clean_command() -> None:
    """Remove partial downloads, corrupted files or whole models (not implemented yet)."""
    _not_yet("clean", "the integrity issue")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="modelctl")
