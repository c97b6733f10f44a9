"""Plans and runs the commands over the registry and the storage roots.

Every function here returns frozen dataclasses (findings) or raises ModelctlError (failures);
nothing prints. The CLI renders what these return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from modelctl.registry import ModelSpec, Registry, load_registry
from modelctl.storage import (
    LocalFile,
    Location,
    Manifest,
    RootState,
    locate,
    missing_files,
    probe_root,
    read_manifest,
    resolve_roots,
)

MISSING, PRESENT, PARTIAL = "missing", "present", "partial"


class Workspace(NamedTuple):
    """The registry in use and the state of its storage roots, looked at once per command."""

    registry: Registry
    roots: tuple[RootState, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{s.root.name} root skipped: {s.problem}" for s in self.roots if s.problem is not None)


def open_workspace(
    config: Path | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Workspace:
    """Load the registry (as find_registry chooses it) and probe its roots."""
    registry = load_registry(config, cwd=cwd, environ=environ)
    roots = tuple(probe_root(r) for r in resolve_roots(registry.storage, environ))
    return Workspace(registry, roots)


class ModelState(NamedTuple):
    """A model as far as it can be known without hashing or network."""

    spec: ModelSpec
    status: str  # missing | present | partial
    locations: tuple[Location, ...]  # one per root, in precedence order
    missing: tuple[str, ...]  # expected names/globs with no file on disk
    mismatched: tuple[str, ...] = ()  # files whose size differs from the manifest's
    manifest: Manifest | None = None

    @property
    def found(self) -> Location | None:
        return next((loc for loc in self.locations if loc.exists), None)

    @property
    def shadowed(self) -> tuple[Location, ...]:
        found = self.found
        return tuple(loc for loc in self.locations if loc.exists and loc is not found)

    @property
    def files(self) -> tuple[LocalFile, ...]:
        found = self.found
        return found.scan.files if found and found.scan else ()

    @property
    def partials(self) -> tuple[str, ...]:
        found = self.found
        return found.scan.partials if found and found.scan else ()

    @property
    def bytes(self) -> int:
        found = self.found
        return found.scan.bytes if found and found.scan else 0

    @property
    def warnings(self) -> tuple[str, ...]:
        out = [f"{self.spec.id}: {loc.problem}" for loc in self.locations if loc.problem]
        found = self.found
        if found and found.scan:
            out += [f"{self.spec.id}: {item}" for item in found.scan.skipped]
        return tuple(out)


def model_state(spec: ModelSpec, roots: Sequence[RootState]) -> ModelState:
    """Where the model is, and whether its expected files are all there."""
    locations = locate(spec, roots)
    found = next((loc for loc in locations if loc.exists), None)
    if found is None or found.scan is None:
        return ModelState(spec, MISSING, locations, ())
    scan = found.scan
    manifest = read_manifest(found.path)
    mismatched: tuple[str, ...] = ()
    if manifest is not None:  # what the last download fetched is what must be there
        sizes = {f.path: f.size for f in scan.files}
        missing = tuple(f.path for f in manifest.files if f.path not in sizes)
        mismatched = tuple(f.path for f in manifest.files if f.path in sizes and sizes[f.path] != f.size)
    else:
        missing = missing_files(spec, scan)
    if not scan.files and not missing:
        missing = ("(any file: the folder is empty)",)
    status = PARTIAL if missing or mismatched or scan.partials else PRESENT
    return ModelState(spec, status, locations, missing, mismatched, manifest)


class ListReport(NamedTuple):
    """The answer of `modelctl list` and `modelctl info`."""

    workspace: Workspace
    models: tuple[ModelState, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.workspace.warnings + tuple(w for m in self.models for w in m.warnings)

    def count_status(self, status: str) -> int:
        return sum(1 for m in self.models if m.status == status)

    @property
    def required_missing(self) -> int:
        return sum(1 for m in self.models if m.spec.required and m.status != PRESENT)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.models)


def list_models(
    workspace: Workspace,
    ids: Sequence[str] = (),
    size: str | None = None,
) -> ListReport:
    """State of the selected models (all when nothing is named)."""
    specs = workspace.registry.select(ids, size)
    return ListReport(workspace, tuple(model_state(s, workspace.roots) for s in specs))
