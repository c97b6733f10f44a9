"""du: what the storage roots hold, whose it is, and how `clean` removes each part."""

import typer

from modelctl import output
from modelctl.cli.options import ConfigOpt, JsonOpt, output_format, workspace


def du_command(ctx: typer.Context, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show disk use per root: every model folder, whose it is, and how to clean it."""
    from modelctl.store.usage import disk_use

    fmt = output_format(as_json=as_json)
    report = disk_use(workspace(ctx, config))
    output.render(report, fmt)
