"""Seed 003's "Programmatic Usage", as its README writes it, with `model_manager` → `modelctl`.

The model ids are the test's (the seed's own ids name real Hub repos); everything else, calls
and arguments, is the seed's text. Runs against the fixture Hub.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import put_files, write
from tests.hubserver import HubServer
from tests.seeds.test_seed_003_cli import SEED_CONFIG

WANTED = ("config.json", "model.safetensors")


@pytest.fixture
def config(project: Path, hub: HubServer) -> Path:
    return write(project / "config" / "model_manager" / "models.yaml", SEED_CONFIG)


def test_the_seeds_programmatic_usage_runs_as_written(
    config: Path, hub: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelctl import ModelManager, ensure_models

    # Simple: ensure all models are downloaded
    ensure_models("config/model_manager/models.yaml")

    # Advanced: use ModelManager for more control
    manager = ModelManager.from_config("config/model_manager/models.yaml")

    # Ensure all models
    paths = manager.ensure_all()
    print(paths)  # {'model_id': '/path/to/model', ...}

    # Ensure a specific model
    path = manager.ensure_model("my-model")

    # Check if a model is cached
    from modelctl import get_model_path, is_cached

    spec = manager.get_model_spec("my-model")
    if is_cached(spec, manager.config.cache_dir):
        print(f"Model cached at: {get_model_path(spec, manager.config.cache_dir)}")

    folder = config.parent / "models" / "custom-name"  # `cache_dir: "models"`, `local_dir: custom-name`
    assert paths == {"my-model": folder} and path == folder
    assert manager.config.cache_dir == config.parent / "models"
    assert manager.config.verify == "sha256" and [m.id for m in manager.config.models] == ["my-model"]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == list(WANTED)
    for name in WANTED:
        assert (folder / name).read_bytes() == hub.repos["org/tiny"].files[name]
    assert capsys.readouterr().out.splitlines()[-1] == f"Model cached at: {folder}"


def test_the_seeds_functions_on_a_hand_made_spec(project: Path, hub: HubServer) -> None:
    from modelctl import (
        ConfigurationError,
        ModelSpec,
        download_model,
        get_model_path,
        is_cached,
        verify_model,
    )

    spec = ModelSpec(id="my-model", repo_id="org/tiny", revision="main", files=["config.json"])
    cache_dir = project / "models"
    assert is_cached(spec, cache_dir) is False
    assert get_model_path(spec, cache_dir) == cache_dir / "my-model"  # where it will be: no error
    assert download_model(spec, cache_dir) == cache_dir / "my-model"
    assert (cache_dir / "my-model" / "config.json").read_bytes() == hub.repos["org/tiny"].files["config.json"]
    assert is_cached(spec, cache_dir) is True
    assert get_model_path(spec, cache_dir) == cache_dir / "my-model"
    assert verify_model(get_model_path(spec, cache_dir), "sha256") is True
    put_files(cache_dir / "my-model", {"config.json": b"{}"})  # an edit: same name, other bytes
    assert verify_model(get_model_path(spec, cache_dir), "size") is False
    assert verify_model(str(cache_dir / "my-model"), "sha256") is False
    (cache_dir / "my-model" / "config.json").unlink()  # verified there once, now gone: missing
    assert verify_model(cache_dir / "my-model", "none") is False
    with pytest.raises(ConfigurationError, match=r"verify_level 'full' is not one of none, size, sha256"):
        verify_model(cache_dir / "my-model", "full")


def test_the_seeds_exceptions_by_name() -> None:
    import modelctl

    for name in (
        "ModelManagerError",
        "MissingModelError",
        "BadChecksumError",
        "DownloadError",
        "ConfigurationError",
    ):
        assert issubclass(getattr(modelctl, name), modelctl.ModelManagerError), name
    with pytest.raises(modelctl.ConfigurationError):
        modelctl.ModelManager.from_config("no/such/models.yaml")
