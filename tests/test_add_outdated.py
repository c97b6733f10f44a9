"""`modelctl add` (a checked entry appended to models.yaml) and `modelctl outdated` (behind the Hub?)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modelctl.core.registry import load_registry
from tests.conftest import TINY, Run
from tests.hubserver import HubServer, Repo, model_files

COMMENTED = """\
# Our models. Keep this comment.
storage:
  project: models   # beside this file

models:
  - id: tiny        # the small one
    repo_id: org/tiny
    files: ["config.json", "*.safetensors"]
  # - id: later
  #   repo_id: org/later

verify: sha256      # the default, said out loud
"""


@pytest.fixture
def two_repos(hub: HubServer) -> HubServer:
    hub.add(Repo("Org/Other-Model_V2", model_files(big_mb=1, seed=2)))
    return hub


def test_add_appends_a_valid_entry_and_keeps_the_rest_byte_for_byte(
    cli: Run, two_repos: HubServer, registry: Callable[..., Path]
) -> None:
    path = registry(COMMENTED)
    result = cli("add", "Org/Other-Model_V2", "--size", "7B", "--files", "*.json", "--files", "*.gguf")
    assert result.exit_code == 0, result.stderr
    assert "Added other-model_v2" in result.stdout
    assert "modelctl download other-model_v2" in result.stderr
    text = path.read_text()
    added = (
        "  - id: other-model_v2\n"
        "    repo_id: Org/Other-Model_V2\n"
        "    size: 7b\n"
        '    files: ["*.json", "*.gguf"]\n'
    )
    anchor = '    files: ["config.json", "*.safetensors"]\n'
    assert text == COMMENTED.replace(anchor, anchor + added)
    spec = load_registry(path).get("other-model_v2")
    assert (spec.repo_id, spec.size, spec.files, spec.revision) == (
        "Org/Other-Model_V2",
        "7b",
        ("*.json", "*.gguf"),
        "main",
    )


def test_add_json_and_flow_list(cli: Run, two_repos: HubServer, registry: Callable[..., Path]) -> None:
    path = registry("models: []  # empty for now\n")
    data = cli.json("add", "Org/Other-Model_V2", "--id", "other", "--revision", "main")
    assert data["registry"] == {"path": str(path), "reason": "found"}
    assert data["model"]["id"] == "other" and data["model"]["revision"] == "main"
    assert data["commit"] == two_repos.repos["Org/Other-Model_V2"].commit
    assert {f["path"] for f in data["files"]} == set(two_repos.repos["Org/Other-Model_V2"].files)
    assert data["bytes"] == sum(f["size"] for f in data["files"]) and data["download"] is None
    assert (
        path.read_text()
        == "models: [{id: other, repo_id: Org/Other-Model_V2, revision: main}]  # empty for now\n"
    )
    assert load_registry(path).get("other").repo_id == "Org/Other-Model_V2"


def test_add_refuses_a_missing_repo_revision_or_unmatched_glob(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    path = registry(COMMENTED)
    missing = cli("add", "org/nope")
    assert missing.exit_code == 4 and "org/nope" in missing.stderr
    assert "Nothing was added" in missing.stderr
    revision = cli("add", "org/tiny", "--id", "t2", "--revision", "v9")
    assert revision.exit_code == 4 and "v9" in revision.stderr
    glob = cli("add", "org/tiny", "--id", "t2", "--files", "*.json", "--files", "*.onnx", "--json")
    assert glob.exit_code == 4
    error = json.loads(glob.stdout)["error"]
    assert "*.onnx" in error["message"] and "*.json" not in error["message"].split("matches")[1]
    assert "config.json" in error["hint"]
    assert path.read_text() == COMMENTED


def test_add_refuses_an_existing_or_invalid_id(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    path = registry(COMMENTED)
    taken = cli("add", "org/tiny")
    assert taken.exit_code == 1
    assert "Model id 'tiny' is already in" in taken.stderr and "--id" in taken.stderr
    bad = cli("add", "org/tiny", "--id", "Bad/Id")
    assert bad.exit_code == 1 and "not a valid id" in bad.stderr
    assert path.read_text() == COMMENTED
    assert hub.requests == []  # refused before asking the Hub


def test_add_refuses_the_bundled_registry(cli: Run, hub: HubServer) -> None:
    result = cli("add", "org/tiny", "--id", "x")
    assert result.exit_code == 1 and "modelctl init" in result.stderr


def test_add_download_fetches_the_new_model(cli: Run, hub: HubServer, registry: Callable[..., Path]) -> None:
    registry("models:\n- id: other\n  repo_id: org/other\n")
    data = cli.json("add", "org/tiny", "--files", "*.json", "--download")
    assert data["model"]["id"] == "tiny"
    fetched = {f["path"] for f in data["download"]["models"][0]["files"]}
    assert fetched == {"config.json", "tokenizer.json"}
    assert (Path(data["download"]["models"][0]["path"]) / "config.json").is_file()
    assert cli.json("list")["models"][1]["status"] == "present"


def test_download_of_an_unknown_repo_suggests_add(cli: Run, registry: Callable[..., Path]) -> None:
    registry(TINY)
    result = cli("download", "org/elsewhere")
    assert result.exit_code == 4
    assert "modelctl add org/elsewhere" in result.stderr


# --------------------------------------------------------------------------- outdated


def test_outdated_after_the_hub_moves_then_current_after_download(
    cli: Run, hub: HubServer, downloaded: Path
) -> None:
    current = cli("outdated")
    assert current.exit_code == 0, current.stderr
    assert "current" in current.stdout
    old = hub.repos["org/tiny"].commit
    files = model_files()
    files["config.json"] = b'{"model_type": "test", "hidden_size": 32}'
    files["extra.json"] = b"{}"
    del files["README.md"]
    new = hub.add(Repo("org/tiny", files)).commit

    result = cli("outdated", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    model = data["models"][0]
    assert (model["id"], model["status"], model["source"]) == ("tiny", "behind", "disk")
    assert (model["commit"], model["head"]) == (old, new)
    assert model["files"] == [
        {"path": "README.md", "change": "removed", "size": 0},
        {"path": "config.json", "change": "changed", "size": len(files["config.json"])},
        {"path": "extra.json", "change": "added", "size": 2},
    ]
    assert model["bytes"] == len(files["config.json"]) + 2
    assert data["summary"]["behind"] == 1
    human = cli("outdated")
    assert human.exit_code == 1
    assert "changed config.json" in human.stdout and "modelctl download tiny" in human.stderr

    assert cli("download", "tiny").exit_code == 0
    after = cli.json("outdated")
    assert after["models"][0]["status"] == "current" and after["models"][0]["files"] == []


def test_outdated_reads_the_lock_and_reports_not_downloaded(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry(TINY + "  - id: other\n    repo_id: org/other\n")
    data = cli.json("outdated")
    assert [m["status"] for m in data["models"]] == ["not downloaded", "not downloaded"]
    assert data["models"][0]["files"] == [] and data["models"][0]["commit"] is None
    assert hub.requests == []  # nothing to compare: no Hub question asked
    assert cli("lock", "tiny").exit_code == 0
    files = model_files()
    files["model.safetensors"] = files["model.safetensors"][:-1] + b"\x01"
    hub.add(Repo("org/tiny", files))
    result = cli("outdated", "tiny", "--json")
    assert result.exit_code == 1
    model = json.loads(result.stdout)["models"][0]
    assert model["source"] == "lock"
    assert model["files"] == [
        {"path": "model.safetensors", "change": "changed", "size": len(files["model.safetensors"])}
    ]
    human = cli("outdated", "tiny")
    assert "modelctl lock tiny" in human.stderr
