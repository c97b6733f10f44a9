"""Hostile names and links: what a repo can list and what a user can leave in a root.

Every scenario runs the real executable against the fixture Hub and ends with the same checks as
the rest of the suite: files intact, nothing written outside the roots, the documented exit code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import TINY
from tests.hubserver import HubServer, Repo, git_blob_sha1, model_files
from tests.process import assert_nothing_bad, run

LONG = "n" * 250 + ".json"  # 255 bytes: the longest name most filesystems take


def test_repo_paths_that_look_like_our_bookkeeping_are_plain_content(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    files = {
        "config.json": b'{"model_type": "real"}',
        "config.json.partial": b"fourteen bytes",
        "weights.partial.json": b'{"version": 1, "etag": "x", "size": 3}',
        "x.partial": b"x",
        LONG: b"{}",
    }
    hub.add(Repo("org/tiny", files))
    registry(TINY)
    folder = tmp_path / "home" / "org--tiny"
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name
    assert run(project, "verify", "tiny").returncode == 0
    cleaned = run(project, "clean", "--incomplete", "--yes", "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout)["items"] == []
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def test_a_listing_naming_a_file_twice_is_refused(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    repo = hub.add(Repo("org/tiny", model_files()))
    twin = repo.entry("config.json")
    other = {**twin, "oid": git_blob_sha1(b"{}"), "size": 2}
    registry(TINY)
    folder = tmp_path / "home" / "org--tiny"
    for extra in ([twin], [other]):
        repo.extra_listing = extra
        result = run(project, "download", "tiny")
        assert result.returncode == 1, result.stderr
        assert "lists 'config.json' twice; nothing was downloaded" in result.stderr
        assert hub.file_gets() == []
        assert not folder.exists() or not [p for p in folder.iterdir() if p.name != ".modelctl"]


def test_control_characters_in_listed_names_are_refused(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    repo = hub.add(Repo("org/tiny", model_files()))
    registry(TINY)
    for name in ("\x1b]0;owned\x07.json", "a\rb.json"):
        repo.extra_listing = [{"type": "file", "path": name, "size": 2, "oid": git_blob_sha1(b"{}")}]
        result = run(project, "download", "tiny")
        assert result.returncode == 1, result.stderr
        assert "control characters" in result.stderr
        assert "\x1b" not in result.stderr and "\r" not in result.stderr
        assert hub.file_gets() == []


def test_a_model_folder_linked_outside_its_root_is_never_written_through(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "home").mkdir()
    link = tmp_path / "home" / "org--tiny"
    link.symlink_to(outside)
    for command in ("download", "ensure"):
        result = run(project, command, "tiny")
        assert result.returncode == 1, result.stderr
        assert f"{link} is a symlink to {outside}, outside the user root" in result.stderr
        assert list(outside.iterdir()) == []
        assert hub.file_gets() == []
    listed = run(project, "list", "--json")
    assert "symlink to outside the user root" in " ".join(json.loads(listed.stdout)["warnings"])
    link.unlink()
    meta_out = tmp_path / "meta-outside"
    meta_out.mkdir()
    link.mkdir()
    (link / ".modelctl").symlink_to(meta_out)
    result = run(project, "download", "tiny")
    assert result.returncode == 1 and f"{link / '.modelctl'} is a symlink" in result.stderr
    assert list(meta_out.iterdir()) == []
    assert_nothing_bad(link, hub.repos["org/tiny"].files)


def test_a_lone_surrogate_or_a_file_that_is_also_a_folder_is_refused_before_any_byte(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    repo = hub.add(Repo("org/tiny", model_files()))
    registry(TINY)
    folder = tmp_path / "home" / "org--tiny"
    cases = {
        "not valid Unicode (a lone surrogate)": [
            {"type": "file", "path": "bad\ud800.json", "size": 2, "oid": git_blob_sha1(b"{}")}
        ],
        "lists both a file 'config.json' and 'config.json/b.json' inside it as a folder": [
            {"type": "file", "path": "config.json/b.json", "size": 2, "oid": git_blob_sha1(b"{}")}
        ],
    }
    for expected, extra in cases.items():
        repo.extra_listing = extra
        for args in (("download", "tiny"), ("ensure",), ("lock",), ("add", "org/tiny", "--id", "again")):
            result = run(project, *args)
            assert result.returncode == 1, (args, result.stderr)
            assert expected in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr
        assert hub.file_gets() == []
        assert not (project / "models.lock").exists()
        assert "again" not in (project / "models.yaml").read_text()
        assert not folder.exists() or not [p for p in folder.iterdir() if p.name != ".modelctl"]
