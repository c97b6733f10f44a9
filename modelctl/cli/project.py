"""init and cache-key: set a project up, and answer its scripts and CI."""

from typing import Annotated

import typer

from modelctl import output
from modelctl.cli.options import ConfigOpt, workspace
from modelctl.core.registry import current_dir
from modelctl.ops.project import cache_key, init_project


def cache_key_command(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Print a stable short hash of the registry and models.lock, for CI cache keys."""
    output.plain_line(cache_key(workspace(ctx, config).registry))


def init_command(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing models.yaml.")] = False,
) -> None:
    """Write a commented starter models.yaml here, and .gitignore lines for the model folders."""
    result = init_project(current_dir(), force=force)
    output.render(result, output.Format.HUMAN)
