"""init, cache-key, path, doctor, the action log (-v / --log-file) and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from modelctl.cli.options import complete_model_ids, complete_sizes
from tests.conftest import TINY, TWO_MODELS, Run, put_partial
from tests.hubserver import Fault, HubServer


def test_init_writes_a_valid_starter_and_gitignore_lines(cli: Run, project: Path) -> None:
    (project / ".gitignore").write_text("*.pyc\n")
    result = cli("init")
    assert result.exit_code == 0
    assert cli.json("list")["models"][0]["id"] == "smollm2-135m"  # the starter is a valid registry
    assert (project / ".gitignore").read_text().splitlines() == [
        "*.pyc",
        "",
        "# model files (modelctl): never commit them",
        "/models/",
        "/checkpoints/",
    ]
    again = cli("init")
    assert again.exit_code == 1 and "already exists; nothing was changed" in again.stderr
    assert cli("init", "--force").exit_code == 0
    assert (project / ".gitignore").read_text().count("/models/") == 1


def test_cache_key_is_stable_and_follows_what_matters(
    cli: Run, registry: Callable[..., Path], project: Path
) -> None:
    registry(TWO_MODELS)
    key = cli("cache-key").stdout.strip()
    assert len(key) == 16
    registry("# a comment\n" + TWO_MODELS.replace("    family: demo\n", "    family: demo  # same\n"))
    assert cli("cache-key").stdout.strip() == key  # comments and formatting do not matter
    registry(TWO_MODELS.replace("revision: v2", "revision: v3"))
    assert cli("cache-key").stdout.strip() != key
    changed = cli("cache-key").stdout.strip()
    (project / "models.lock").write_text('{"version": 1, "models": {}}\n')
    assert cli("cache-key").stdout.strip() != changed  # the lock counts too


def test_path_prints_the_verified_folder(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    missing = cli("path", "tiny")
    assert missing.exit_code == 4 and "modelctl ensure tiny" in missing.stderr
    cli.json("download", "tiny")
    ok = cli("path", "tiny")
    assert ok.exit_code == 0 and ok.stdout == f"{tmp_path / 'home' / 'org--tiny'}\n"
    (tmp_path / "home" / "org--tiny" / "config.json").write_bytes(b"")
    bad = cli("path", "tiny")
    assert bad.exit_code == 3 and "fails verify: config.json" in bad.stderr and bad.stdout == ""


def test_doctor_reports_and_flags_unignored_roots(
    cli: Run, registry: Callable[..., Path], project: Path
) -> None:
    registry(TINY)
    (project / "models" / "tiny" / ".modelctl").mkdir(parents=True)
    (project / "models" / "tiny" / "x.bin").write_bytes(b"1")
    put_partial(project / "models" / "tiny", "y.bin", b"1")
    (project / "models" / "tiny" / ".modelctl" / "lock.owner").write_text("999999 host\n")
    healthy = cli.json("doctor")
    assert healthy["needs_attention"] is False
    assert healthy["versions"]["huggingface_hub"].startswith("2.")
    details = " | ".join(c["detail"] for c in healthy["checks"])
    assert "tiny: partial" in details and "tiny: 1 partial download in" in details
    assert "stale lock owner (pid 999999 is gone)" in details
    assert "no token" in details
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    checks = json.loads(result.stdout)["checks"]
    problems = [c for c in checks if c["status"] == "problem"]
    assert [c["hint"] for c in problems] == [f"Add this line to {project / '.gitignore'}: /models/"]
    # checkpoints/ does not exist: nothing there could be committed yet, so it is only a note
    notes = [c for c in checks if c["area"] == "git" and c["status"] == "note"]
    assert [c["hint"] for c in notes] == [f"Add this line to {project / '.gitignore'}: /checkpoints/"]
    assert "would not be ignored once made" in notes[0]["detail"]
    (project / ".gitignore").write_text("/models/\n/checkpoints/\n")
    assert cli.json("doctor")["needs_attention"] is False


def test_doctor_needs_attention_while_a_required_model_is_missing(
    cli: Run, registry: Callable[..., Path]
) -> None:
    registry(TINY)
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["needs_attention"] is True
    missing = [c for c in report["checks"] if c["area"] == "models"]
    assert [(c["status"], c["detail"]) for c in missing] == [
        ("problem", "tiny: required, and not downloaded in any root")
    ]
    assert "Some things need attention" in cli("doctor").stdout


def test_doctor_never_shows_the_token(cli: Run, registry: Callable[..., Path]) -> None:
    registry(TINY)
    result = cli("doctor", env={"HF_TOKEN": "hf_doctorsecret123"})
    assert "a token is set" in result.stdout and "hf_doctorsecret123" not in result.stdout + result.stderr


def test_log_file_records_actions_retries_and_hashes_never_the_token(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry(TINY)
    monkeypatch.setenv("HF_TOKEN", "hf_logsecret_abcdef")
    hub.faults["config.json"] = Fault(status=503, times=1)
    log = project / "logs" / "modelctl.log"
    result = cli("--log-file", str(log), "-v", "download", "tiny")
    assert result.exit_code == 0, result.stderr
    text = log.read_text()
    assert "retry config.json (attempt 2)" in text and "HTTP 503" in text
    sha = hub.repos["org/tiny"].etag("model.safetensors")
    assert f"published model.safetensors: sha256:{sha} verified" in text
    assert text.splitlines()[0][:4].isdigit()  # timestamped
    assert "hf_logsecret_abcdef" not in text + result.stderr
    assert "DEBUG modelctl.fetch.download: tiny: download config.json (missing)" in result.stderr  # -v
    cli("--log-file", str(log), "verify")
    assert log.read_text().startswith(text)  # appended


def test_completion_of_ids_and_sizes(registry: Callable[..., Path]) -> None:
    registry(TWO_MODELS)
    assert complete_model_ids("ti") == [("tiny", "org/tiny")]
    assert [mid for mid, _ in complete_model_ids("")] == ["tiny", "big"]
    assert complete_sizes("") == ["0.5b", "7b", "all"]
    assert complete_sizes("7") == ["7b"]


def test_completion_through_the_shell_protocol(registry: Callable[..., Path], project: Path) -> None:
    registry(TWO_MODELS)
    env = {
        **os.environ,
        "_MODELCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "modelctl info ti",
        "COMP_CWORD": "2",
    }
    result = subprocess.run(["modelctl"], cwd=project, env=env, capture_output=True, text=True, check=False)
    assert "tiny" in result.stdout.split()
