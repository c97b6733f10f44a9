"""Seed 002 (AFIRGen's model_loader) examples, as its document writes them, with the import line
changed (`from model_loader import …` → `from modelctl import …`).

Its model servers load local GGUF files (no registry, no Hub); `llama_cpp` is a stand-in
(tests/seeds/stand_ins) that reads GGUF with the `gguf` package and fails as llama-cpp-python
does. A ModelConfig naming a registry model instead is repaired from the fixture Hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path

import pytest

from tests.conftest import write
from tests.hubserver import HubServer, gguf_bytes

GGUF = gguf_bytes({"token_embd.weight": [16, 32], "output.weight": [32, 8]})
HEALTH_KEYS = ["status", "message", "models_loaded", "loaded_count", "total_count", "errors"]


@pytest.fixture(autouse=True)
def llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "stand_ins"))


@pytest.fixture
def models(project: Path) -> Path:
    folder = project / "models"
    folder.mkdir()
    (folder / "summariser.gguf").write_bytes(GGUF)
    return folder


def test_basic_usage(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from modelctl import ModelConfig, ModelLoader

    # Initialize loader
    loader = ModelLoader(model_dir=Path("./models"), validate_checksums=True)

    # Define a loader function for your model type
    def load_gguf_model(path, **kwargs):
        from llama_cpp import Llama

        return Llama(model_path=str(path), **kwargs)

    # Register models
    loader.register_model(
        ModelConfig(
            name="summariser",
            path=Path("./models/summariser.gguf"),
            loader_func=load_gguf_model,
            required=True,
            expected_checksum=hashlib.sha256(GGUF).hexdigest(),  # Optional but recommended
            loader_kwargs={"n_ctx": 2048, "n_threads": 4},
        )
    )

    # Load all models (parallel by default)
    results = loader.load_all_models(parallel=True)

    # Get a loaded model
    model = loader.get_model("summariser")

    # Check health status
    health = loader.get_health_status()
    print(f"Status: {health['status']}")
    print(f"Loaded: {health['loaded_count']}/{health['total_count']}")

    assert results == {"summariser": True}
    assert (model.model_path, model.n_ctx, model.n_threads) == ("models/summariser.gguf", 2048, 4)
    assert model.tensors == {"token_embd.weight": (16, 32), "output.weight": (32, 8)}
    assert list(health)[: len(HEALTH_KEYS)] == HEALTH_KEYS
    assert health["message"] == "All models loaded successfully" and health["errors"] == {}
    assert capsys.readouterr().out == "Status: healthy\nLoaded: 1/1\n"
    assert loader._calculate_checksum(Path("models/summariser.gguf"), algorithm="sha256") == (
        hashlib.sha256(GGUF).hexdigest()
    )


def test_the_gguf_server_integration(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_cpp import Llama

    from modelctl import ModelConfig, ModelLoader

    monkeypatch.setenv("MODEL_DIR", str(models))
    log = logging.getLogger("llm_server")

    # Initialize loader
    model_loader = ModelLoader(model_dir=Path(os.getenv("MODEL_DIR", "./models")), validate_checksums=True)

    # Define GGUF loader function
    def load_gguf_model(path, **kwargs):
        return Llama(
            model_path=str(path),
            n_ctx=kwargs.get("n_ctx", 2048),
            n_threads=kwargs.get("n_threads", 4),
            use_mlock=kwargs.get("use_mlock", True),
            use_mmap=kwargs.get("use_mmap", True),
        )

    # Register models
    model_loader.register_model(
        ModelConfig(
            name="summariser",
            path=model_loader.model_dir / "complaint_2summarizing.gguf",
            loader_func=load_gguf_model,
            required=True,
            loader_kwargs={"n_ctx": 2048, "n_threads": 4},
        )
    )

    model_loader.register_model(
        ModelConfig(
            name="bns_check",
            path=model_loader.model_dir / "BNS-RAG-q4k.gguf",
            loader_func=load_gguf_model,
            required=False,
        )
    )
    (models / "complaint_2summarizing.gguf").write_bytes(GGUF)

    # Load on startup
    async def startup_event() -> None:
        try:
            await asyncio.get_event_loop().run_in_executor(None, model_loader.load_all_models)
            log.info("Model server startup complete")
        except Exception as e:
            log.error(f"Startup failed: {e}")
            raise

    asyncio.run(startup_event())

    # Use in endpoints
    def inference(model_name: str) -> object:
        try:
            return model_loader.get_model(model_name)
        except (ValueError, RuntimeError) as e:
            return {"status_code": 500, "detail": str(e)}

    # Health check
    def health_check() -> dict[str, object]:
        health = model_loader.get_health_status()
        return {
            "status": health["status"],
            "models_loaded": health["models_loaded"],
            "message": health["message"],
        }

    assert isinstance(inference("summariser"), Llama)
    missing = models / "BNS-RAG-q4k.gguf"
    assert inference("bns_check") == {
        "status_code": 500,
        "detail": f"Model 'bns_check' is not available (status: failed).\nLoading failed with: Model file not found: {missing}",
    }
    assert health_check() == {
        "status": "degraded",
        "models_loaded": {"summariser": True, "bns_check": False},
        "message": "Optional models not loaded: bns_check",
    }


def test_the_seeds_error_messages(models: Path) -> None:
    from modelctl import ModelConfig, ModelLoader

    def load(path):
        return path.read_bytes()

    (models / "empty.gguf").write_bytes(b"")
    loader = ModelLoader(model_dir=models)
    loader.register_model(ModelConfig("gone", models / "gone.gguf", load))
    loader.register_model(ModelConfig("empty", models / "empty.gguf", load))
    loader.register_model(
        ModelConfig("pinned", models / "summariser.gguf", load, expected_checksum="ab" * 32)
    )
    loader.register_model(
        ModelConfig(
            "md5",
            models / "summariser.gguf",
            load,
            expected_checksum=hashlib.md5(GGUF).hexdigest(),
            checksum_algorithm="md5",
        )
    )
    assert loader.load_all_models() == {"gone": False, "empty": False, "pinned": False, "md5": True}
    errors = loader.get_health_status()["errors"]
    assert errors == {
        "gone": f"Model file not found: {models / 'gone.gguf'}",
        "empty": f"Model file is empty (0 bytes): {models / 'empty.gguf'}",
        "pinned": f"Checksum mismatch! Expected: {'ab' * 32}, Got: {hashlib.sha256(GGUF).hexdigest()}\n"
        f"File may be corrupted or tampered with: {models / 'summariser.gguf'}",
    }
    unchecked = ModelLoader(model_dir=models, validate_checksums=False)
    unchecked.register_model(
        ModelConfig("pinned", models / "summariser.gguf", load, expected_checksum="ab" * 32)
    )
    assert unchecked.load_all_models() == {"pinned": True}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permissions cannot be denied")
def test_an_unreadable_file_is_named(models: Path) -> None:
    from modelctl import ModelConfig, ModelLoader

    target = models / "summariser.gguf"
    target.chmod(0)
    loader = ModelLoader(model_dir=models)
    loader.register_model(ModelConfig("s", target, lambda p: p.read_bytes()))
    assert loader.load_all_models() == {"s": False}
    assert (
        loader.get_health_status()["errors"]["s"]
        == f"Model file is not readable (permission denied): {target}"
    )


def test_retry_backoff_is_the_seeds(models: Path, caplog: pytest.LogCaptureFixture) -> None:
    from modelctl import ModelConfig, ModelLoader

    calls: list[Path] = []

    def flaky(path):
        calls.append(path)
        if len(calls) < 4:
            raise RuntimeError("CUDA out of memory")
        return "loaded"

    loader = ModelLoader(model_dir=models)
    loader.register_model(
        ModelConfig(name="model", path=models / "summariser.gguf", loader_func=flaky, retry_count=4)
    )
    with caplog.at_level(logging.WARNING, logger="modelctl.loader"):
        assert loader.load_all_models() == {"model": True}
    waits = [
        r.getMessage().rsplit("trying again in ", 1)[-1]
        for r in caplog.records
        if "trying again" in r.getMessage()
    ]
    assert waits == ["0.5 s", "1.0 s", "2.0 s"]  # Attempt 2: wait 0.5 s, 3: 1.0 s, 4: 2.0 s
    assert len(calls) == 4


REGISTRY = """\
models:
  - id: llm
    repo_id: org/tiny
    files: ["*.gguf"]
"""


def _rot(path: Path) -> None:
    """Flip the GGUF magic's first byte, keeping size and mtime (the verification cache vouches)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("reader", ["llama_cpp", "gguf"])
def test_a_registry_model_is_repaired_when_its_reader_says_corrupt(
    project: Path, hub: HubServer, tmp_path: Path, reader: str
) -> None:
    from modelctl import ModelConfig, ModelLoader, ModelManager

    write(project / "models.yaml", REGISTRY)
    folder = ModelManager.from_config().ensure_model("llm")
    ModelManager.from_config().verify()  # the verification cache now vouches for the file
    gguf_file = folder / "model-q4.gguf"
    _rot(gguf_file)

    def load_gguf_model(path, **kwargs):
        if reader == "gguf":
            import gguf

            return gguf.GGUFReader(path)  # "GGUF magic invalid"
        from llama_cpp import Llama

        return Llama(model_path=str(path), **kwargs)  # "Failed to load model from file: …"

    hub.reset_counters()
    loader = ModelLoader(backoff_base=0.01)
    loader.register_model(ModelConfig(name="llm", model="llm", loader_func=load_gguf_model, retry_count=2))
    assert loader.load_all_models() == {"llm": True}  # the loader got the file: `files:` selects one
    assert loader.get_health_status()["repairs"] == {"llm": 1}
    assert gguf_file.read_bytes() == hub.repos["org/tiny"].files["model-q4.gguf"]
    assert [r.path.rsplit("/", 1)[-1] for r in hub.file_gets()] == ["model-q4.gguf"]


def test_a_repair_before_the_load_shows_in_health(project: Path, hub: HubServer) -> None:
    from llama_cpp import Llama

    from modelctl import ModelConfig, ModelLoader, ModelManager

    write(project / "models.yaml", REGISTRY)
    gguf_file = ModelManager.from_config().ensure_model("llm") / "model-q4.gguf"
    gguf_file.write_bytes(gguf_file.read_bytes()[:100])  # cut: verify sees it before any load
    loader = ModelLoader()
    loader.register_model(
        ModelConfig(name="llm", model="llm", loader_func=lambda p: Llama(model_path=str(p)))
    )
    assert loader.load_all_models() == {"llm": True}
    assert loader.get_health_status()["repairs"] == {"llm": 1}
    assert loader.get_model("llm").model_path == str(gguf_file)
