"""The Python API: the same functions the CLI calls, for services, evaluators and notebooks.

    from modelctl import ModelManager, ensure_models

    manager = ModelManager.from_config()          # registry chosen as the CLI chooses it
    path = manager.ensure_model("fastvlm-0.5b")   # verified, repaired if needed → its folder
    paths = ensure_models()                       # {id: folder} for every model of the registry

Seed 003's module-level calls take a ModelSpec and a cache folder (`is_cached(spec, cache_dir)`,
`get_model_path`, `download_model`) or a model folder (`verify_model(path, level)`); given a model
id (and optionally a registry path) instead, each works on the registry, as the CLI does.

Errors are the CLI's: ConfigurationError, MissingModelError, BadChecksumError, DownloadError,
NotEnoughSpaceError (all ModelctlError, each with the CLI's exit code). Nothing here prints.
Threads may share a ModelManager: ensures of one model run one at a time, and a later one finds
the model already repaired.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, Union

from modelctl.core.errors import (
    BadChecksumError,
    ConfigurationError,
    MissingModelError,
    ModelctlError,
    Step,
    speak,
)
from modelctl.core.lockfile import locked_for
from modelctl.core.record import read_record
from modelctl.core.registry import (
    VERIFY_LEVELS,
    ModelSpec,
    Registry,
    RegistrySource,
    StorageConfig,
    bundled_registry,
)
from modelctl.core.settings import DownloadOptions, download_options
from modelctl.fetch.download import (
    OFFLINE_API_HINT,
    DownloadEvents,
    DownloadReport,
    NullEvents,
    failure_error,
    plan_downloads,
    run_downloads,
)
from modelctl.ops.ensure import EnsureReport
from modelctl.ops.ensure import ensure_models as _ensure
from modelctl.output.console import cli_words
from modelctl.output.contract import info_json
from modelctl.store.storage import folder_names, resolve_roots
from modelctl.store.verify import BAD, Finding, VerifyReport, verify_models
from modelctl.store.workspace import (
    PRESENT,
    ModelState,
    Workspace,
    list_models,
    lock_in_force,
    model_state,
    open_workspace,
    workspace_of,
)

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def _api_words(step: Step) -> str:
    """A hint's step in the API's terms: an option is an argument (`to=PATH`), a command the CLI's."""
    if step.kind == "option":
        return f"{step.name.replace('-', '_')}={step.value or '...'}"
    return cli_words(step)  # a command to run is the command line's


speak(_api_words, unless_spoken=True)  # text the core words while the API runs: unless the CLI runs it


def _in_api_terms(function: Callable[P, T]) -> Callable[P, T]:
    """Errors leave the API with the next step in its terms (ModelctlError.api_hint), not CLI flags."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except ModelctlError as err:
            err.in_api_terms(_api_words)
            raise

    return wrapper


class ModelManager:
    """A registry and its storage roots, with the operations of the CLI as methods."""

    def __init__(
        self,
        workspace: Workspace | None = None,
        options: DownloadOptions | None = None,
        events: DownloadEvents | None = None,
    ) -> None:
        """workspace: None finds the registry as the CLI does (as from_config() with no path)."""
        self.workspace = workspace if workspace is not None else open_workspace()
        self.options = options or download_options()
        self.events: DownloadEvents = events or NullEvents()

    @classmethod
    @_in_api_terms
    def from_config(
        cls,
        path: PathLike | None = None,
        *,
        cache_dir: PathLike | None = None,
        endpoint: str | Sequence[str] | None = None,
        token: str | None = None,
        offline: bool = False,
        retries: int | None = None,
        timeout: float | None = None,
        max_workers: int = 4,
        connections: int | None = None,
    ) -> ModelManager:
        """Open a registry (path, else MODELCTL_CONFIG, CI_MINIMAL_MODELS, ./models.yaml, bundled).

        cache_dir: where new downloads go instead of what the registry says (its `cache_dir:` or
        `download: to:`). endpoint: one Hub URL or an ordered list (fail-over); the rest as the
        CLI's options (connections: None takes MODELCTL_CONNECTIONS, then the registry's, then 16).
        """
        workspace = open_workspace(Path(path) if path is not None else None)
        if cache_dir is not None:
            workspace = workspace_of(_downloading_to(workspace.registry, Path(cache_dir)))
        endpoints = (endpoint,) if isinstance(endpoint, str) else tuple(endpoint or ())
        options = download_options(
            endpoints=endpoints,
            token=token,
            offline=offline,
            retries=retries,
            timeout=timeout,
            max_workers=max_workers,
            connections=connections,
        )
        return cls(workspace, options)

    @property
    def config(self) -> Registry:
        """The registry: seed 003's ModelsConfig (`.models`, `.cache_dir`, `.verify`) and more."""
        return self.workspace.registry

    @_in_api_terms
    def get_model_spec(self, model_id: str) -> ModelSpec:
        return self.workspace.registry.get(model_id)

    def _state(self, model_id: str) -> ModelState:
        spec = self.get_model_spec(model_id)
        lock = lock_in_force(self.workspace.registry)
        return model_state(spec, self.workspace.roots, locked_for(lock, spec) if lock else None)

    @_in_api_terms
    def is_cached(self, model_id: str) -> bool:
        """Whether every file of the model's commit is on disk and was verified as it is now.

        No hashing: a file changed since its last check makes this False (`verify` hashes it).
        """
        return self._state(model_id).status == PRESENT

    @_in_api_terms
    def get_model_path(self, model_id: str) -> Path:
        """The folder of the complete copy in use.

        MissingModelError if the model is in no root; BadChecksumError if the copy is incomplete,
        unverified or known bad (ensure_model repairs it).
        """
        state = self._state(model_id)
        if state.found is None:
            raise MissingModelError(
                f"{model_id} is not on disk in any storage root.",
                hint=f"Run `modelctl download {model_id}` or ModelManager.ensure_model('{model_id}').",
            )
        if state.status != PRESENT:
            problems = [*state.missing, *state.mismatched, *state.bad, *state.unchecked]
            raise BadChecksumError(
                f"{model_id} at {state.found.path} is {state.status}"
                + (f": {', '.join(problems[:5])}" if problems else "")
                + ".",
                hint=f"Call ModelManager.ensure_model('{model_id}') or run `modelctl ensure {model_id}`.",
            )
        return state.found.path

    @_in_api_terms
    def download(self, ids: Sequence[str], *, force: bool = False) -> DownloadReport:
        options = replace(self.options, ids=tuple(ids), force=force)
        plan = plan_downloads(self.workspace, options, self.events)
        return run_downloads(plan, options, self.events)

    @_in_api_terms
    def verify(self, ids: Sequence[str] | None = None, *, use_cache: bool = True) -> VerifyReport:
        specs = self.workspace.registry.select(ids or ())
        return verify_models(self.workspace, specs, use_cache=use_cache, explicit=bool(ids))

    @_in_api_terms
    def ensure(
        self, ids: Sequence[str] | None = None, *, use_cache: bool = True, keep_going: bool = False
    ) -> EnsureReport:
        """Repair the models (all by default); a failed repair raises, or with keep_going is in `.failed`."""
        specs = self.workspace.registry.select(ids or ())
        return _ensure(
            self.workspace, specs, self.options, self.events, use_cache=use_cache, keep_going=keep_going
        )

    @_in_api_terms
    def ensure_model(self, model_id: str, *, use_cache: bool = True) -> Path:
        """Verify, repair if needed, and return the model's folder; BadChecksumError if still bad."""
        spec = self.get_model_spec(model_id)  # an id or a repo_id: the report is keyed by id
        return self.paths_of(self.ensure([spec.id], use_cache=use_cache))[spec.id]

    @_in_api_terms
    def ensure_all(self) -> dict[str, Path]:
        """ensure_model for every model of the registry → {id: folder}.

        An optional model that cannot be fetched is left out of the dict, with a warning logged
        (logger "modelctl.api"); a required one raises, after the others are ensured.
        """
        report = self.ensure([m.id for m in self.workspace.registry.models], keep_going=True)
        return self.paths_of(report)

    # Seed 000 (MMParser's utils/model_manager.py) names: answers instead of exceptions.

    @_in_api_terms
    def validate_model_integrity(self, model_id: str) -> tuple[bool, list[str]]:
        """(is_valid, issues): verify the model's copy in use; one readable line per problem, each
        naming its file ("Missing required file: model.safetensors"). Configuration errors raise."""
        spec = self.get_model_spec(model_id)
        verdict = self.verify([spec.id]).models[0]
        issues = [_issue(spec, f) for f in verdict.findings if f.status == BAD]
        return (verdict.is_present and verdict.is_ok), issues

    def ensure_model_available(self, model_id: str) -> bool:
        """ensure_model that answers: True when the model is on disk and verified (repaired if it had
        to be), False when it could not be (why is logged as an error on logger "modelctl.api")."""
        try:
            self.ensure_model(model_id)
        except ModelctlError as err:
            log.error(
                "%s is not available: %s%s", model_id, err.message, f" ({err.hint})" if err.hint else ""
            )
            return False
        return True

    @_in_api_terms
    def get_model_info(self, model_id: str) -> dict[str, Any]:
        """The model as `modelctl info MODEL --json` gives it: spec, status, where it is, its
        copies under each root, files, record. No hashing, no network."""
        spec = self.get_model_spec(model_id)
        item: dict[str, Any] = info_json(list_models(self.workspace, ids=[spec.id]))["models"][0]
        return item

    @_in_api_terms
    def paths_of(self, report: EnsureReport) -> dict[str, Path]:
        """{id: folder} of an ensure report's models; raises as ensure_all does for a failure."""
        required = [f for f in report.failed if f.spec.required]
        if required:
            done = [v.spec.id for v in report.after.models if v.is_ok]
            raise failure_error(report.failed, done, "ensured")
        for f in report.failed:
            log.warning("%s (optional) is left out: %s", f.spec.id, f.error.message)
        left_out = {f.spec.id for f in report.failed}
        after = [v for v in report.after.models if v.spec.id not in left_out]
        bad = [v for v in after if not v.is_ok or v.location is None]
        if bad:
            details = "; ".join(f"{v.spec.id}: {', '.join(v.bad_files) or 'not on disk'}" for v in bad)
            ids = [v.spec.id for v in bad]
            if self.options.offline:  # ensure neither downloads nor repairs offline
                raise MissingModelError(
                    f"Offline mode is on, so nothing was downloaded or repaired: {details}.",
                    hint=f"Connect and run `HF_HUB_OFFLINE=0 modelctl ensure {' '.join(ids)}`.",
                    api_hint=OFFLINE_API_HINT,
                )
            if all(v.location is None for v in bad):
                raise MissingModelError(
                    f"Still not on disk after the download: {details}.",
                    hint=f"Run `modelctl download {' '.join(ids)}` and read its errors.",
                    api_hint=f"Call ModelManager.download({ids!r}) to see why it is not fetched.",
                )
            raise BadChecksumError(
                f"Still broken after repair: {details}.",
                api_hint=f"Call ModelManager.verify({ids!r}, use_cache=False) for each file's finding; "
                "a pin in the registry's `checksums:` that the Hub's bytes do not match cannot be repaired.",
            )
        self.workspace = report.after.workspace
        return {v.spec.id: v.location.path for v in after if v.location is not None}


@_in_api_terms
def ensure_models(config_path: PathLike | None = None, cache_dir: PathLike | None = None) -> dict[str, Path]:
    """Every model of the registry on disk and verified → {id: folder} (seed 003's entry point).

    cache_dir: where new downloads go, instead of the registry's `cache_dir:`.
    """
    return ModelManager.from_config(config_path, cache_dir=cache_dir).ensure_all()


@_in_api_terms
def is_cached(model: ModelSpec | str, where: PathLike | None = None) -> bool:
    """Whether every file of the model's commit is on disk and verified as it is now (no hashing).

    is_cached(spec, cache_dir): seed 003's form, the model in cache_dir or another root.
    is_cached(model_id, config_path=None): the model of a registry.
    """
    if isinstance(model, ModelSpec):
        return spec_manager(model, where).is_cached(model.id)
    return ModelManager.from_config(where).is_cached(model)


@_in_api_terms
def get_model_path(model: ModelSpec | str, where: PathLike | None = None) -> Path:
    """The folder of the model.

    get_model_path(spec, cache_dir): seed 003's form: the complete copy in use when there is one,
    else the folder in cache_dir it is (or will be) downloaded to; never raises for absence.
    get_model_path(model_id, config_path=None): the complete copy in use, else MissingModelError
    or BadChecksumError (ModelManager.get_model_path).
    """
    if not isinstance(model, ModelSpec):
        return ModelManager.from_config(where).get_model_path(model)
    manager = spec_manager(model, where)
    state = manager._state(model.id)
    if state.found is not None and state.status == PRESENT:
        return state.found.path
    cache = next(r.root for r in manager.workspace.roots if r.root.name == manager.config.download_to)
    return cache.path / folder_names(_frozen(model), cache)[0]


@_in_api_terms
def download_model(model: ModelSpec | str, where: PathLike | None = None) -> Path:
    """Download (resuming, verifying) one model and return its folder.

    download_model(spec, cache_dir): seed 003's form, into cache_dir; download_model(model_id,
    config_path=None): a model of the registry, where the registry sends downloads.
    """
    manager = spec_manager(model, where) if isinstance(model, ModelSpec) else ModelManager.from_config(where)
    report = manager.download([model.id if isinstance(model, ModelSpec) else model])
    return report.models[0].folder


@_in_api_terms
def verify_model(
    model: PathLike, verify_level: str | None = None, *, config_path: PathLike | None = None
) -> bool:
    """True when the model is on disk and every check passes at verify_level (none, size, sha256).

    verify_model(path, verify_level): seed 003's form, for a model folder (a Path, or a string
    naming an existing folder): judged by the model of the registry whose copy it is, else by the
    folder's own record (every file it lists that is on disk or was verified there).
    verify_model(model_id, level, config_path=None): a model of the registry (its copy in use).
    """
    if verify_level is not None and verify_level not in VERIFY_LEVELS:
        raise ConfigurationError(
            f"verify_level {verify_level!r} is not one of {', '.join(VERIFY_LEVELS)}.",
            hint="verify_model(path, 'sha256') hashes every file; 'size' checks sizes only.",
        )
    folder = Path(model)
    if isinstance(model, str) and not folder.is_dir():
        manager = ModelManager.from_config(config_path)
        spec = manager.get_model_spec(model)
        report = verify_models(manager.workspace, [spec], level=verify_level, explicit=True)
        return report.models[0].is_ok
    folder = folder.expanduser().absolute()
    workspace, spec = _folder_model(folder, config_path)
    report = verify_models(workspace, [spec], level=verify_level, explicit=True)
    verdict = report.models[0]
    return verdict.is_ok and verdict.location is not None and verdict.location.path == folder


@_in_api_terms
def validate_model_path(model_id: str, config_path: PathLike | None = None) -> bool:
    """Seed 000's configs helper: whether the model is on disk and passes verification."""
    return ModelManager.from_config(config_path).validate_model_integrity(model_id)[0]


def ensure_model_available(model_id: str, config_path: PathLike | None = None) -> bool:
    """Seed 000's configs helper: ModelManager.ensure_model_available on the registry in use."""
    return ModelManager.from_config(config_path).ensure_model_available(model_id)


def _issue(spec: ModelSpec, finding: Finding) -> str:
    """One problem as a line a person reads, naming the file (seed 000's wording where it had one)."""
    if not finding.path:
        return f"{spec.id}: {finding.detail or finding.check}"
    if finding.check == "present":
        return f"Missing required file: {finding.path}"
    return f"{finding.path}: {finding.check} check failed" + (f": {finding.detail}" if finding.detail else "")


def _frozen(spec: ModelSpec) -> ModelSpec:
    """A spec made by hand may carry a list of files (seed 003's ModelSpec did): a tuple, as loaded."""
    return spec._replace(files=tuple(spec.files))


def _downloading_to(registry: Registry, cache_dir: Path) -> Registry:
    """The registry with new downloads going to cache_dir: the root it is, else the project root."""
    cache_dir = cache_dir.expanduser().absolute()
    for root in resolve_roots(registry.storage):
        if root.path == cache_dir and not root.is_read_only:
            return registry._replace(download_to=root.name)
    return registry._replace(storage=registry.storage.with_paths(project=cache_dir), download_to="project")


def spec_manager(
    spec: ModelSpec, cache_dir: PathLike | None, options: DownloadOptions | None = None
) -> ModelManager:
    """A manager for one hand-given spec, as a models.yaml beside cache_dir naming only it would be.

    No registry file is read (seed 003 passes the spec around without its config): the user
    root as always, the project root cache_dir (downloads go there), `checkpoints/` beside it;
    the Hub from HF_ENDPOINT, as for the CLI. cache_dir None: the user root.
    """
    spec = _frozen(spec)
    storage = StorageConfig.beside(Path.cwd())
    registry = Registry(RegistrySource(bundled_registry(), "api"), storage, "sha256", (spec,))
    if cache_dir is not None:
        cache = Path(cache_dir).expanduser().absolute()
        registry = registry._replace(
            storage=storage.with_paths(project=cache, legacy=cache.parent / "checkpoints")
        )
        registry = _downloading_to(registry, cache)
    else:
        registry = registry._replace(download_to="user")
    return ModelManager(workspace_of(registry), options)


def _folder_model(folder: Path, config_path: PathLike | None) -> tuple[Workspace, ModelSpec]:
    """The workspace and spec that judge the model folder `folder`.

    The registry's model whose copy it is (in any root), else one made from the folder's record:
    its repo and revision, and as its files every file the record lists that is on disk or was
    verified there (a file that was verified and is gone is missing; one never fetched is not).
    """
    try:
        workspace = open_workspace(Path(config_path) if config_path is not None else None)
    except ModelctlError:
        workspace = None
    if workspace is not None:
        lock = lock_in_force(workspace.registry)
        for spec in workspace.registry.models:
            state = model_state(spec, workspace.roots, locked_for(lock, spec) if lock else None)
            for loc in state.locations:
                if loc.path == folder and loc.exists and not loc.is_other:
                    roots = tuple(r for r in workspace.roots if r.root == loc.root)
                    return Workspace(workspace.registry, roots), spec
    record = read_record(folder)
    if record is None:
        raise MissingModelError(
            f"{folder} holds no model modelctl knows: no registry model lives there and it has no "
            "record (.modelctl/manifest.json).",
            hint="Pass the model id instead (verify_model('my-model')), or download it with "
            "ModelManager.ensure_model first.",
        )
    files = tuple(f.path for f in record.files if f.checked is not None or (folder / f.path).is_file())
    spec = ModelSpec(folder.name, record.repo_id, record.revision, files=files, local_dir=folder.name)
    storage = StorageConfig.beside(folder.parent, project=folder.parent, legacy=folder.parent)
    registry = Registry(RegistrySource(bundled_registry(), "api"), storage, "sha256", (spec,))
    roots = tuple(r for r in workspace_of(registry).roots if r.root.name == "project")
    return Workspace(registry, roots), spec
