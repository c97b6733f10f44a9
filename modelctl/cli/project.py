"""path, cache-key, init and doctor: set a project up, check it, answer its scripts and CI."""

from typing import Annotated

import typer

from modelctl import output
from modelctl.cli.options import ConfigOpt, JsonOpt, complete_model_ids, output_format, workspace


def path_command(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(help="A model id.", show_default=False, autocompletion=complete_model_ids)
    ],
    config: ConfigOpt = None,
) -> None:
    """Print the verified local folder of a model (exit 4 if absent, 3 if it fails verify)."""
    from modelctl.core.errors import BadChecksumError, MissingModelError
    from modelctl.store.verify import verify_models

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


def cache_key_command(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Print a stable short hash of the registry and models.lock, for CI cache keys."""
    from modelctl.ops.project import cache_key

    output.plain_line(cache_key(workspace(ctx, config).registry))


def init_command(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing models.yaml.")] = False,
) -> None:
    """Write a commented starter models.yaml here, and .gitignore lines for the model folders."""
    from modelctl.core.registry import current_dir
    from modelctl.ops.project import init_project

    result = init_project(current_dir(), force=force)
    output.render(result, output.Format.HUMAN)


def doctor_command(ctx: typer.Context, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Check Python, packages, registry, storage roots, Hub settings, leftovers and .gitignore."""
    from modelctl.ops.doctor import run_doctor

    fmt = output_format(as_json=as_json)
    report = run_doctor(config if config is not None else (ctx.obj or {}).get("config"))
    output.render(report, fmt)
    if report.needs_attention:
        raise typer.Exit(1)
