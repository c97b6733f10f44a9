"""du and clean: what the storage roots hold, whose it is, and removing what is not wanted."""

import sys
from typing import Annotated

import typer

from modelctl import output
from modelctl.cli.options import ConfigOpt, JsonOpt, ModelsArg, output_format, own_workspace, workspace
from modelctl.core.errors import UsageError
from modelctl.ops.clean import CleanReport, clean_selection, plan_clean, run_clean
from modelctl.output import Format
from modelctl.store.storage import ROOT_NAMES, WRITABLE_ROOTS
from modelctl.store.usage import disk_use


def du_command(ctx: typer.Context, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show disk use per root: every model folder, whose it is, and how to clean it."""
    fmt = output_format(as_json=as_json)
    report = disk_use(workspace(ctx, config))
    output.render(report, fmt)


def clean_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    everything: Annotated[bool, typer.Option("--all", help="Every model of the registry.")] = False,
    corrupted: Annotated[bool, typer.Option("--corrupted", help="Only files that fail verify.")] = False,
    incomplete: Annotated[
        bool, typer.Option("--incomplete", help="Only partial downloads, quarantine and stale lock files.")
    ] = False,
    outdated: Annotated[
        bool,
        typer.Option("--outdated", help="Only files an earlier commit had and the current one does not."),
    ] = False,
    shadowed: Annotated[
        bool,
        typer.Option(
            "--shadowed",
            help="Only copies another root's copy hides (project and legacy roots; user: --root user).",
        ),
    ] = False,
    unnamed: Annotated[
        bool,
        typer.Option(
            "--unnamed",
            help="Only folders no registry model names (project and legacy roots; user: --root user).",
        ),
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="With --corrupted: hash every file again first.")
    ] = False,
    root: Annotated[
        str | None,
        typer.Option(
            help=f"Only this root: {', '.join(WRITABLE_ROOTS[:-1])} or {WRITABLE_ROOTS[-1]}.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (needed without a terminal).")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Remove partials, corrupted files, whole models or stray copies, inside the storage roots only."""
    fmt = output_format(as_json=as_json)
    if root is not None and root not in ROOT_NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(ROOT_NAMES)}", param_hint="--root")
    ws = own_workspace(ctx, config, "clean")
    specs = clean_selection(
        ws,
        models or (),
        everything,
        incomplete=incomplete,
        corrupted=corrupted,
        outdated=outdated,
        shadowed=shadowed,
        unnamed=unnamed,
    )
    plan = plan_clean(
        ws,
        specs,
        incomplete=incomplete,
        corrupted=corrupted,
        root=root,
        outdated=outdated,
        use_cache=not no_cache,
        shadowed=shadowed,
        unnamed=unnamed,
    )
    if dry_run or not plan.removals:
        output.render(CleanReport(plan, None, ws.registry.source), fmt)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"clean would remove {len(plan.removals)} item(s) ({plan.bytes:,} bytes); without a terminal "
                "to confirm it needs --yes.",
                hint="Look first with --dry-run, then run it again with --yes.",
            )
        output.render(CleanReport(plan, None, ws.registry.source), Format.HUMAN)
        if not typer.confirm("Remove these?", default=False, err=True):
            raise typer.Exit(1)
    result = run_clean(plan)
    output.render(CleanReport(plan, result, ws.registry.source), fmt)
    if result.failed:
        raise typer.Exit(1)
