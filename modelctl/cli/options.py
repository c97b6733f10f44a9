"""Options shared by several commands, defined once, and the helpers every command body uses.

No `from __future__ import annotations` in the cli package: Typer would then evaluate every
annotation string with typing.get_type_hints at each start (measured ~3 ms of `modelctl list`).
"""

from pathlib import Path
from typing import Annotated

import click
import typer

from modelctl.core.errors import ConfigurationError, ExitCode, ModelctlError
from modelctl.core.registry import REGISTRY_NAME, current_dir, load_registry
from modelctl.core.retry import DEFAULT_ATTEMPTS, DEFAULT_LOCK_TIMEOUT, DEFAULT_TIMEOUT
from modelctl.output import Format
from modelctl.store.workspace import Workspace, open_workspace


def _registry_for_completion() -> list[tuple[str, str, str | None]]:
    """(id, help, size) of the registry a command here would use; nothing if it cannot be read."""
    try:
        return [(m.id, m.description or m.repo_id, m.size) for m in load_registry().models]
    except ModelctlError:
        return []


def complete_model_ids(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of model ids (with their description as help)."""
    return [(mid, help_) for mid, help_, _ in _registry_for_completion() if mid.startswith(incomplete)]


def complete_sizes(incomplete: str) -> list[str]:
    """Shell completion of --size: the registry's size variants, and 'all'."""
    sizes = dict.fromkeys(size for _, _, size in _registry_for_completion() if size)
    return [s for s in [*sizes, "all"] if s.startswith(incomplete)]


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Registry file. Default: MODELCTL_CONFIG, else ./models.yaml or a parent's, else the bundled one.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="Print only each model's path (a terminal still shows progress bars)."
    ),
]
SizeOpt = Annotated[
    str | None,
    typer.Option(
        "--size",
        "-s",
        help="Size variant, e.g. 0.5b, or 'all'.",
        show_default=False,
        autocompletion=complete_sizes,
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every model in the registry.")]
ModelsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Model ids from the registry.", show_default=False, autocompletion=complete_model_ids
    ),
]


def _check_workers(value: int) -> int:
    # Checked here rather than with min=/max=: their `<int range> [1<=x<=64]` metavar squeezed every
    # option's help into a narrow column at 80 columns.
    if not 1 <= value <= 64:
        raise typer.BadParameter(f"{value} is not in the range 1 to 64.")
    return value


MaxWorkersOpt = Annotated[
    int, typer.Option(metavar="<int>", callback=_check_workers, help="Files fetched at once, 1 to 64.")
]


def _check_connections(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 64:
        raise typer.BadParameter(f"{value} is not in the range 1 to 64.")
    return value


ConnectionsOpt = Annotated[
    int | None,
    typer.Option(
        metavar="<int>",
        callback=_check_connections,
        help="Connections at once, shared by the files; big files are split among them (env "
        "MODELCTL_CONNECTIONS, registry `download: connections:`; default: from 4, doubled while it "
        "pays, up to 64).",
        show_default=False,
    ),
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="No network: use only what is on disk (also HF_HUB_OFFLINE=1).")
]
EndpointOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        help="Hub URL; repeat for fail-over, in order. Default: HF_ENDPOINT, else the registry's "
        "`endpoints:`, else https://huggingface.co.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(help="Hub token. Default: HF_TOKEN, else `hf auth login`'s.", show_default=False),
]
RetriesOpt = Annotated[
    int | None,
    typer.Option(
        help=f"Attempts per file (env MODELCTL_RETRIES, default {DEFAULT_ATTEMPTS}).", show_default=False
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Seconds to wait for a connection or data (env MODELCTL_TIMEOUT, default {DEFAULT_TIMEOUT:g}).",
        show_default=False,
    ),
]
LockTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Seconds to wait for another modelctl on the same model (env MODELCTL_LOCK_TIMEOUT, default {DEFAULT_LOCK_TIMEOUT:g}).",
        show_default=False,
    ),
]


FORMAT = "modelctl.format"  # the key of the command's Format in the click context's meta


def output_format(*, as_json: bool, quiet: bool = False) -> Format:
    """The one Format a command renders with, from its --json and -q flags (both: JSON, stderr silent).

    Each command resolves it first, and it is kept on the context, where the root group's error
    handling reads it (cli/__init__.py): a failure answers in the format the command answers in.
    """
    fmt = Format.JSON if as_json else Format.HUMAN
    fmt = fmt | Format.QUIET if quiet else fmt
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[FORMAT] = fmt
    return fmt


def workspace(ctx: typer.Context, config: Path | None) -> Workspace:
    """The registry (per-command --config, else the global one) and its roots."""
    chosen = config if config is not None else (ctx.obj or {}).get("config")
    return open_workspace(chosen)


def own_workspace(ctx: typer.Context, config: Path | None, command: str) -> Workspace:
    """The workspace of a command that writes or deletes model files: never the bundled registry.

    The bundled registry serves `list` and `info` anywhere; fetching or removing gigabytes for a
    registry the user never wrote (an empty folder, a mistyped cd) must be asked for by name.
    """
    ws = workspace(ctx, config)
    source = ws.registry.source
    if source.reason == "bundled":
        raise ConfigurationError(
            f"No {REGISTRY_NAME} in {current_dir()} or any parent folder: "
            f"`modelctl {command}` works on a registry of yours, not the one bundled in the package.",
            hint=f"Run `modelctl init` to write a {REGISTRY_NAME} here (then `modelctl add org/name`), "
            f"or pass --config FILE; `modelctl list` shows the bundled models.",
        )
    return ws


def exit_for_health(health: str, *, strict: bool) -> None:
    """healthy → 0; degraded (only optional models bad) → 0, or 3 with --strict; unhealthy → 3."""
    if health == "unhealthy" or (health == "degraded" and strict):
        raise typer.Exit(int(ExitCode.INTEGRITY))
