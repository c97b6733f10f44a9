"""Seed 001 (File Analyzer's FastVLM model management): its command lines, as its document writes
them, with `python tools/download_models.py` → `modelctl`, against the fixture Hub."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Run, write
from tests.hubserver import HubServer, Repo

REGISTRY = """\
storage:
  project: libs/ml-fastvlm/checkpoints   # the seed's project-level storage
models:
  - {id: fastvlm-0.5b, repo_id: apple/FastVLM-0.5B, family: fastvlm, size: 0.5b}
  - {id: fastvlm-1.5b, repo_id: apple/FastVLM-1.5B, family: fastvlm, size: 1.5b, required: false}
"""


def test_the_seeds_command_lines(cli: Run, hub: HubServer, project: Path, tmp_path: Path) -> None:
    for name in ("apple/FastVLM-0.5B", "apple/FastVLM-1.5B"):
        hub.add(
            Repo(name, {"config.json": b'{"model_type": "llava_qwen2"}', "model.safetensors": b"w" * 4096})
        )
    write(project / "models.yaml", REGISTRY)
    home = tmp_path / "home"

    listed = cli("list")  # 1. List available models
    assert listed.exit_code == 0 and "fastvlm-0.5b" in listed.stdout and "fastvlm-1.5b" in listed.stdout
    info = cli("info", "--size", "0.5b")  # 2. Get model information
    assert info.exit_code == 0 and "apple/FastVLM-0.5B" in info.stdout and "1.5B" not in info.stdout
    assert cli("download", "--size", "0.5b").exit_code == 0  # 3. Download a model
    assert (home / "apple--FastVLM-0.5B" / "model.safetensors").is_file()  # user-level storage first
    assert not (home / "apple--FastVLM-1.5B").exists()
    assert cli("download", "--size", "all").exit_code == 0  # 4. Download all models
    assert (home / "apple--FastVLM-1.5B" / "model.safetensors").is_file()
    hub.reset_counters()
    assert cli("download", "--size", "0.5b", "--force").exit_code == 0  # troubleshooting: download again
    assert sorted(r.path.rsplit("/", 1)[-1] for r in hub.file_gets()) == ["config.json", "model.safetensors"]
    states = {m["id"]: m["status"] for m in cli.json("list")["models"]}
    assert states == {"fastvlm-0.5b": "present", "fastvlm-1.5b": "present"}
    roots = {r["name"]: r["path"] for r in cli.json("list")["roots"]}
    assert roots["project"] == str(project / "libs" / "ml-fastvlm" / "checkpoints")
    assert roots["legacy"] == str(project / "checkpoints")  # the seed's "alternative storage"
    assert json.loads(cli("info", "--size", "0.5b", "--json").stdout)["models"][0]["status"] == "present"
