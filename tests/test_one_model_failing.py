"""One model that cannot be fetched (a repo the Hub does not have) never stops the others."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from modelctl import MissingModelError, ModelManager, ensure_models
from modelctl.core.errors import BadChecksumError, DownloadError
from modelctl.core.registry import ModelSpec
from modelctl.fetch.download import ModelFailure, failure_error
from tests.conftest import TINY, Run
from tests.hubserver import Fault, HubServer, Repo

GONE = "  - id: gone\n    repo_id: org/gone\n    required: false\n"  # the fixture Hub answers 404
GONE_REQUIRED = "  - id: gone\n    repo_id: org/gone\n"
FLAKY = "  - id: flaky\n    repo_id: org/flaky\n"  # every copy of data.bin arrives with a flipped byte


def tiny_folder(tmp_path: Path) -> Path:
    return tmp_path / "home" / "org--tiny"


def test_download_all_fetches_the_others_and_names_the_failed_model(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY + GONE)
    result = cli("download", "--all")
    assert result.exit_code == 4, result.stderr
    assert "1 of 2 models failed: gone." in result.stderr
    assert "gone: Repository org/gone was not found" in result.stderr
    assert "The others were downloaded: tiny." in result.stderr
    assert (tiny_folder(tmp_path) / "config.json").is_file()
    # The next run finds tiny complete and says so; only gone is still missing.
    verify = cli.json("verify", "tiny")
    assert [m["id"] for m in verify["models"]] == ["tiny"]


def test_download_json_error_names_every_failed_model_and_exit_code_is_the_worst(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    hub.add(Repo("org/flaky", {"data.bin": bytes(range(256)) * 64}))
    hub.faults["data.bin"] = Fault(flip_at=100, times=None)
    registry(TINY + GONE + FLAKY)
    data = cli.json("download", "--all", code=3)  # integrity (3) outranks not found (4)
    message = data["error"]["message"]
    assert "2 of 3 models failed: gone, flaky." in message
    assert "gone: Repository org/gone was not found" in message
    assert "flaky: data.bin: the downloaded bytes do not match" in message
    assert "The others were downloaded: tiny." in message
    assert data["error"]["exit_code"] == 3
    assert (tiny_folder(tmp_path) / "config.json").is_file()


def test_download_of_the_missing_model_alone_keeps_its_own_error(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry(TINY + GONE)
    result = cli("download", "gone")
    assert result.exit_code == 4
    assert "Repository org/gone was not found" in result.stderr
    assert "models failed" not in result.stderr


def test_lock_writes_the_others_and_names_the_failed_model(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path
) -> None:
    registry(TINY + GONE)
    result = cli("lock")
    assert result.exit_code == 4, result.stderr
    assert "1 of 2 models failed: gone." in result.stderr
    assert "The others were locked in models.lock: tiny." in result.stderr
    lock = json.loads((project / "models.lock").read_text())
    assert list(lock["models"]) == ["tiny"]
    check = cli("lock", "--check")
    assert check.exit_code == 1
    assert "gone: not in models.lock" in check.stderr
    assert "tiny" not in check.stderr
    # Downloading with the partial lock: tiny at its locked commit, gone still named as failed.
    download = cli("download", "--all")
    assert download.exit_code == 4
    assert "The others were downloaded: tiny." in download.stderr


def test_ensure_cli_repairs_the_others(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY + GONE)
    result = cli("ensure", "--all")
    assert result.exit_code == 4, result.stderr
    assert "gone: Repository org/gone was not found" in result.stderr
    assert "The others were downloaded: tiny." in result.stderr
    assert cli.json("verify", "tiny")["models"][0]["ok"] is True


def test_ensure_models_leaves_out_an_optional_model_it_cannot_fetch(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry(TINY + GONE)
    with caplog.at_level(logging.WARNING, logger="modelctl"):
        paths = ensure_models()
    assert paths == {"tiny": tiny_folder(tmp_path)}
    assert any(
        r.name == "modelctl.api" and "gone (optional) is left out" in r.getMessage() for r in caplog.records
    )
    assert ModelManager.from_config().ensure_all() == {"tiny": tiny_folder(tmp_path)}


def test_ensure_models_raises_for_a_required_model_after_fetching_the_others(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY + GONE_REQUIRED)
    with pytest.raises(MissingModelError, match="Repository org/gone was not found"):
        ensure_models()
    assert ModelManager.from_config().is_cached("tiny")


def test_ensure_model_asked_for_an_optional_model_still_raises(
    hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry(TINY + GONE)
    with pytest.raises(MissingModelError, match="Repository org/gone was not found"):
        ModelManager.from_config().ensure_model("gone")


def spec(model_id: str) -> ModelSpec:
    return ModelSpec(id=model_id, repo_id=f"org/{model_id}")


def test_failure_error_ranks_like_a_models_files() -> None:
    failed = [
        ModelFailure(spec("a"), DownloadError("a: network down")),
        ModelFailure(spec("b"), MissingModelError("b: no such repo")),
        ModelFailure(spec("c"), BadChecksumError("c: bytes differ")),
    ]
    error = failure_error(failed, ["d"], "downloaded")
    assert isinstance(error, BadChecksumError)
    assert error.exit_code == 3
    assert error.message.splitlines() == [
        "3 of 4 models failed: a, b, c.",
        "  a: a: network down",
        "  b: b: no such repo",
        "  c: c: bytes differ",
        "The others were downloaded: d.",
    ]
    lone = failed[0].error
    assert failure_error(failed[:1], [], "downloaded") is lone


def test_plan_sets_aside_the_model_it_cannot_plan(hub: HubServer, registry: Callable[..., Path]) -> None:
    from modelctl.core.settings import download_options
    from modelctl.fetch.download import NullEvents, plan_downloads
    from modelctl.store.workspace import open_workspace

    registry(TINY + GONE)
    plan = plan_downloads(open_workspace(None), download_options(everything=True), NullEvents())
    assert [m.spec.id for m in plan.models] == ["tiny"]
    assert [f.spec.id for f in plan.failed] == ["gone"]
    error = plan.error()
    assert isinstance(error, MissingModelError)
    assert error.message.splitlines()[0] == "1 of 2 models failed: gone."
    assert error.message.splitlines()[-1] == "The others were planned: tiny."


def test_dry_run_shows_the_others_and_exits_with_the_failure(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry("models:\n  - id: tiny\n    repo_id: org/tiny\n  - id: gone\n    repo_id: org/gone\n")
    result = cli("download", "--all", "--dry-run")
    assert result.exit_code == 4, result.stderr
    assert "tiny" in result.stdout and "gone" in result.stderr
    assert hub.file_gets() == []
