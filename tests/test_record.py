"""The model record (record.py): newer commits, the 0.1 layout, and the judges of the Python API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from modelctl import BadChecksumError, MissingModelError, ModelConfig, ModelLoader, ModelManager
from modelctl.api import is_cached, verify_model
from tests.conftest import TINY, Run, partial_of, put_partial
from tests.hubserver import HubServer, Repo, model_files


def record(folder: Path) -> dict:
    return json.loads((folder / ".modelctl" / "manifest.json").read_text())


def test_a_newer_commit_replaces_the_plan_and_its_dropped_files_are_outdated(
    cli: Run, hub: HubServer, downloaded: Path
) -> None:
    old = record(downloaded)["commit"]
    files = model_files()
    files["config.json"] = b'{"model_type": "test", "v": 2}'
    del files["README.md"]
    files["generation_config.json"] = b"{}"
    new = hub.add(Repo("org/tiny", files))
    plan = cli.json("download", "tiny", "--dry-run")["models"][0]
    assert (plan["commit"], plan["commit_on_disk"]) == (new.commit, old)
    shown = cli("download", "tiny")
    assert shown.exit_code == 0 and f"(on disk: {old[:12]}, an older commit)" in shown.stderr
    assert sorted(r.path.rsplit("/", 1)[-1] for r in hub.file_gets()) == [
        "config.json",
        "generation_config.json",
    ]
    data = record(downloaded)
    assert data["commit"] == new.commit and data["outdated"] == ["README.md"]
    assert {f["path"] for f in data["files"]} == set(files)
    report = cli.json("verify", "tiny")
    assert report["health"] == "healthy"
    readme = [f for f in report["models"][0]["findings"] if f["path"] == "README.md"]
    assert readme == [
        {
            "path": "README.md",
            "check": "extra",
            "status": "note",
            "detail": f"not in commit {new.commit[:12]}; `modelctl clean --outdated` removes it",
        }
    ]
    removed = cli.json("clean", "--outdated", "--yes")
    assert [item["path"] for item in removed["items"]] == [str(downloaded / "README.md")]
    assert (
        not (downloaded / "README.md").exists()
        and (downloaded / "config.json").read_bytes() == files["config.json"]
    )
    assert cli.json("list")["models"][0]["status"] == "present"


def test_a_user_folder_of_the_0_1_layout_is_used_when_its_record_names_the_repo(
    cli: Run, hub: HubServer, downloaded: Path, tmp_path: Path
) -> None:
    old_layout = tmp_path / "home" / "tiny"
    shutil.move(downloaded, old_layout)
    data = record(old_layout)
    v1 = {  # what modelctl 0.1 wrote: only the files it had fetched, each verified at its stat
        "version": 1,
        "repo_id": data["repo_id"],
        "revision": data["revision"],
        "commit": data["commit"],
        "updated_at": data["updated_at"],
        "files": [
            {
                "path": f["path"],
                "size": f["size"],
                "sha256": f["sha256"],
                "blob_id": f["blob_id"],
                "lfs": f["lfs"],
                "verified_at": f["checked"]["at"],
                "mtime_ns": f["checked"]["mtime_ns"],
                "inode": f["checked"]["inode"],
            }
            for f in data["files"]
        ],
    }
    (old_layout / ".modelctl" / "manifest.json").write_text(json.dumps(v1))
    listed = cli.json("list")["models"][0]
    assert (listed["status"], listed["path"]) == (
        "unverified",
        str(old_layout),
    )  # 0.1 listed only what it wrote
    assert cli("verify", "tiny").exit_code == 3
    hub.reset_counters()
    assert cli.json("download", "tiny")["models"][0]["path"] == str(old_layout)
    assert hub.file_gets() == []  # its checks were kept: nothing hashed twice, nothing fetched
    assert record(old_layout)["version"] == 2
    assert cli.json("list")["models"][0]["status"] == "present"
    v1["repo_id"] = "someone/else"
    (old_layout / ".modelctl" / "manifest.json").write_text(json.dumps(v1))
    assert cli.json("list")["models"][0]["status"] == "missing"  # another repo's folder: not looked at


def test_python_api_never_calls_an_incomplete_model_ready(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("download", "tiny", "--include", "*.json")
    folder = tmp_path / "home" / "org--tiny"
    manager = ModelManager.from_config()
    assert manager.is_cached("tiny") is False and is_cached("tiny") is False
    assert verify_model("tiny") is False
    with pytest.raises(BadChecksumError, match=r"tiny at .* is partial: "):
        manager.get_model_path("tiny")
    loader = ModelLoader(ModelManager.from_config())
    loader.register_model(
        ModelConfig(
            "weights", model="tiny", loader_func=lambda path: (path / "model.safetensors").read_bytes()
        )
    )
    assert loader.load_all_models() == {"weights": True}  # ensured (completed) before loading
    assert loader.get_model("weights") == hub.repos["org/tiny"].files["model.safetensors"]
    assert manager.is_cached("tiny") is True and manager.get_model_path("tiny") == folder
    shutil.rmtree(folder)
    with pytest.raises(MissingModelError):
        ModelManager.from_config().get_model_path("tiny")


def test_ensure_replaces_only_files_the_record_names(cli: Run, hub: HubServer, downloaded: Path) -> None:
    (downloaded / "my-notes.json").write_text("{not json, mine")
    (downloaded / "config.json").write_bytes(b"{}")  # damaged: a file of the model
    report = cli.json("ensure", "tiny", code=0)
    assert report["repaired"] == {"tiny": ["config.json"]}
    assert (downloaded / "my-notes.json").read_text() == "{not json, mine"  # the user's file stays
    assert (downloaded / "config.json").read_bytes() == hub.repos["org/tiny"].files["config.json"]


def test_a_check_without_the_files_own_hash_proves_nothing() -> None:
    from modelctl.core.record import Checked, RepoFile

    md5_only = Checked(1, 5, 0, "now", {"md5": "5d41402abc4b2a76b9719d911017c592"})
    entry = RepoFile("w.bin", 5, "a" * 64, "b" * 40, md5_only)
    assert entry.state == "pending"  # a pin was checked, the Hub's sha256 never was
    assert entry._replace(checked=md5_only._replace(digests={"sha256": "a" * 64})).state == "verified"
    assert entry._replace(checked=md5_only._replace(digests={"sha256": "c" * 64})).state == "bad"


def test_a_sidecar_left_without_its_partial_is_no_download_in_flight(cli: Run, downloaded: Path) -> None:
    sidecar = put_partial(downloaded, "config.json", b"").with_suffix(".json")
    partial_of(downloaded, "config.json").unlink()  # killed between publishing and tidying up
    assert sidecar.exists()
    assert cli.json("list")["models"][0]["status"] == "present"
