"""`modelctl du`, clean's --shadowed and --unnamed, and the warnings and hints about shadowed copies."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelctl.core.record import read_record
from tests.conftest import TINY, Run, put_files, put_model, put_partial, sidecar_of
from tests.hubserver import HubServer

BIG = "weights/big.bin"
FILES = {"config.json": b"{}", "model.safetensors": b"w" * 1000}


def _folders(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(f["path"]).name: f for f in report["folders"]}


def _root(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in report["roots"] if r["name"] == name)


def _layout(tmp_path: Path, project: Path) -> dict[str, Path]:
    """tiny in the user root (in use) and in the project root (shadowed, with partials and a
    quarantine); another project's model in the user root; a dropped model and a hand-made folder
    in the project root."""
    home, models = tmp_path / "home", project / "models"
    paths = {
        "in_use": put_model(home / "org--tiny", FILES),
        "shadowed": put_model(models / "tiny", FILES),
        "foreign": put_model(home / "someone--else", {"a.bin": b"f" * 300}, repo_id="someone/else"),
        "dropped": put_model(models / "old-model", {"a.bin": b"d" * 200}, repo_id="org/old"),
        "handmade": models / "by-hand",
    }
    put_files(paths["handmade"], {"notes.bin": b"h" * 50})
    put_partial(paths["shadowed"], "model.safetensors", b"p" * 400)
    put_files(paths["shadowed"] / ".modelctl" / "quarantine" / "20260101", {"config.json": b"q" * 70})
    (models / ".hidden").mkdir()  # hidden entries and plain files are not model folders
    (models / "README.txt").write_text("not a model")
    return paths


def test_du_names_every_folder_with_its_bytes_and_totals(
    cli: Run, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    paths = _layout(tmp_path, project)
    report = cli.json("du")
    assert report["registry"] == {"path": str(project / "models.yaml"), "reason": "found"}
    assert report["warnings"] == []
    folders = _folders(report)
    assert set(folders) == {"org--tiny", "tiny", "someone--else", "old-model", "by-hand"}
    assert folders["org--tiny"]["kind"] == "in use" and folders["org--tiny"]["models"] == ["tiny"]
    shadowed = folders["tiny"]
    assert shadowed["kind"] == "shadowed" and shadowed["shadowed_by"] == str(paths["in_use"])
    assert shadowed["bytes"] == 1002  # the model's files only
    assert shadowed["partial_bytes"] >= 400 and shadowed["quarantine_bytes"] == 70
    assert shadowed["disk_bytes"] > 1002 + 400 + 70  # metadata too: what removing it frees
    assert shadowed["clean"] == [
        "modelctl clean tiny --shadowed --root project",
        "modelctl clean tiny --incomplete --root project",
    ]
    foreign = folders["someone--else"]
    assert (foreign["kind"], foreign["models"], foreign["repo_id"], foreign["revision"]) == (
        "unnamed",
        [],
        "someone/else",
        "main",
    )
    assert foreign["clean"] == ["modelctl clean --unnamed --root user"]
    assert folders["by-hand"]["repo_id"] is None and folders["by-hand"]["bytes"] == 50
    project_root = _root(report, "project")
    assert project_root["folder_count"] == 3
    assert project_root["disk_bytes"] == sum(
        f["disk_bytes"] for f in report["folders"] if f["root"] == "project"
    )
    assert project_root["shadowed_bytes"] == shadowed["disk_bytes"]
    assert project_root["unnamed_bytes"] == folders["old-model"]["disk_bytes"] + 50
    assert _root(report, "legacy")["folder_count"] == 0
    assert report["summary"]["disk_bytes"] == sum(r["disk_bytes"] for r in report["roots"])
    assert report["summary"]["partial_bytes"] == shadowed["partial_bytes"]

    human = cli("du")
    assert human.exit_code == 0, human.stderr
    assert "Registry:" in human.stderr and "Registry:" not in human.stdout
    for text in (
        "tiny (in use)",
        "no registry model names it (someone/else@main)",
        "no registry model names it (no record)",
        "modelctl clean --unnamed --root user",
        "modelctl clean tiny --shadowed --root project",
        "legacy root",
        "Total:",
    ):
        assert text in human.stdout


def test_every_clean_du_shows_removes_what_it_stands_for(
    cli: Run, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    paths = _layout(tmp_path, project)
    commands = {c for f in cli.json("du")["folders"] for c in f["clean"]}
    leftovers = [c for c in commands if "--incomplete" in c]
    for command in leftovers:  # the leftovers alone first: the folder stays
        done = cli.json(*shlex.split(command)[1:], "--yes")
        assert done["items"] and all(i["removed"] for i in done["items"])
    assert (paths["shadowed"] / "model.safetensors").exists()
    assert _folders(cli.json("du"))["tiny"]["partial_bytes"] == 0
    # A snapshot: once the copy in use is gone, the shadowed one is in use; so remove it first.
    for command in sorted(commands - set(leftovers), key=lambda c: "--shadowed" not in c):
        result = cli(*shlex.split(command)[1:], "--yes")
        assert result.exit_code == 0, result.stderr
    assert cli.json("du")["folders"] == []
    assert not any(p.exists() for p in paths.values())
    assert (project / "models" / ".hidden").is_dir() and (project / "models" / "README.txt").exists()


def test_unnamed_in_the_user_root_only_when_named_and_never_in_the_shared_root(
    cli: Run, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    put_model(shared / "stranger", {"a.bin": b"s" * 10}, repo_id="org/stranger")
    registry("storage:\n  shared: " + str(shared) + "\n" + TINY)
    paths = _layout(tmp_path, project)
    by_default = cli.json("clean", "--unnamed", "--dry-run")
    assert by_default["dry_run"] is True
    assert {(i["model"], Path(i["path"]).name) for i in by_default["items"]} == {
        (None, "old-model"),
        (None, "by-hand"),
    }
    assert "holds org/old@main" in next(i["reason"] for i in by_default["items"] if "old" in i["path"])
    user = cli.json("clean", "--unnamed", "--root", "user", "--dry-run")
    assert [Path(i["path"]).name for i in user["items"]] == ["someone--else"]
    assert cli.json("clean", "--unnamed", "--root", "shared", "--dry-run")["items"] == []
    stranger = _folders(cli.json("du"))["stranger"]
    assert stranger["kind"] == "unnamed" and stranger["clean"] == []

    refused = cli("clean", "--unnamed")  # no terminal: --yes or nothing
    assert refused.exit_code == 2 and "needs --yes" in refused.stderr
    assert paths["dropped"].exists()
    assert cli("clean", "tiny", "--unnamed").exit_code == 2  # folders no model names: no MODEL
    cli.json("clean", "--unnamed", "--yes")
    assert not paths["dropped"].exists() and not paths["handmade"].exists()
    assert paths["foreign"].exists() and paths["in_use"].exists() and paths["shadowed"].exists()
    assert (shared / "stranger" / "a.bin").exists()


def test_unnamed_never_follows_a_symlink(
    cli: Run, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    outside = tmp_path / "precious"
    put_files(outside, {"keep.bin": b"k"})
    (project / "models").mkdir()
    (project / "models" / "link").symlink_to(outside)
    report = cli.json("du")
    assert report["folders"] == []
    assert any("link is a symlink" in w for w in report["warnings"])
    assert cli.json("clean", "--unnamed", "--yes")["items"] == []
    assert (outside / "keep.bin").exists() and (project / "models" / "link").is_symlink()


def test_shadowed_removes_hidden_copies_never_the_one_in_use(
    cli: Run, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    home = tmp_path / "home"
    put_model(home / "org--tiny", FILES)
    put_model(project / "models" / "tiny", FILES)
    put_model(project / "checkpoints" / "tiny", FILES)
    put_partial(project / "models" / "tiny", "model.safetensors", b"p" * 10)
    both = cli.json("clean", "--shadowed", "--incomplete", "--dry-run")  # the folder takes its partials
    assert sorted(Path(i["path"]).parent.name for i in both["items"]) == ["checkpoints", "models"]
    done = cli.json("clean", "--shadowed", "--yes")
    assert sorted(i["root"] for i in done["items"]) == ["legacy", "project"]
    assert all(i["reason"].startswith(f"shadowed by {home / 'org--tiny'}") for i in done["items"])
    assert (home / "org--tiny" / "config.json").exists()
    assert not (project / "models" / "tiny").exists() and not (project / "checkpoints" / "tiny").exists()
    assert cli.json("clean", "--shadowed", "--root", "user", "--yes")["items"] == []  # it is in use

    # A complete project copy and an incomplete user copy: the user one is shadowed, and only
    # `--root user` (shared by every project) reaches it.
    put_model(project / "models" / "tiny", FILES)
    put_model(home / "org--tiny", FILES, listing={**FILES, "extra.json": b"{}"})
    assert cli.json("clean", "--shadowed", "--dry-run")["items"] == []
    in_user = cli.json("clean", "tiny", "--shadowed", "--root", "user", "--yes")
    assert [i["path"] for i in in_user["items"]] == [str(home / "org--tiny")]
    assert not (home / "org--tiny").exists() and (project / "models" / "tiny" / "config.json").exists()


def test_download_to_project_warns_when_the_user_copy_shadows_it(
    cli: Run, downloaded: Path, project: Path
) -> None:
    result = cli("download", "tiny", "--to", "project")
    assert result.exit_code == 0, result.stderr
    assert "Warning:" in result.stderr
    folded = " ".join(result.stderr.split())
    assert f"{project / 'models' / 'tiny'} (project root) is shadowed by {downloaded} (user root)" in folded
    assert "modelctl clean tiny --root user" in folded
    assert "modelctl clean tiny --shadowed --root project" in folded
    assert cli("path", "tiny").stdout.strip() == str(downloaded)
    again = cli("download", "tiny")  # into the copy in use: nothing to warn about
    assert again.exit_code == 0 and "shadowed" not in again.stderr


def test_doctor_hint_for_partials_in_a_shadowed_copy_completes_that_copy(
    cli: Run, downloaded: Path, project: Path, hub: HubServer
) -> None:
    cli.json("download", "tiny", "--to", "project")
    copy = project / "models" / "tiny"
    data = (copy / "weights" / "big.bin").read_bytes()
    (copy / "weights" / "big.bin").unlink()
    put_partial(copy, "weights/big.bin", data[:1_000_000])
    record = read_record(copy)
    assert record is not None
    entry = record.by_path()[BIG]
    sidecar = {"path": "weights/big.bin", "size": entry.size, "sha256": entry.sha256}
    sidecar |= {"version": 1, "blob_id": entry.blob_id, "etag": f'"{hub.repos["org/tiny"].etag(BIG)}"'}
    sidecar_of(copy, "weights/big.bin").write_text(json.dumps(sidecar))  # as an interrupted run leaves it
    check = next(c for c in cli.json("doctor")["checks"] if c["area"] == "leftovers")
    assert "a shadowed copy" in check["detail"]
    assert check["hint"].startswith("`modelctl download tiny --to project` completes them")
    assert "`modelctl clean tiny --incomplete --root project` removes them" in check["hint"]
    hinted = check["hint"].split("`")[1]
    resumed = cli.json(*shlex.split(hinted)[1:])
    [big] = [f for m in resumed["models"] for f in m["files"] if f["path"] == "weights/big.bin"]
    # the user root holds the verified file: linked from there rather than resumed
    assert big["action"] == "reuse" and big["source"] == str(downloaded / "weights" / "big.bin")
    assert (copy / "weights" / "big.bin").read_bytes() == data
    assert not any(c["area"] == "leftovers" for c in cli.json("doctor")["checks"])
