"""doctor: check Python, packages, registry, storage roots and Hub settings, and say what to fix."""

import typer

from modelctl import output
from modelctl.cli.options import ConfigOpt, JsonOpt, output_format
from modelctl.ops.doctor import run_doctor


def doctor_command(ctx: typer.Context, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Check Python, packages, registry, storage roots, Hub settings, leftovers and .gitignore."""
    fmt = output_format(as_json=as_json)
    report = run_doctor(config if config is not None else (ctx.obj or {}).get("config"))
    output.render(report, fmt)
    if report.needs_attention:
        raise typer.Exit(1)
