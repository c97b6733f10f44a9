"""The command line: exit codes, stdout/stderr separation, --json shapes, start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Run, put_files, put_model

GOOD = {"config.json": b"{}", "model.safetensors": b"x" * 10}


def test_list_table_and_summary(cli: Run, registry: Callable[..., Path], project: Path) -> None:
    path = registry()
    put_model(project / "models" / "tiny", GOOD)
    result = cli("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "id",
        "family/size",
        "repo@revision",
        "required",
        "status",
        "root",
        "on",
        "disk",
    ]
    assert lines[1].split() == [
        "tiny",
        "demo/0.5b",
        "org/tiny@main",
        "yes",
        "present",
        "project",
        "12",
        "bytes",
    ]
    assert lines[2].split() == ["big", "7b", "org/big@v2", "optional", "missing", "-", "-"]
    assert lines[3] == "2 models: 1 present, 0 partial, 1 missing (0 required not present); 12 bytes on disk"
    assert f"Registry: {path} (found in this folder or a parent)" in result.stderr
    assert "Registry" not in result.stdout


def test_list_json_shape(cli: Run, registry: Callable[..., Path], project: Path, tmp_path: Path) -> None:
    path = registry()
    put_files(project / "models" / "tiny", GOOD)  # made by hand: unverified
    put_model(tmp_path / "home" / "org--tiny", {"config.json": b"{}"}, listing=GOOD)  # interrupted
    data = cli.json("list")
    assert data["registry"] == {"path": str(path), "reason": "found"}
    assert [r["name"] for r in data["roots"]] == ["user", "project", "legacy"]
    assert data["roots"][2] == {
        "name": "legacy",
        "path": str(project / "checkpoints"),
        "exists": False,
        "readable": False,
        "writable": True,
        "problem": None,
    }
    tiny, big = data["models"]
    assert tiny == {
        "id": "tiny",
        "repo_id": "org/tiny",
        "revision": "main",
        "family": "demo",
        "size": "0.5b",
        "required": True,
        "status": "partial",
        "root": "user",
        "path": str(tmp_path / "home" / "org--tiny"),
        "shadowed": [{"root": "project", "path": str(project / "models" / "tiny")}],
        "bytes": 2,
        "partial_bytes": 0,
        "file_count": 1,
        "missing": ["model.safetensors"],
        "mismatched": [],
        "unverified": [],
        "bad": [],
        "partials": [],
        "others": [],
    }
    assert big["status"] == "missing" and big["root"] is None and big["shadowed"] == []
    assert data["summary"] == {
        "total": 2,
        "present": 0,
        "partial": 1,
        "unverified": 0,
        "missing": 1,
        "other": 0,
        "required_not_present": 1,
        "bytes": 2,
        "partial_bytes": 0,
    }
    assert data["warnings"] == []


def test_list_size_filter_and_unknown_size(cli: Run, registry: Callable[..., Path]) -> None:
    registry()
    assert [m["id"] for m in cli.json("list", "--size", "7b")["models"]] == ["big"]
    result = cli("list", "--size", "3b")
    assert result.exit_code == 4
    assert "No model in" in result.stderr and "has size variant '3b'" in result.stderr
    assert "Hint: Size variants in this registry: 0.5b, 7b, or 'all'." in result.stderr
    assert result.stdout == ""


def test_list_empty_registry_gives_empty_arrays(cli: Run, registry: Callable[..., Path]) -> None:
    registry("models: []\n")
    data = cli.json("list")
    assert data["models"] == [] and data["warnings"] == [] and data["summary"]["total"] == 0


def test_info_json_shape(cli: Run, registry: Callable[..., Path], project: Path) -> None:
    registry()
    put_files(project / "checkpoints" / "Big-Model", {"w.bin": b"abc"})  # no record: unverified
    data = cli.json("info", "big")
    (big,) = data["models"]
    assert big["spec"] == {
        "id": "big",
        "repo_id": "org/big",
        "revision": "v2",
        "family": None,
        "size": "7b",
        "required": False,
        "files": [],
        "local_dir": "Big-Model",
        "checksums": {},
        "description": None,
    }
    assert big["status"] == "unverified" and big["root"] == "legacy"
    assert [(loc["root"], loc["exists"], loc["bytes"]) for loc in big["locations"]] == [
        ("user", False, 0),
        ("project", False, 0),
        ("legacy", True, 3),
    ]
    assert big["files"] == [{"path": "w.bin", "size": 3}]
    assert big["manifest"] is None


def test_info_by_size_and_table(cli: Run, registry: Callable[..., Path], project: Path) -> None:
    registry()
    put_model(project / "models" / "tiny", GOOD)
    assert [m["id"] for m in cli.json("info", "--size", "0.5b")["models"]] == ["tiny"]
    result = cli("info", "tiny")
    assert result.exit_code == 0
    out = result.stdout
    assert out.splitlines()[0].split() == ["tiny", "present"]
    assert "org/tiny@main" in out
    assert f"{project / 'models' / 'tiny'}  (found, 2 files, 12 bytes)" in out
    assert "model.safetensors" in out


def test_unknown_model_exits_4_with_suggestions(cli: Run, registry: Callable[..., Path]) -> None:
    registry()
    result = cli("info", "tinny")
    assert result.exit_code == 4
    assert "Unknown model id 'tinny'" in result.stderr and "Did you mean 'tiny'?" in result.stderr
    assert "Hint: Run `modelctl list`" in result.stderr
    assert result.stdout == ""


def test_usage_errors_exit_2(cli: Run, registry: Callable[..., Path]) -> None:
    registry()
    assert cli("info").exit_code == 2
    assert cli("list", "--bogus").exit_code == 2
    assert cli("frobnicate").exit_code == 2


def test_bad_registry_exits_1_naming_file_line_and_key(cli: Run, registry: Callable[..., Path]) -> None:
    path = registry("models:\n  - id: a\n    repo_id: org/a\n    sise: 7b\n")
    result = cli("list")
    assert result.exit_code == 1
    assert f"Error: {path}:4: models[0].sise: unknown key (did you mean 'size'?)" in result.stderr
    assert "Hint: Allowed keys in models[0]: id, repo_id" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_debug_shows_traceback(cli: Run, registry: Callable[..., Path]) -> None:
    registry("models: 3\n")
    result = cli("list", env={"MODELCTL_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ConfigurationError" in result.stderr


def test_config_flag_global_and_per_command(cli: Run, project: Path, registry: Callable[..., Path]) -> None:
    other = registry("models:\n  - id: other\n    repo_id: org/other\n", name="other.yaml")
    registry()
    assert [m["id"] for m in cli.json("--config", str(other), "list")["models"]] == ["other"]
    assert [m["id"] for m in cli.json("list", "-c", "other.yaml")["models"]] == ["other"]
    data = cli.json("list", env={"MODELCTL_CONFIG": str(other)})
    assert data["registry"] == {"path": str(other), "reason": "MODELCTL_CONFIG"}


def test_bundled_registry_is_used_anywhere(cli: Run, project: Path) -> None:
    data = cli.json("list")
    assert data["registry"]["reason"] == "bundled"
    assert "fastvlm-0.5b" in [m["id"] for m in data["models"]]
    assert data["roots"][1]["path"] == str(project / "models")


def test_help_lists_every_command(cli: Run) -> None:
    out = cli("--help").stdout
    for command in ("list", "info", "download", "verify", "ensure", "clean", "checksum"):
        assert f" {command} " in out, command


def test_unreadable_registry_warnings_go_to_stderr(
    cli: Run, registry: Callable[..., Path], project: Path
) -> None:
    registry()
    (project / "checkpoints").write_text("oops")
    result = cli("list")
    assert result.exit_code == 0
    assert f"Warning: legacy root skipped: {project / 'checkpoints'} is not a folder" in result.stderr
    data = cli.json("list")
    assert data["warnings"] == [f"legacy root skipped: {project / 'checkpoints'} is not a folder"]


def _run_real(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelctl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_python_m_entry_point_and_exit_code(project: Path, registry: Callable[..., Path]) -> None:
    registry()
    ok = _run_real(["list", "--json"], project)
    assert ok.returncode == 0
    assert [m["id"] for m in json.loads(ok.stdout)["models"]] == ["tiny", "big"]
    missing = _run_real(["info", "nope"], project)
    assert missing.returncode == 4
    assert "Unknown model id 'nope'" in missing.stderr


def test_list_and_help_do_not_import_huggingface_hub_pydantic_or_the_engine(
    project: Path, registry: Callable[..., Path]
) -> None:
    registry()
    code = (
        "import sys\n"
        "from modelctl.cli import app\n"
        "for args in (['--help'], ['list'], ['list', '--json'], ['info', 'tiny']):\n"
        "    try:\n"
        "        app(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        # Typer >= 0.29 imports pydantic itself (typer._adapters) when a command runs: not ours to avoid.
        "heavy = ('huggingface_hub', 'pydantic', 'httpx', 'modelctl.cli.fetching', 'modelctl.net.engine')\n"
        "ours = [m for m in heavy if m in sys.modules]\n"
        "print(sorted(m for m in ours if not (m == 'pydantic' and 'typer._adapters' in sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert result.stderr.strip().splitlines()[-1] == "[]"
