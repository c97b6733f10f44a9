"""Seed 003 (HF Model Manager) as its team set it up: config/model_manager/, `cache_dir:`, CI mode.

The seed keeps models.yaml and models.minimal.yaml in config/model_manager/, names the full one
with --config, selects the minimal set with CI_MINIMAL_MODELS, and means by `cache_dir: models`
the folder downloads go to.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelctl.core.registry import ROOT_KINDS
from tests.conftest import Run, write
from tests.hubserver import HubServer
from tests.process import assert_complete, files_of

SEED_CONFIG = """\
# Cache directory for downloaded models
cache_dir: "models"

# Verification level: "none", "size", or "sha256"
verify: "sha256"

models:
  - id: my-model
    repo_id: org/tiny
    revision: main
    local_dir: custom-name
    files:
      - config.json
      - model.safetensors
"""


@pytest.fixture
def seed_project(project: Path) -> Path:
    """config/model_manager/ with the seed's schema example and a minimal set of the same model."""
    config = project / "config" / "model_manager"
    write(config / "models.yaml", SEED_CONFIG)
    write(config / "models.minimal.yaml", SEED_CONFIG)
    return config


def test_cache_dir_is_where_downloads_go(
    cli: Run, hub: HubServer, seed_project: Path, tmp_path: Path
) -> None:
    config = str(seed_project / "models.yaml")
    cli.json("--config", config, "download", "--all")
    folder = seed_project / "models" / "custom-name"  # relative to the registry, as storage paths are
    assert_complete(
        folder, {n: d for n, d in files_of(hub).items() if n in ("config.json", "model.safetensors")}
    )
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())  # not the user root
    info = cli.json("--config", config, "info", "my-model")["models"][0]
    assert (info["status"], info["root"], info["path"]) == ("present", "project", str(folder))


def test_download_to_names_the_root_and_is_validated(cli: Run, hub: HubServer, project: Path) -> None:
    write(project / "models.yaml", "download: {to: legacy}\nmodels:\n  - {id: tiny, repo_id: org/tiny}\n")
    cli.json("download", "tiny")
    assert (project / "checkpoints" / "tiny" / "config.json").is_file()
    write(project / "models.yaml", "download: {to: shared}\nmodels: []\n")
    bad = cli("list")
    writable = ", ".join(kind.name for kind in ROOT_KINDS if kind.is_writable)  # user, project, legacy
    assert bad.exit_code == 1 and "download.to" in bad.stderr and writable in bad.stderr


def test_ci_minimal_models_uses_the_minimal_file_beside_the_config(
    cli: Run, hub: HubServer, seed_project: Path
) -> None:
    write(seed_project / "models.minimal.yaml", SEED_CONFIG.replace("my-model", "ci-model"))
    env = {"CI_MINIMAL_MODELS": "true"}
    listed = cli.json("--config", str(seed_project / "models.yaml"), "list", env=env)
    assert listed["registry"]["path"] == str(seed_project / "models.minimal.yaml")
    assert [m["id"] for m in listed["models"]] == ["ci-model"]
    (seed_project / "models.minimal.yaml").unlink()
    missing = cli("--config", str(seed_project / "models.yaml"), "list", env=env)
    assert missing.exit_code == 1
    assert f"{seed_project / 'models.minimal.yaml'} does not exist" in " ".join(missing.stderr.split())


def test_without_a_registry_of_ones_own_nothing_is_fetched_or_removed(
    cli: Run, hub: HubServer, project: Path
) -> None:
    assert cli("list").exit_code == 0  # the bundled registry still lists
    for command in ("download", "ensure", "clean"):
        result = cli(command, "--json")
        assert result.exit_code == 1, (command, result.stdout)
        error = json.loads(result.stdout)["error"]
        assert error["message"].startswith(f"No models.yaml in {project} or any parent folder"), error
        assert "modelctl init" in error["hint"]
    assert hub.file_gets() == [] and not (project / "models").exists()
