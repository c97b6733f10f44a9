"""download and ensure: bring models onto disk, verified, resuming what an earlier run left."""

from pathlib import Path
from typing import Annotated

import typer

from modelctl import output
from modelctl.cli.options import (
    AllOpt,
    ConfigOpt,
    ConnectionsOpt,
    EndpointOpt,
    JsonOpt,
    LockTimeoutOpt,
    MaxWorkersOpt,
    ModelsArg,
    OfflineOpt,
    QuietOpt,
    RetriesOpt,
    SizeOpt,
    TimeoutOpt,
    TokenOpt,
    exit_for_health,
    output_format,
    own_workspace,
)
from modelctl.core.settings import download_options
from modelctl.fetch.download import plan_downloads, run_downloads
from modelctl.ops.ensure import ensure_models, ensure_selection
from modelctl.output import Format
from modelctl.store.storage import WRITABLE_ROOTS
from modelctl.store.workspace import Workspace


def _announced_workspace(ctx: typer.Context, config: Path | None, fmt: Format, command: str) -> Workspace:
    """The workspace (never the bundled registry); on stderr, in the human format, which registry
    is used and the roots skipped."""
    ws = own_workspace(ctx, config, command)
    if fmt.is_human:
        output.registry_note(ws.registry.source)
        output.warn(ws.warnings)
    return ws


def download_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    size: SizeOpt = None,
    everything: AllOpt = False,
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit instead of the registry's.", show_default=False)
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="Fetch only files matching this glob (repeatable). The files it leaves out stay part "
            "of the model: `list` says partial until `ensure` fetches them.",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).", show_default=False)
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            help=f"Target root: {', '.join(WRITABLE_ROOTS)} or a PATH. Default: where the model is, else the first writable root.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch every file again.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    max_workers: MaxWorkersOpt = 4,
    connections: ConnectionsOpt = None,
    offline: OfflineOpt = False,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    retries: RetriesOpt = None,
    timeout: TimeoutOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Download models: resume partial files, verify every byte, publish only good files."""
    fmt = output_format(as_json=as_json, quiet=quiet)
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
        max_workers=max_workers,
        connections=connections,
        endpoints=tuple(endpoint or ()),
        token=token,
    )
    ws = _announced_workspace(ctx, config, fmt, "download")
    with output.download_events(fmt) as events:
        plan = plan_downloads(ws, options, events)
        if dry_run:
            output.render(plan, fmt)
            if plan.failed:  # the others were planned and shown; the exit code says one was not
                raise plan.error()
            return
        report = run_downloads(plan, options, events)
    output.render(report, fmt)


def ensure_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    size: SizeOpt = None,
    everything: AllOpt = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when degraded, too.")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Hash every file again first (suspected bit rot).")
    ] = False,
    max_workers: MaxWorkersOpt = 4,
    connections: ConnectionsOpt = None,
    offline: OfflineOpt = False,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    retries: RetriesOpt = None,
    timeout: TimeoutOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Verify, then repair only what is missing or bad, then verify again.

    With no MODEL, --size or --all: every required model, and the optional ones already on disk.
    """

    fmt = output_format(as_json=as_json, quiet=quiet)
    options = download_options(
        retries=retries,
        timeout=timeout,
        lock_timeout=lock_timeout,
        offline=offline,
        max_workers=max_workers,
        connections=connections,
        endpoints=tuple(endpoint or ()),
        token=token,
    )
    ws = _announced_workspace(ctx, config, fmt, "ensure")
    specs = ensure_selection(ws, models or (), size, everything)
    with output.download_events(fmt) as events:
        report = ensure_models(ws, specs, options, events, use_cache=not no_cache)
    output.render(report, fmt)
    exit_for_health(report.health, strict=strict)
