"""Seed 000 (MMParser's model management) examples, as its document writes them, with the import
line changed (`utils.model_manager` / `configs.model_config` → `modelctl`).

The model id is the test's ("qwen25-vl-3b" names a model of the fixture Hub here); calls,
arguments and the evaluator's pattern are the seed's text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import write
from tests.hubserver import HubServer, Repo

REGISTRY = """\
models:
  - id: qwen25-vl-3b
    repo_id: Qwen/Qwen2.5-VL-3B-Instruct
    files: [config.json, model.safetensors, tokenizer.json]
"""
FILES = {"config.json": b'{"model_type": "qwen2_5_vl"}', "model.safetensors": b"", "tokenizer.json": b"{}"}


@pytest.fixture
def qwen(project: Path, hub: HubServer) -> Path:
    from tests.hubserver import safetensors_bytes

    files = {**FILES, "model.safetensors": safetensors_bytes({"w": ("F32", [32, 32])})}
    hub.add(Repo("Qwen/Qwen2.5-VL-3B-Instruct", files))
    write(project / "models.yaml", REGISTRY)
    return project


def test_basic_model_validation_and_recovery(
    qwen: Path, hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelctl import ModelManager

    manager = ModelManager()

    # Check if a model is valid
    is_valid, issues = manager.validate_model_integrity("qwen25-vl-3b")
    if not is_valid:
        print(f"Model has issues: {issues}")

    assert is_valid is False and issues == ["qwen25-vl-3b: not downloaded in any root"]

    # This will automatically re-download if corrupted
    success = manager.ensure_model_available("qwen25-vl-3b")
    if success:
        print("Model is ready to use")
    else:
        print("Failed to ensure model availability")

    assert capsys.readouterr().out.splitlines()[-1] == "Model is ready to use"
    folder = tmp_path / "home" / "Qwen--Qwen2.5-VL-3B-Instruct"
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))  # bit rot in the weights
    (folder / "tokenizer.json").unlink()
    is_valid, issues = manager.validate_model_integrity("qwen25-vl-3b")
    assert is_valid is False
    assert "Missing required file: tokenizer.json" in issues
    assert any(i.startswith("model.safetensors: ") for i in issues), issues
    assert manager.ensure_model_available("qwen25-vl-3b") is True
    assert manager.validate_model_integrity("qwen25-vl-3b") == (True, [])
    assert weights.read_bytes() == hub.repos["Qwen/Qwen2.5-VL-3B-Instruct"].files["model.safetensors"]

    # Get model information
    info = manager.get_model_info("qwen25-vl-3b")
    assert (info["id"], info["status"], info["path"]) == ("qwen25-vl-3b", "present", str(folder))
    assert info["spec"]["repo_id"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert sorted(f["path"] for f in info["files"]) == sorted(FILES)


def test_a_failed_repair_answers_false_and_logs_why(
    qwen: Path, hub: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    from modelctl import ModelManager

    hub.repos["Qwen/Qwen2.5-VL-3B-Instruct"].files.pop("tokenizer.json")  # the Hub lost a file
    manager = ModelManager()
    with caplog.at_level(logging.ERROR, logger="modelctl"):
        success = manager.ensure_model_available("qwen25-vl-3b")
    assert success is False
    assert any("qwen25-vl-3b is not available" in r.getMessage() for r in caplog.records), caplog.text
    assert manager.ensure_model_available("no-such-model") is False


def test_the_config_modules_helpers(qwen: Path, hub: HubServer) -> None:
    from modelctl import ensure_model_available, validate_model_path

    # Validate model (with corruption detection)
    is_valid = validate_model_path("qwen25-vl-3b")

    # Ensure model availability (with auto re-download)
    success = ensure_model_available("qwen25-vl-3b")

    assert (is_valid, success) == (False, True)
    assert validate_model_path("qwen25-vl-3b") is True


def test_the_evaluator_pattern(qwen: Path, hub: HubServer) -> None:
    from modelctl import ModelManager

    class Config:
        model_name = "qwen25-vl-3b"

    class MyEvaluator:  # the seed's BaseEvaluator method, its body as written
        def __init__(self) -> None:
            self.config = Config()
            self.manager = ModelManager()

        def ensure_model_availability(self, name: str) -> bool:
            return self.manager.ensure_model_available(name)

        def load_model(self) -> None:
            # Ensure model is available before loading
            if not self.ensure_model_availability(self.config.model_name):
                raise RuntimeError("Failed to ensure model availability")

    MyEvaluator().load_model()
    assert ModelManager().validate_model_integrity("qwen25-vl-3b") == (True, [])
