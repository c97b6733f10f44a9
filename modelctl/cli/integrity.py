"""verify, checksum and path: what is on disk, checked against what the model is."""

from pathlib import Path
from typing import Annotated

import typer

from modelctl import output
from modelctl.cli.options import (
    ConfigOpt,
    JsonOpt,
    ModelsArg,
    SizeOpt,
    complete_model_ids,
    exit_for_health,
    output_format,
    workspace,
)
from modelctl.core.errors import BadChecksumError, MissingModelError
from modelctl.core.hashing import ALGORITHMS
from modelctl.store.verify import LEVELS, checksum_files, verify_models

LevelOpt = Annotated[
    str | None,
    typer.Option(
        "--level",
        help="none | size | sha256. Default: the registry's `verify:` (sha256).",
        show_default=False,
    ),
]


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
    fmt = output_format(as_json=as_json)
    if level is not None and level not in LEVELS:
        raise typer.BadParameter(f"choose one of {', '.join(LEVELS)}", param_hint="--level")
    ws = workspace(ctx, config)
    specs = ws.registry.select(models or (), size, everything)
    report = verify_models(ws, specs, level=level, use_cache=not no_cache, explicit=bool(models))
    output.render(report, fmt)
    exit_for_health(report.health, strict=strict)


def checksum_command(
    files: Annotated[list[Path], typer.Argument(help="Files to hash.", show_default=False)],
    algo: Annotated[str, typer.Option(help=" | ".join(ALGORITHMS) + ".")] = "sha256",
) -> None:
    """Print `algo:hex  path` lines, ready to paste into a model's `checksums:` pins."""
    if algo not in ALGORITHMS:
        raise typer.BadParameter(f"choose one of {', '.join(ALGORITHMS)}", param_hint="--algo")
    for path, digest in checksum_files(files, algo):
        output.checksum_line(algo, digest, path)


def path_command(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="A model id.", show_default=False, autocompletion=complete_model_ids)
    ],
    config: ConfigOpt = None,
) -> None:
    """Print the verified local folder of a model (exit 4 if absent, 3 if it fails verify)."""
    ws = workspace(ctx, config)
    verdict = verify_models(ws, [ws.registry.get(model)], explicit=True).models[0]
    if verdict.location is None:
        raise MissingModelError(
            f"{model} is not on disk in any storage root.", hint=f"Run `modelctl ensure {model}`."
        )
    if not verdict.is_ok:
        raise BadChecksumError(
            f"{model} at {verdict.location.path} fails verify: {', '.join(verdict.bad_files) or 'see verify'}.",
            hint=f"Run `modelctl ensure {model}` to repair it.",
        )
    output.plain_line(str(verdict.location.path))
