"""The Python API and ModelConfig, ModelLoader, with real loaders (safetensors' safe_open, json) on fixture models."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

import modelctl
from modelctl import (
    BadChecksumError,
    MissingModelError,
    ModelConfig,
    ModelLoader,
    ModelManager,
    ensure_models,
)
from tests.conftest import TINY
from tests.hubserver import HubServer

TWO = TINY + "  - id: opt\n    repo_id: org/tiny\n    required: false\n    local_dir: opt\n"


def load_safetensors(path: Path, **kwargs: Any) -> dict[str, Any]:
    with safe_open(str(path / "model.safetensors"), framework="numpy") as f:
        return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)


def load_json(path: Path, **kwargs: Any) -> Any:
    return json.loads((path / kwargs.get("name", "config.json")).read_text())


def test_manager_methods(hub: HubServer, registry: Callable[..., Path], tmp_path: Path) -> None:
    registry(TINY)
    manager = ModelManager.from_config()
    assert manager.get_model_spec("tiny").repo_id == "org/tiny"
    assert manager.is_cached("tiny") is False
    with pytest.raises(MissingModelError, match="tiny is not on disk"):
        manager.get_model_path("tiny")
    path = manager.ensure_model("tiny")
    assert path == tmp_path / "home" / "org--tiny"
    assert manager.is_cached("tiny") and manager.get_model_path("tiny") == path
    assert manager.verify().health == "healthy"
    assert manager.config.path.name == "models.yaml"
    assert modelctl.verify_model("tiny") is True
    assert modelctl.get_model_path("tiny") == path and modelctl.is_cached("tiny")


def test_ensure_models_returns_every_folder(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TWO)
    assert ensure_models() == {
        "tiny": tmp_path / "home" / "org--tiny",
        "opt": tmp_path / "home" / "org--tiny",
    }  # one repo: one folder


def test_loader_loads_with_real_loaders_and_reports_health(
    hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry(TWO)
    loader = ModelLoader()
    loader.register_model(ModelConfig("weights", model="tiny", loader_func=load_safetensors))
    loader.register_model(ModelConfig("config", model="opt", loader_func=load_json, required=False))
    assert loader.load_all_models() == {"weights": True, "config": True}
    tensors = loader.get_model("weights")
    assert tensors["embed.weight"].shape == (64, 16)
    assert loader.get_model("config")["model_type"] == "test"
    health = loader.get_health_status()
    assert health["status"] == "healthy" and health["loaded_count"] == 2 and health["errors"] == {}


def test_silent_corruption_seen_by_the_loader_is_repaired(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    path = ModelManager.from_config().ensure_model("tiny")
    ModelManager.from_config().verify()  # the verification cache now vouches for every file
    expected = hashlib.sha256(load_safetensors(path)["embed.weight"].tobytes()).hexdigest()

    def load_checked(path: Path) -> dict[str, Any]:
        """A loader that checks its weights, as some do: it sees what a stat-keyed cache cannot."""
        tensors = load_safetensors(path)
        if hashlib.sha256(tensors["embed.weight"].tobytes()).hexdigest() != expected:
            raise ValueError("corrupt tensor data in embed.weight")
        return tensors

    target = path / "model.safetensors"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-3000] ^= 0xFF  # inside embed.weight's data: the header and the size stay valid
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot: the stat looks unchanged
    hub.reset_counters()
    loader = ModelLoader(backoff_base=0.01)
    loader.register_model(ModelConfig("weights", model="tiny", loader_func=load_checked, retry_count=2))
    assert loader.load_all_models() == {"weights": True}
    assert loader.get_health_status()["repairs"] == {"weights": 1}
    assert target.read_bytes() == hub.repos["org/tiny"].files["model.safetensors"]
    assert [r.path.rsplit("/", 1)[-1] for r in hub.file_gets()] == ["model.safetensors"]


def test_other_errors_are_bounded_and_reported(hub: HubServer, registry: Callable[..., Path]) -> None:
    registry(TWO)
    calls = []

    def broken(path: Path, **kwargs: Any) -> None:
        calls.append(path)
        raise RuntimeError("CUDA out of memory")

    loader = ModelLoader(backoff_base=0.001)
    loader.register_model(ModelConfig("big", model="opt", loader_func=broken, required=False, retry_count=3))
    loader.register_model(ModelConfig("weights", model="tiny", loader_func=load_safetensors))
    assert loader.load_all_models(parallel=False) == {"big": False, "weights": True}
    assert len(calls) == 3
    health = loader.get_health_status()
    assert health["status"] == "degraded"
    assert health["errors"] == {"big": "RuntimeError: CUDA out of memory"}
    with pytest.raises(
        modelctl.ModelLoadError,
        match=r"^Model 'big' is not available \(status: failed\)\.\nLoading failed with: RuntimeError: CUDA",
    ):
        loader.get_model("big")


def test_path_models_with_checksums(project: Path) -> None:
    good = project / "vocab.json"
    good.write_text('{"a": 1}')
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    loader = ModelLoader()
    loader.register_model(
        ModelConfig("vocab", good, lambda p: json.loads(p.read_text()), expected_checksum=f"sha256:{digest}")
    )
    loader.register_model(
        ModelConfig(
            "wrong",
            path=good,
            loader_func=lambda p: 1,
            expected_checksum="sha256:" + "0" * 64,
            required=False,
        )
    )
    loader.register_model(ModelConfig("gone", path=project / "nope.bin", loader_func=lambda p: 1))
    loader.load_all_models()
    assert loader.get_model("vocab") == {"a": 1}
    health = loader.get_health_status()
    assert health["status"] == "unhealthy"
    assert health["errors"]["wrong"] == (
        f"Checksum mismatch! Expected: {'0' * 64}, Got: {digest}\nFile may be corrupted or tampered with: {good}"
    )
    assert health["errors"]["gone"] == f"Model file not found: {project / 'nope.bin'}"
    with pytest.raises(modelctl.ConfigurationError):
        loader.register_model(ModelConfig("x", model="a", path=good, loader_func=lambda p: 1))


def test_ensure_model_raises_when_repair_cannot_fix(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    pin = "md5:" + "0" * 32  # the project pins bytes the Hub does not serve
    registry(TINY + f"    checksums: {{config.json: '{pin}'}}\n")
    for _ in range(3):
        with pytest.raises(BadChecksumError, match=r"Still broken after repair: tiny: config\.json"):
            ModelManager.from_config().ensure_model("tiny")
    quarantine = tmp_path / "home" / "org--tiny" / ".modelctl" / "quarantine"
    assert len(list(quarantine.rglob("config.json"))) == 1  # one copy kept, however often it runs


def test_a_hub_file_failing_our_format_check_is_a_warning_not_a_repair_loop(
    hub: HubServer, registry: Callable[..., Path], cli: Any, tmp_path: Path
) -> None:
    hub.repos["org/tiny"].files["tokenizer.json"] = b'{"vocab": {"a": 1},}'  # the Hub's own bytes
    hub.repos["org/tiny"].__post_init__()
    registry(TINY)
    folder = ModelManager.from_config().ensure_model("tiny")
    hub.reset_counters()
    for _ in range(2):
        result = cli("ensure", "tiny", "--json")
        assert result.exit_code == 0, result.stderr
        findings = json.loads(result.stdout)["models"][0]["findings"]
        assert next((f["check"], f["status"]) for f in findings if f["path"] == "tokenizer.json") == (
            "format",
            "note",
        )
    assert hub.file_gets() == []
    assert not (folder / ".modelctl" / "quarantine").exists()


def test_from_config_settings_reach_the_downloads(
    hub: HubServer, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    registry(TINY)
    manager = ModelManager.from_config(endpoint=["http://127.0.0.1:9", hub.url], retries=2, max_workers=1)
    report = manager.download(["tiny"])
    assert {f.endpoint for f in report.models[0].files} == {f"127.0.0.1:{hub.port}"}
    offline = ModelManager.from_config(offline=True)
    assert offline.download(["tiny"]).bytes_fetched == 0


def test_api_errors_name_the_next_step_in_api_terms(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    offline = ModelManager.from_config(offline=True)
    for call in (lambda: offline.ensure_model("tiny"), lambda: offline.download(["tiny"])):
        with pytest.raises(MissingModelError) as raised:
            call()
        assert "offline" in raised.value.message.lower(), raised.value.message
        assert raised.value.hint == (
            "Download it online: ModelManager.from_config(offline=False), with HF_HUB_OFFLINE unset (or 0)."
        )
    assert hub.requests == []
    pin = "md5:" + "0" * 32  # a pin the Hub's bytes cannot match: no repair helps
    registry(TINY + f"    checksums: {{config.json: '{pin}'}}\n")
    with pytest.raises(BadChecksumError) as broken:
        ModelManager.from_config().ensure_model("tiny")
    assert broken.value.hint.startswith("Call ModelManager.verify(['tiny'], use_cache=False)")
    assert "modelctl " not in broken.value.hint and "--" not in broken.value.hint


def test_a_hub_that_cannot_be_reached_is_named_in_each_ones_terms(
    registry: Callable[..., Path], cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry(TINY)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(modelctl.DownloadError) as raised:
        ModelManager.from_config(retries=1).ensure_model("tiny")
    assert "pass offline=True to ModelManager.from_config" in raised.value.hint
    assert "--" not in raised.value.hint and "modelctl " not in raised.value.hint
    result = cli("download", "tiny", "--retries", "1")  # the command line keeps its own words
    assert result.exit_code == 1 and "modelctl download tiny --offline" in " ".join(result.stderr.split())
