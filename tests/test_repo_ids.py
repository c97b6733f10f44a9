"""A repo_id where a model id is asked: the entry it names, or which ids to use, or how to add one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelctl.core.registry import load_registry
from tests.conftest import TINY, Run
from tests.hubserver import HubServer

SAME_REPO_TWICE = """\
models:
  - id: tiny
    repo_id: org/tiny
  - id: tiny-again
    repo_id: org/tiny
    revision: v2
"""


def test_a_repo_id_naming_one_entry_is_that_model(registry: Callable[..., Path]) -> None:
    registry(TINY)
    models = load_registry()
    assert models.get("org/tiny").id == "tiny"
    assert models.get("Org/Tiny").id == "tiny"  # the Hub resolves repo ids case-insensitively
    assert [m.id for m in models.select(["org/tiny"])] == ["tiny"]


def test_download_accepts_a_repo_id(cli: Run, hub: HubServer, registry: Callable[..., Path]) -> None:
    registry(TINY)
    data = cli.json("download", "org/tiny")
    assert [m["id"] for m in data["models"]] == ["tiny"]


def test_the_api_accepts_a_repo_id(downloaded: Path) -> None:
    from modelctl.api import ModelManager

    manager = ModelManager.from_config()
    assert manager.is_cached("org/tiny")
    assert manager.ensure_model("org/tiny") == downloaded


def test_a_repo_id_of_several_entries_says_which_ids_to_use(cli: Run, registry: Callable[..., Path]) -> None:
    registry(SAME_REPO_TWICE)
    result = cli("download", "org/tiny")
    assert result.exit_code == 2
    assert "'org/tiny' is the repo_id of 2 models" in result.stderr
    assert "tiny, tiny-again" in result.stderr


def test_a_repo_id_of_no_entry_says_how_to_add_one(cli: Run, registry: Callable[..., Path]) -> None:
    registry(TINY)
    result = cli("download", "apple/FastVLM-0.5B")
    assert result.exit_code == 4
    assert "'apple/FastVLM-0.5B' is not in the registry" in result.stderr
    assert "- id: fastvlm-0.5b\n" in result.stderr and "repo_id: apple/FastVLM-0.5B\n" in result.stderr
    assert "Unknown model id" not in result.stderr


def test_an_unknown_id_keeps_its_message(cli: Run, registry: Callable[..., Path]) -> None:
    registry(TINY)
    result = cli("download", "tinny")
    assert result.exit_code == 4
    assert "Unknown model id 'tinny'" in result.stderr and "Did you mean 'tiny'?" in result.stderr
