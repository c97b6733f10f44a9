"""list and info: what the registry names and what is on disk, without network or hashing."""

import typer

from modelctl import output
from modelctl.cli.options import ConfigOpt, JsonOpt, ModelsArg, SizeOpt, output_format, workspace
from modelctl.store.workspace import InfoReport, list_models


def list_command(
    ctx: typer.Context,
    size: SizeOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List every registry model: where it is, and whether its files are there."""
    fmt = output_format(as_json=as_json)
    report = list_models(workspace(ctx, config), size=size)
    output.render(report, fmt)


def info_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    size: SizeOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show a model's spec, where it is in each root, its files and their expected hashes."""
    fmt = output_format(as_json=as_json)
    if not models and size is None:
        raise typer.BadParameter("name a MODEL or a --size (e.g. --size 0.5b)", param_hint="MODEL")
    report = list_models(workspace(ctx, config), ids=models or (), size=size)
    output.render(InfoReport(*report), fmt)
