"""verify, clean, checksum and lock: what is on disk, checked; what is not wanted, removed."""

from pathlib import Path
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
    exit_for_health,
    output_format,
    own_workspace,
    workspace,
)
from modelctl.core.errors import UsageError
from modelctl.core.hashing import ALGORITHMS
from modelctl.output import Format
from modelctl.store.storage import WRITABLE_ROOTS

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
    from modelctl.store.verify import LEVELS, verify_models

    fmt = output_format(as_json=as_json)
    if level is not None and level not in LEVELS:
        raise typer.BadParameter(f"choose one of {', '.join(LEVELS)}", param_hint="--level")
    ws = workspace(ctx, config)
    specs = ws.registry.select(models or (), size, everything)
    report = verify_models(ws, specs, level=level, use_cache=not no_cache, explicit=bool(models))
    output.render(report, fmt)
    exit_for_health(report.health, strict=strict)


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
    import sys

    from modelctl.ops.clean import CleanReport, clean_selection, plan_clean, run_clean
    from modelctl.store.storage import ROOT_NAMES

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


def checksum_command(
    files: Annotated[list[Path], typer.Argument(help="Files to hash.", show_default=False)],
    algo: Annotated[str, typer.Option(help=" | ".join(ALGORITHMS) + ".")] = "sha256",
) -> None:
    """Print `algo:hex  path` lines, ready to paste into a model's `checksums:` pins."""
    from modelctl.store.verify import checksum_files

    if algo not in ALGORITHMS:
        raise typer.BadParameter(f"choose one of {', '.join(ALGORITHMS)}", param_hint="--algo")
    for path, digest in checksum_files(files, algo):
        output.checksum_line(algo, digest, path)


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
    from modelctl.core.lockfile import lock_differences, read_lock
    from modelctl.core.settings import download_options
    from modelctl.ops.locking import LockCheck, LockReport, lock_models

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
