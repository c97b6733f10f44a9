"""add, outdated and lock: grow the registry from the Hub, ask whether its models moved on, and
pin each one's commit in the lock."""

from typing import Annotated

import typer

from modelctl import output
from modelctl.cli.options import (
    ConfigOpt,
    EndpointOpt,
    JsonOpt,
    ModelsArg,
    SizeOpt,
    TokenOpt,
    output_format,
    workspace,
)
from modelctl.core.lockfile import lock_differences, read_lock
from modelctl.core.settings import download_options
from modelctl.fetch.download import plan_downloads, run_downloads
from modelctl.ops.add import AddReport, add_model
from modelctl.ops.locking import LockCheck, LockReport, lock_models
from modelctl.ops.outdated import check_outdated


def add_command(
    ctx: typer.Context,
    repo_id: Annotated[
        str,
        typer.Argument(help="The Hub repo, namespace/name (e.g. apple/FastVLM-0.5B).", show_default=False),
    ],
    model_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Model id. Default: the repo's name, lower-case (FastVLM-0.5B → fastvlm-0.5b).",
            show_default=False,
        ),
    ] = None,
    size: Annotated[
        str | None, typer.Option("--size", "-s", help="Size variant, e.g. 0.5b.", show_default=False)
    ] = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "--files",
            help="Only files matching this glob (repeatable); each must match a file.",
            show_default=False,
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit. Default: main.", show_default=False)
    ] = None,
    download: Annotated[bool, typer.Option("--download", help="Download the model once added.")] = False,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Check a Hub repo and add it to models.yaml, keeping the file's comments and order."""
    fmt = output_format(as_json=as_json, quiet=as_json)  # --json: no progress lines either
    options = download_options(endpoints=tuple(endpoint or ()), token=token)
    ws = workspace(ctx, config)
    with output.download_events(fmt) as events:
        added = add_model(
            ws,
            repo_id,
            options,
            events,
            model_id=model_id,
            size=size,
            files=tuple(files or ()),
            revision=revision,
        )
        if not download:
            output.render(AddReport(added), fmt)
            return
        if fmt.is_human:
            output.render(AddReport(added, downloading=True), fmt)
        options = download_options(endpoints=tuple(endpoint or ()), token=token, ids=(added.spec.id,))
        plan = plan_downloads(workspace(ctx, config), options, events)  # the registry as it is now
        report = run_downloads(plan, options, events)
    if fmt.is_human:
        output.render(report, fmt)
    else:
        output.render(AddReport(added, report), fmt)


def outdated_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    size: SizeOpt = None,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show which models' locked or downloaded commit is behind their revision on the Hub (exit 1)."""
    fmt = output_format(as_json=as_json, quiet=as_json)
    options = download_options(endpoints=tuple(endpoint or ()), token=token)
    ws = workspace(ctx, config)
    specs = ws.registry.select(models or (), size)
    with output.download_events(fmt) as events:
        report = check_outdated(ws, specs, options, events)
    output.render(report, fmt)
    if report.is_behind:
        raise typer.Exit(1)


def lock_command(
    ctx: typer.Context,
    models: ModelsArg = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Only compare the registry with its lock (offline); exit 1 if they differ."
        ),
    ] = False,
    missing_ok: Annotated[
        bool,
        typer.Option(
            "--missing-ok", help="With --check: no lock yet is not a difference (a project's first CI run)."
        ),
    ] = False,
    endpoint: EndpointOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Resolve each model's revision to a commit and write the registry's lock beside it.

    models.yaml's lock is models.lock; models.minimal.yaml's is models.minimal.lock.
    """

    fmt = output_format(as_json=as_json, quiet=as_json)  # lock --json: no progress lines either
    ws = workspace(ctx, config)
    if check:
        lock = read_lock(ws.registry)
        if lock is None and missing_ok:  # a first run: the lock is written and committed later
            output.render(LockCheck(ws.registry.path, ws.registry.lock_path, ()), fmt)
            return
        differences = lock_differences(ws.registry, lock)
        output.render(LockCheck(ws.registry.path, ws.registry.lock_path, tuple(differences)), fmt)
        if differences:
            raise typer.Exit(1)
        return
    specs = ws.registry.select(models or ())
    options = download_options(endpoints=tuple(endpoint or ()), token=token)
    with output.download_events(fmt) as events:
        lock = lock_models(ws, specs, options, events)
    output.render(LockReport(lock, tuple(s.id for s in specs)), fmt)
