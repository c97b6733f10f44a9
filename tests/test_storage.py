"""Storage precedence: user → project → legacy, shadowing, unreadable roots, symlinks, status."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelctl.core.registry import StorageConfig
from modelctl.store.storage import resolve_roots
from modelctl.store.workspace import MISSING, PARTIAL, PRESENT, UNVERIFIED, list_models, open_workspace
from tests.conftest import TWO_MODELS, put_files, put_model, put_partial, write

GOOD = {"config.json": b"{}", "model.safetensors": b"x" * 10}


@pytest.fixture
def roots(project: Path, tmp_path: Path) -> dict[str, Path]:
    write(project / "models.yaml", TWO_MODELS)
    return {"user": tmp_path / "home", "project": project / "models", "legacy": project / "checkpoints"}


def states(project: Path) -> dict[str, object]:
    report = list_models(open_workspace(cwd=project))
    return {m.spec.id: m for m in report.models}


def test_model_in_legacy_only_is_found_there(project: Path, roots: dict[str, Path]) -> None:
    put_model(roots["legacy"] / "tiny", GOOD)
    tiny = states(project)["tiny"]
    assert tiny.status == PRESENT
    assert tiny.found.root.name == "legacy"
    assert tiny.found.path == roots["legacy"] / "tiny"
    assert tiny.shadowed == ()
    assert tiny.bytes == 12
    assert list(tiny.files.items()) == [("config.json", 2), ("model.safetensors", 10)]


def test_user_root_wins_and_project_copy_is_shadowed(project: Path, roots: dict[str, Path]) -> None:
    put_model(roots["project"] / "tiny", GOOD)
    put_model(roots["user"] / "org--tiny", GOOD)
    tiny = states(project)["tiny"]
    assert tiny.found.root.name == "user"
    assert tiny.found.path == roots["user"] / "org--tiny"  # the user root names folders by repo
    assert [loc.root.name for loc in tiny.shadowed] == ["project"]
    assert tiny.status == PRESENT


def test_an_incomplete_or_unrecorded_copy_never_hides_a_complete_one(
    project: Path, roots: dict[str, Path]
) -> None:
    put_model(roots["project"] / "tiny", GOOD)
    put_files(roots["user"] / "org--tiny", {"notes.txt": b"mine"})  # made by hand: no record
    tiny = states(project)["tiny"]
    assert (tiny.status, tiny.found.root.name) == (PRESENT, "project")
    assert [loc.root.name for loc in tiny.shadowed] == ["user"]
    put_model(roots["user"] / "org--tiny", {"config.json": b"{}"}, listing=GOOD)  # interrupted download
    tiny = states(project)["tiny"]
    assert (tiny.status, tiny.found.root.name) == (PRESENT, "project")
    shutil.rmtree(roots["project"] / "tiny")
    tiny = states(project)["tiny"]
    assert (tiny.status, tiny.found.root.name) == (PARTIAL, "user")
    assert tiny.missing == ("model.safetensors",)


def test_status_partial_and_missing(project: Path, roots: dict[str, Path]) -> None:
    listing = {"model.safetensors": b"1", "config.json": b"{}"}
    put_model(roots["project"] / "tiny", {"model.safetensors": b"1"}, listing=listing)
    put_partial(roots["project"] / "tiny", "config.json", b"12")
    (roots["project"] / "Big-Model").mkdir(parents=True)
    found = states(project)
    tiny, big = found["tiny"], found["big"]
    assert tiny.status == PARTIAL
    assert tiny.missing == ("config.json",)
    assert tiny.partials == ("config.json",)
    assert list(tiny.files) == ["model.safetensors"]  # partial bytes are not a file
    assert big.status == PARTIAL  # an empty folder is not a model
    put_files(roots["project"] / "tiny", {"config.json": b"{}"})
    shutil.rmtree(roots["project"] / "tiny" / ".modelctl" / "partials")
    # on disk at last, but nothing has checked its bytes: not called present before verify does
    assert states(project)["tiny"].status == UNVERIFIED
    put_model(roots["project"] / "tiny", listing)
    assert states(project)["tiny"].status == PRESENT
    assert states(project)["big"].found.path == roots["project"] / "Big-Model"


def test_a_folder_without_a_record_is_unverified_and_one_of_another_repo_is_not_this_model(
    project: Path, roots: dict[str, Path]
) -> None:
    put_files(roots["project"] / "tiny", GOOD)
    assert states(project)["tiny"].status == UNVERIFIED
    put_model(roots["project"] / "tiny", GOOD, repo_id="someone/else")
    tiny = states(project)["tiny"]
    assert (tiny.status, tiny.found) == ("other repo", None)
    assert [loc.path for loc in tiny.others] == [roots["project"] / "tiny"]
    put_model(roots["project"] / "tiny", GOOD, revision="v9")
    assert states(project)["tiny"].status == "other revision"


def test_metadata_and_foreign_cache_folders_are_not_model_files(
    project: Path, roots: dict[str, Path]
) -> None:
    put_files(
        roots["project"] / "tiny",
        {
            **GOOD,
            ".modelctl/manifest.json": b"{}",
            ".cache/huggingface/download/x.incomplete": b"1",
            "sub/a.bin": b"123",
        },
    )
    tiny = states(project)["tiny"]
    assert list(tiny.files) == ["config.json", "model.safetensors", "sub/a.bin"]


def test_symlink_out_of_a_root_is_not_followed(project: Path, roots: dict[str, Path], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    put_files(outside / "tiny", GOOD)
    roots["project"].mkdir(parents=True)
    (roots["project"] / "tiny").symlink_to(outside / "tiny")
    put_files(roots["legacy"] / "big", {})
    (roots["legacy"] / "Big-Model").mkdir(parents=True)
    (roots["legacy"] / "Big-Model" / "weights.bin").symlink_to(outside / "tiny" / "model.safetensors")
    report = list_models(open_workspace(cwd=project))
    tiny, big = report.models
    assert tiny.status == MISSING
    assert any("symlink to outside the project root" in w for w in report.warnings)
    assert big.files == {}
    assert any("weights.bin: symlink to outside the root, not followed" in w for w in report.warnings)


def test_symlink_inside_the_root_is_followed(project: Path, roots: dict[str, Path]) -> None:
    put_model(roots["project"] / "store" / "tiny", GOOD)
    (roots["project"] / "tiny").symlink_to(roots["project"] / "store" / "tiny")
    tiny = states(project)["tiny"]
    assert tiny.status == PRESENT
    assert tiny.bytes == 12


def test_root_that_is_a_file_is_skipped_with_warning(project: Path, roots: dict[str, Path]) -> None:
    roots["user"].parent.mkdir(parents=True, exist_ok=True)
    roots["user"].write_text("not a folder")
    put_files(roots["legacy"] / "tiny", GOOD)
    report = list_models(open_workspace(cwd=project))
    assert report.models[0].found.root.name == "legacy"
    assert report.warnings == (f"user root skipped: {roots['user']} is not a folder",)


def test_unreadable_root_is_skipped_with_warning(project: Path, roots: dict[str, Path]) -> None:
    put_files(roots["project"] / "tiny", GOOD)
    put_files(roots["legacy"] / "tiny", GOOD)
    code = (
        "import json; from modelctl.store.workspace import list_models, open_workspace; "
        "r = list_models(open_workspace()); "
        "print(json.dumps([r.models[0].found.root.name, list(r.warnings)]))"
    )
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:  # root reads any folder: drop the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux setpriv to drop CAP_DAC_OVERRIDE")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    os.chmod(roots["project"], 0)
    try:
        result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    finally:
        os.chmod(roots["project"], 0o755)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f'["legacy", ["project root skipped: {roots["project"]} cannot be read (Permission denied)"]]'
    )


def test_modelctl_home_overrides_registry_user_root(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = StorageConfig.beside(
        project, user=tmp_path / "from-yaml", project=project / "m", legacy=project / "c"
    )
    assert resolve_roots(storage)[0].path == tmp_path / "home"
    monkeypatch.delenv("MODELCTL_HOME")
    assert resolve_roots(storage)[0].path == tmp_path / "from-yaml"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    default = resolve_roots(storage.with_paths(user=None))
    assert [r.name for r in default] == ["user", "project", "legacy"]
    assert default[0].path == tmp_path / "xdg" / "modelctl"
