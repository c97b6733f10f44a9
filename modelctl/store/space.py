"""Disk space: refuse a plan before its first byte when a target filesystem cannot hold it."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from modelctl.core.errors import NotEnoughSpaceError, option

HEADROOM = 64 * 1024 * 1024  # bytes kept free beyond the plan on every target filesystem


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_space(needs: Iterable[tuple[str, Path, int]]) -> None:
    """Refuse (exit 5) when a filesystem cannot hold what is planned for it.

    needs: (root name, model folder, bytes to write there) per model. Folders that do not exist
    yet count on the filesystem of their nearest existing parent; models on one filesystem add up.
    """
    anchors: dict[int, Path] = {}
    needed: dict[int, int] = {}
    roots: dict[int, set[str]] = {}
    for root, folder, bytes_needed in needs:
        if not bytes_needed:
            continue
        anchor = _existing_ancestor(folder)
        device = anchor.stat().st_dev
        anchors.setdefault(device, anchor)
        needed[device] = needed.get(device, 0) + bytes_needed
        roots.setdefault(device, set()).add(root)
    rows = []
    for device, bytes_needed in needed.items():
        free = shutil.disk_usage(anchors[device]).free
        if bytes_needed + HEADROOM > free:
            rows.append(
                f"{'/'.join(sorted(roots[device])):<10}{anchors[device]!s:<40}{bytes_needed:>18,}{free:>18,}"
            )
    if rows:
        header = f"{'root':<10}{'path':<40}{'needed bytes':>18}{'free bytes':>18}"
        raise NotEnoughSpaceError(
            f"Not enough disk space for the download plan (plus {HEADROOM // 2**20} MiB headroom):\n"
            + "\n".join([header, *rows]),
            hint="Free space there, or download to another disk with {0}.",
            steps=(option("to", "PATH"),),
            api_hint="Free space there, or download to another disk: ModelManager.from_config(cache_dir=...).",
        )
