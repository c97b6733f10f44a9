"""Hostile input and failure paths of the Python API and of `ensure`: threads, odd loaders, exit codes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelctl import ConfigurationError, ModelConfig, ModelLoader, ModelManager
from tests.conftest import TINY, Run
from tests.hubserver import HubServer

BIG = "weights/big.bin"
DAMAGED = ("model.safetensors", "config.json", "tokenizer.json", "model-q4.gguf", BIG)


def fetched(hub: HubServer) -> list[str]:
    """The repo paths the Hub served file bodies for, one entry a request."""
    return sorted(r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.file_gets())


# --------------------------------------------------------------------------- 8: the API under threads


def ensure_in_threads(manager: ModelManager, model_id: str, threads: int) -> list[object]:
    """ensure_model from `threads` threads released at once → each one's folder or exception."""
    barrier = threading.Barrier(threads)
    results: list[object] = [None] * threads

    def ensure(i: int) -> None:
        barrier.wait()
        try:
            results[i] = manager.ensure_model(model_id)
        except BaseException as err:  # the caller's assertion shows it
            results[i] = err

    workers = [threading.Thread(target=ensure, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def test_threads_ensuring_one_corrupted_model_wait_for_one_repair(hub: HubServer, downloaded: Path) -> None:
    files = hub.repos["org/tiny"].files
    manager = ModelManager.from_config()  # shared, as a service's threads share it
    hub.delay = 0.002  # a repair takes long enough for the other threads to arrive during it
    for _ in range(3):  # the race lost about half the rounds: three rounds of four threads
        for name in DAMAGED:
            (downloaded / name).write_bytes(b"x")
        hub.reset_counters()
        assert ensure_in_threads(manager, "tiny", 4) == [downloaded] * 4
        assert fetched(hub) == sorted(DAMAGED)  # one repair; the others waited and found it done
        for name, data in files.items():
            assert (downloaded / name).read_bytes() == data, name


def test_checksum_on_a_directory_is_refused_at_register(project: Path) -> None:
    folder = project / "weights"
    folder.mkdir()
    loader = ModelLoader()
    with pytest.raises(
        ConfigurationError, match=r"^w: expected_checksum pins one file's bytes, but .*weights is a directory"
    ):
        loader.register_model(
            ModelConfig("w", path=folder, loader_func=lambda p: p, expected_checksum="sha256:" + "0" * 64)
        )
    assert loader.get_health_status()["total_count"] == 0


def test_checksum_on_a_path_that_became_a_directory_is_a_failed_load(project: Path) -> None:
    folder = project / "later"
    loader = ModelLoader()
    loader.register_model(
        ModelConfig("w", path=folder, loader_func=lambda p: p, expected_checksum="sha256:" + "0" * 64)
    )
    loader.register_model(ModelConfig("ok", path=project, loader_func=lambda p: "fine", required=False))
    folder.mkdir()  # a deployment step put a folder where a file was registered
    assert loader.load_all_models() == {"w": False, "ok": True}
    health = loader.get_health_status()
    assert health["status"] == "unhealthy"
    assert health["errors"]["w"].startswith("w: expected_checksum pins one file's bytes")
    assert f"{folder} is a directory" in health["errors"]["w"]


@pytest.mark.parametrize("parallel", [True, False])
def test_loader_raising_system_exit_is_a_failed_load(project: Path, parallel: bool) -> None:
    good = project / "vocab.json"
    good.write_text("{}")
    calls: list[Path] = []

    def exits(path: Path, **kwargs: Any) -> None:
        calls.append(path)
        raise SystemExit(3)  # e.g. a library that calls sys.exit() on a file it cannot read

    loader = ModelLoader(backoff_base=0.001)
    loader.register_model(ModelConfig("exits", path=good, loader_func=exits, retry_count=3))
    loader.register_model(
        ModelConfig("vocab", path=good, loader_func=lambda p: p.read_text(), required=False)
    )
    assert loader.load_all_models(parallel=parallel) == {"exits": False, "vocab": True}
    assert calls == [good]  # an exit is meant: not tried again
    health = loader.get_health_status()
    assert health["status"] == "unhealthy"
    assert health["errors"] == {"exits": "SystemExit: 3"}

    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt

    ctrl_c = ModelLoader()
    ctrl_c.register_model(ModelConfig("x", path=good, loader_func=interrupted))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C still stops the program
        ctrl_c.load_all_models()


# --------------------------------------------------------------------------- 9: one failure, one exit code


def test_ensure_out_of_space_exits_5_as_download_does(cli: Run, hub: HubServer, downloaded: Path) -> None:
    damaged = (downloaded / BIG).read_bytes()[:-1]
    (downloaded / BIG).write_bytes(damaged)
    # The Hub lists the file at 1 EiB: no filesystem has room, so the plan's space check refuses
    # deterministically (tests/reliability's small_disk does the same with a real tmpfs, as root).
    hub.repos["org/tiny"].listed_sizes[BIG] = 1 << 60
    result = cli("ensure", "tiny")
    assert result.exit_code == 5, result.stderr
    assert f"Repair failed, the bad files were put back (tiny: {BIG}): Not enough disk space" in result.stderr
    assert "Hint: Free space there" in result.stderr
    assert (downloaded / BIG).read_bytes() == damaged  # put back
    assert hub.file_gets() == []


def test_ensure_against_a_hub_that_differs_from_the_lock_exits_3_as_download_does(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("lock")
    cli.json("download", "tiny")
    folder = tmp_path / "home" / "org--tiny"
    (folder / "config.json").write_bytes(b"{}")
    hub.repos["org/tiny"].files["config.json"] = b'{"changed": true}'  # same commit id, other bytes
    hub.reset_counters()
    result = cli("ensure", "tiny")
    assert result.exit_code == 3, result.stderr
    assert "Repair failed, the bad files were put back (tiny: config.json): " in result.stderr
    assert "differ from models.lock: config.json" in result.stderr
    assert (folder / "config.json").read_bytes() == b"{}"
    assert hub.file_gets() == []


def test_failed_repair_keeps_the_original_error_class_in_the_api(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    from modelctl import NotEnoughSpaceError

    registry(TINY)
    manager = ModelManager.from_config()
    folder = manager.ensure_model("tiny")
    (folder / BIG).write_bytes(b"x")
    hub.repos["org/tiny"].listed_sizes[BIG] = 1 << 60
    with pytest.raises(NotEnoughSpaceError, match=r"^Repair failed, the bad files were put back") as caught:
        manager.ensure_model("tiny")
    assert isinstance(caught.value.__cause__, NotEnoughSpaceError)
    assert (folder / BIG).read_bytes() == b"x"  # put back
