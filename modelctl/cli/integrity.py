"""verify, clean, checksum and lock: what is on disk, checked; what is not wanted, removed."""

from typing import Annotated

import typer

from modelctl import output
from modelctl.cli import app
from modelctl.cli.options import ConfigOpt, JsonOpt, ModelsArg, SizeOpt, exit_for_health, workspace
from modelctl.errors import NotImplementedYetError

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
    ws = workspace(ctx, config)
    specs = ws.registry.select(models or (), size, everything)
    report = verify_models(ws, specs, level=level, use_cache=not no_cache, explicit=bool(models))
    output.render_verify(report, as_json=as_json)
    exit_for_health(report.health, strict=strict)


@app.command("clean", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def clean_command() -> None:
    """Remove partial downloads, corrupted files or whole models (not implemented yet)."""
    raise NotImplementedYetError("`modelctl clean` is not implemented yet (the integrity issue).")
