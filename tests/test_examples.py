"""The example setup script, run for real against the fixture Hub."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import TINY, Run
from tests.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[1]


def run_script(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "examples" / "setup_models.sh"), *args],
        cwd=project,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_setup_script_fetches_repairs_and_reports(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    first = run_script(project)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "home" / "org--tiny"
    assert first.stdout == f"model ready: {folder}\n"
    assert (folder / "config.json").read_bytes() == hub.repos["org/tiny"].files["config.json"]
    (folder / "config.json").write_bytes(b"")
    hub.reset_counters()
    again = run_script(project, "0.5b")
    assert again.returncode == 0, again.stderr
    assert [r.path.rsplit("/", 1)[-1] for r in hub.file_gets()] == ["config.json"]
    unknown = run_script(project, "13b")
    assert unknown.returncode == 4
    assert "not in the registry" in unknown.stderr


def test_github_actions_example_is_valid_yaml_using_real_commands() -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "github-actions.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    runs = " ".join(step.get("run", "") for step in steps)
    for command in (
        "modelctl cache-key",
        "modelctl lock --check",
        "modelctl ensure",
        "modelctl verify --all",
    ):
        assert command in runs
    assert workflow["jobs"]["test"]["env"]["CI_MINIMAL_MODELS"] == "1"


def test_setup_script_never_calls_an_incomplete_model_ready(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("download", "tiny", "--include", "*.json")  # as a first download cut short leaves it
    offline = subprocess.run(
        ["bash", str(ROOT / "examples" / "setup_models.sh"), "0.5b"],
        cwd=project,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert offline.returncode == 3 and "model ready" not in offline.stdout
    done = run_script(project, "0.5b")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "home" / "org--tiny"
    assert done.stdout == f"model ready: {folder}\n"
    assert (folder / "weights" / "big.bin").read_bytes() == hub.repos["org/tiny"].files["weights/big.bin"]
