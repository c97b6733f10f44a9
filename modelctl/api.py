"""The Python API: the same functions the CLI calls, for services, evaluators and notebooks.

    from modelctl import ModelManager, ensure_models

    manager = ModelManager.from_config()          # registry chosen as the CLI chooses it
    path = manager.ensure_model("fastvlm-0.5b")   # verified, repaired if needed → its folder
    paths = ensure_models()                       # {id: folder} for every model of the registry

Errors are the CLI's: ConfigurationError, MissingModelError, BadChecksumError, DownloadError,
NotEnoughSpaceError (all ModelctlError, each with the CLI's exit code). Nothing here prints.
Threads may share a ModelManager: ensures of one model run one at a time, and a later one finds
the model already repaired.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from modelctl.download import (
    DownloadEvents,
    DownloadReport,
    NullEvents,
    failure_error,
    plan_downloads,
    run_downloads,
)
from modelctl.ensure import EnsureReport
from modelctl.ensure import ensure_models as _ensure
from modelctl.errors import BadChecksumError, MissingModelError
from modelctl.lockfile import locked_for
from modelctl.registry import ModelSpec, Registry
from modelctl.settings import DownloadOptions, download_options
from modelctl.verify import VerifyReport, verify_models
from modelctl.workspace import PRESENT, ModelState, Workspace, lock_in_force, model_state, open_workspace

log = logging.getLogger(__name__)


class ModelManager:
    """A registry and its storage roots, with the operations of the CLI as methods."""

    def __init__(
        self,
        workspace: Workspace,
        options: DownloadOptions | None = None,
        events: DownloadEvents | None = None,
    ) -> None:
        self.workspace = workspace
        self.options = options or download_options()
        self.events: DownloadEvents = events or NullEvents()

    @classmethod
    def from_config(
        cls,
        path: str | Path | None = None,
        *,
        endpoint: str | Sequence[str] | None = None,
        token: str | None = None,
        offline: bool = False,
        retries: int | None = None,
        timeout: float | None = None,
        max_workers: int = 4,
        connections: int | None = None,
    ) -> ModelManager:
        """Open a registry (path, else MODELCTL_CONFIG, CI_MINIMAL_MODELS, ./models.yaml, bundled).

        endpoint: one Hub URL or an ordered list (fail-over); the rest as the CLI's options
        (connections: None takes MODELCTL_CONNECTIONS, then the registry's, then 16).
        """
        workspace = open_workspace(Path(path) if path is not None else None)
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
        """The registry (the earlier model_manager module called it `config`)."""
        return self.workspace.registry

    def get_model_spec(self, model_id: str) -> ModelSpec:
        return self.workspace.registry.get(model_id)

    def _state(self, model_id: str) -> ModelState:
        spec = self.get_model_spec(model_id)
        lock = lock_in_force(self.workspace.registry)
        return model_state(spec, self.workspace.roots, locked_for(lock, spec) if lock else None)

    def is_cached(self, model_id: str) -> bool:
        """Whether every file of the model's commit is on disk and was verified as it is now.

        No hashing: a file changed since its last check makes this False (`verify` hashes it).
        """
        return self._state(model_id).status == PRESENT

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

    def download(self, ids: Sequence[str], *, force: bool = False) -> DownloadReport:
        options = replace(self.options, ids=tuple(ids), force=force)
        plan = plan_downloads(self.workspace, options, self.events)
        return run_downloads(plan, options, self.events)

    def verify(self, ids: Sequence[str] | None = None, *, use_cache: bool = True) -> VerifyReport:
        specs = self.workspace.registry.select(ids or ())
        return verify_models(self.workspace, specs, use_cache=use_cache, explicit=bool(ids))

    def ensure(
        self, ids: Sequence[str] | None = None, *, use_cache: bool = True, keep_going: bool = False
    ) -> EnsureReport:
        """Repair the models (all by default); a failed repair raises, or with keep_going is in `.failed`."""
        specs = self.workspace.registry.select(ids or ())
        return _ensure(
            self.workspace, specs, self.options, self.events, use_cache=use_cache, keep_going=keep_going
        )

    def ensure_model(self, model_id: str, *, use_cache: bool = True) -> Path:
        """Verify, repair if needed, and return the model's folder; BadChecksumError if still bad."""
        spec = self.get_model_spec(model_id)  # an id or a repo_id: the report is keyed by id
        return self._paths(self.ensure([spec.id], use_cache=use_cache))[spec.id]

    def ensure_all(self) -> dict[str, Path]:
        """ensure_model for every model of the registry → {id: folder}.

        An optional model that cannot be fetched is left out of the dict, with a warning logged
        (logger "modelctl.api"); a required one raises, after the others are ensured.
        """
        report = self.ensure([m.id for m in self.workspace.registry.models], keep_going=True)
        return self._paths(report)

    def _paths(self, report: EnsureReport) -> dict[str, Path]:
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
            raise BadChecksumError(f"Still broken after repair: {details}.")
        self.workspace = report.after.workspace
        return {v.spec.id: v.location.path for v in after if v.location is not None}


def ensure_models(config_path: str | Path | None = None) -> dict[str, Path]:
    """Every model of the registry on disk and verified → {id: folder} (model_manager's entry point)."""
    return ModelManager.from_config(config_path).ensure_all()


def is_cached(model_id: str, config_path: str | Path | None = None) -> bool:
    return ModelManager.from_config(config_path).is_cached(model_id)


def get_model_path(model_id: str, config_path: str | Path | None = None) -> Path:
    return ModelManager.from_config(config_path).get_model_path(model_id)


def download_model(model_id: str, config_path: str | Path | None = None) -> Path:
    """Download (resuming, verifying) one model and return its folder."""
    report = ModelManager.from_config(config_path).download([model_id])
    return report.models[0].folder


def verify_model(model_id: str, config_path: str | Path | None = None, *, level: str | None = None) -> bool:
    """True when the model is on disk and every check passes."""
    manager = ModelManager.from_config(config_path)
    spec = manager.get_model_spec(model_id)
    report = verify_models(manager.workspace, [spec], level=level, explicit=True)
    return report.models[0].is_ok
