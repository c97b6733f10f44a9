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
from modelctl.errors import ExitCode, ModelctlError, NotImplementedYetError
from modelctl.manager import Workspace, list_models, open_workspace


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


@app.command("download")
def download_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    size: SizeOpt = None,
    everything: Annotated[bool, typer.Option("--all", help="Every model in the registry.")] = False,
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit instead of the registry's.", show_default=False)
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(help="Also fetch files matching this glob (repeatable).", show_default=False),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).", show_default=False)
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            help="Target root: user, project, legacy or a PATH. Default: where the model is, else the first writable root.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch every file again.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    max_workers: Annotated[int, typer.Option(min=1, max=64, help="Files fetched at once.")] = 4,
    offline: Annotated[
        bool, typer.Option("--offline", help="No network: use only what is on disk (also HF_HUB_OFFLINE=1).")
    ] = False,
    endpoint: Annotated[
        str | None,
        typer.Option(help="Hub URL. Default: HF_ENDPOINT, else https://huggingface.co.", show_default=False),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Hub token. Default: HF_TOKEN, else `hf auth login`'s.", show_default=False),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(help="Attempts per file [env MODELCTL_RETRIES, default 5].", show_default=False),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait for a connection or data [env MODELCTL_TIMEOUT, default 30].",
            show_default=False,
        ),
    ] = None,
    lock_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait for another modelctl on the same model [env MODELCTL_LOCK_TIMEOUT, default 600].",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only each model's path.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Download models: resume partial files, verify every byte, publish only good files."""
    from modelctl.download import download_options, plan_downloads, run_downloads

    options = download_options(
        retries=retries,
        timeout=timeout,
        lock_timeout=lock_timeout,
        offline=offline,
        ids=tuple(models or ()),
        size=size,
        everything=everything,
        revision=revision,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        to=to,
        force=force,
        dry_run=dry_run,
        max_workers=max_workers,
        endpoint=endpoint,
        token=token,
    )
    workspace = _workspace(ctx, config)
    if not (as_json or quiet):
        output.registry_note(workspace.registry.source)
        output.warn(workspace.warnings)
    with output.download_events(quiet=quiet, as_json=as_json) as events:
        plan = plan_downloads(workspace, options, events)
        if dry_run:
            output.render_plan(plan, as_json=as_json)
            return
        report = run_downloads(plan, options, events)
    output.render_download(report, as_json=as_json, quiet=quiet)


LevelOpt = Annotated[
    str | None,
    typer.Option(
        "--level",
        help="none | size | sha256. Default: the registry's `verify:` (sha256).",
        show_default=False,
    ),
]


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    size: SizeOpt = None,
    everything: Annotated[bool, typer.Option("--all", help="Every model (the default).")] = False,
    level: LevelOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Hash every file again.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when degraded, too.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Check models on disk: presence, sizes, hashes, safetensors/GGUF/JSON structure, leftovers."""
    from modelctl.verify import LEVELS, verify_models

    if level is not None and level not in LEVELS:
        raise typer.BadParameter(f"choose one of {', '.join(LEVELS)}", param_hint="--level")
    workspace = _workspace(ctx, config)
    specs = workspace.registry.select(models or (), size, everything)
    report = verify_models(workspace, specs, level=level, use_cache=not no_cache, explicit=bool(models))
    output.render_verify(report, as_json=as_json)
    _exit_for_health(report.health, strict=strict)


def _exit_for_health(health: str, *, strict: bool) -> None:
    """healthy → 0; degraded (only optional models bad) → 0, or 3 with --strict; unhealthy → 3."""
    if health == "unhealthy" or (health == "degraded" and strict):
        raise typer.Exit(int(ExitCode.INTEGRITY))


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
