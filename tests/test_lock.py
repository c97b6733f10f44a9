"""models.lock: written by `modelctl lock`, obeyed by download, checked by verify offline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY, Run
from tests.hubserver import HubServer, Repo


def test_lock_writes_commit_and_files_and_check_agrees(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path
) -> None:
    registry(TINY)
    data = cli.json("lock")
    repo = hub.repos["org/tiny"]
    assert data["models"][0]["commit"] == repo.commit
    lock = json.loads((project / "models.lock").read_text())
    entry = lock["models"]["tiny"]
    assert (entry["repo_id"], entry["revision"], entry["commit"]) == ("org/tiny", "main", repo.commit)
    files = {f["path"]: f for f in entry["files"]}
    assert set(files) == set(repo.files)
    assert files["model.safetensors"]["sha256"] == repo.etag("model.safetensors")
    assert files["config.json"]["sha256"] is None and files["config.json"]["blob_id"] == repo.etag(
        "config.json"
    )
    hub.reset_counters()
    check = cli("lock", "--check")
    assert check.exit_code == 0 and "agree" in check.stdout
    assert hub.requests == []  # --check is offline


def test_check_fails_when_the_registry_moved_on(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry(TINY)
    cli.json("lock")
    registry(
        TINY.replace("    size: 0.5b\n", "    size: 0.5b\n    revision: v2\n")
        + "  - {id: new, repo_id: org/new}\n"
    )
    result = cli("lock", "--check", "--json")
    assert result.exit_code == 1
    differences = json.loads(result.stdout)["differences"]
    assert differences[0].startswith("tiny: models.yaml asks for org/tiny@v2")  # the registry in use
    assert differences[1] == "new: not in models.lock"
    stale = cli("download", "tiny")
    assert stale.exit_code == 1
    assert "is stale for tiny" in stale.stderr and "modelctl lock tiny" in stale.stderr


def test_each_registry_has_its_own_lock(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry(TINY + "  - {id: other, repo_id: org/other, required: false}\n")
    hub.add(Repo("org/other", {"a.txt": b"a"}))
    registry(TINY, "models.minimal.yaml")
    cli.json("lock")  # the full set: models.lock
    monkeypatch.setenv("CI_MINIMAL_MODELS", "1")
    check = cli("lock", "--check", "--json")
    assert check.exit_code == 1  # the minimal set has no lock yet, and its check says so by name
    assert json.loads(check.stdout)["differences"] == [f"{project / 'models.minimal.lock'} does not exist"]
    cli.json("lock")  # the minimal set: models.minimal.lock, models.lock untouched
    minimal = json.loads((project / "models.minimal.lock").read_text())
    assert set(minimal["models"]) == {"tiny"}
    assert set(json.loads((project / "models.lock").read_text())["models"]) == {"tiny", "other"}
    check = cli("lock", "--check")
    assert check.exit_code == 0 and "models.minimal.yaml and models.minimal.lock agree." in check.stdout
    monkeypatch.delenv("CI_MINIMAL_MODELS")
    check = cli("lock", "--check")  # locking the minimal set did not break the full set's check
    assert check.exit_code == 0 and "models.yaml and models.lock agree." in check.stdout
    registry(TINY.replace("size: 0.5b", "size: 0.5b\n    revision: v2"), "models.minimal.yaml")
    monkeypatch.setenv("CI_MINIMAL_MODELS", "1")
    stale = cli("lock", "--check", "--json")
    assert json.loads(stale.stdout)["differences"][0].startswith(
        "tiny: models.minimal.yaml asks for org/tiny@v2"
    )


def test_download_fetches_exactly_the_locked_commit(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("lock")
    commit = hub.repos["org/tiny"].commit
    hub.reset_counters()
    data = cli.json("download", "tiny")
    assert data["models"][0]["commit"] == commit
    api = [r.path for r in hub.requests if r.path.startswith("/api/")]
    assert any(p.startswith(f"/api/models/org/tiny/revision/{commit}") for p in api)
    assert all(f"/resolve/{commit}/" in r.path for r in hub.file_gets())


def test_download_refuses_a_hub_that_differs_from_the_lock(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("lock")
    hub.repos["org/tiny"].files["config.json"] = b'{"changed": true}'  # same commit id, other bytes
    result = cli("download", "tiny")
    assert result.exit_code == 3
    assert "differ from models.lock: config.json; nothing was downloaded" in result.stderr
    assert hub.file_gets() == []


def test_verify_uses_the_lock_without_manifest_or_network(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("lock")
    cli.json("download", "tiny")
    folder = tmp_path / "home" / "org--tiny"
    (folder / ".modelctl" / "manifest.json").unlink()
    hub.reset_counters()
    assert cli.json("verify", env={"HF_HUB_OFFLINE": "1"})["health"] == "healthy"
    blob = bytearray((folder / "weights" / "big.bin").read_bytes())
    blob[3] ^= 1
    (folder / "weights" / "big.bin").write_bytes(bytes(blob))
    report = cli.json("verify", code=3)
    assert report["models"][0]["bad_files"] == ["weights/big.bin"]
    assert hub.requests == []


def test_damaged_lock_is_a_clear_error(cli: Run, registry: Callable[..., Path], project: Path) -> None:
    registry(TINY)
    (project / "models.lock").write_text("{not json")
    result = cli("verify")
    assert result.exit_code == 1
    assert f"{project / 'models.lock'} is damaged" in result.stderr
    assert "modelctl lock" in result.stderr


def test_revision_flag_overrides_the_lock_for_one_run(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry(TINY)
    cli.json("lock")
    hub.repos["org/tiny"].files["config.json"] = b'{"changed": true}'  # the lock no longer matches
    assert cli("download", "tiny").exit_code == 3
    data = cli.json("download", "tiny", "--revision", "main")
    assert data["models"][0]["commit"] == hub.repos["org/tiny"].commit


def test_a_damaged_lock_is_written_anew_by_lock_and_a_newer_one_names_the_upgrade(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path
) -> None:
    registry(TINY)
    (project / "models.lock").write_text("{not json")
    assert "run `modelctl lock` to write it anew" in cli("download", "tiny").stderr
    result = cli("lock")
    assert result.exit_code == 0, result.stderr
    assert "is damaged" in result.stderr and "written anew" in result.stderr
    assert (
        json.loads((project / "models.lock").read_text())["models"]["tiny"]["commit"]
        == hub.repos["org/tiny"].commit
    )
    assert cli("verify").exit_code == 3  # readable again: the model is simply not downloaded yet
    newer = json.loads((project / "models.lock").read_text())
    newer["version"] = 2
    (project / "models.lock").write_text(json.dumps(newer))
    for command in (("verify",), ("lock",)):
        result = cli(*command)
        assert result.exit_code == 1
        assert "is version 2, written by a newer modelctl" in result.stderr
        assert "reads version 1" in result.stderr and "pip install -U modelctl" in result.stderr
    assert json.loads((project / "models.lock").read_text())["version"] == 2  # never downgraded
