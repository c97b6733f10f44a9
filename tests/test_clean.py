"""`modelctl clean` and `modelctl checksum`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from tests.conftest import TINY, Run, put_partial

BIG = "weights/big.bin"


def test_incomplete_removes_only_leftovers(cli: Run, downloaded: Path) -> None:
    partial = put_partial(downloaded, "weights/x.bin", b"123")
    (downloaded / "weights" / "x.bin.partial").write_bytes(b"a repo file")  # content: never a leftover
    (downloaded / ".modelctl" / "lock.owner").write_text("99999 host\n")
    (downloaded / ".modelctl" / "quarantine" / "old").mkdir(parents=True)
    (downloaded / ".modelctl" / "quarantine" / "old" / "config.json").write_text("bad")
    dry = cli.json("clean", "--incomplete", "--dry-run")
    assert dry["dry_run"] is True and dry["bytes_freed"] == 0
    assert {Path(i["path"]).name for i in dry["items"]} == {
        partial.name,
        partial.with_suffix(".json").name,
        "lock.owner",
        "old",
    }
    assert partial.exists()
    done = cli.json("clean", "--incomplete", "--yes")
    assert all(i["removed"] for i in done["items"])
    assert not partial.exists() and not partial.with_suffix(".json").exists()
    assert (downloaded / "weights" / "x.bin.partial").read_bytes() == b"a repo file"
    assert not (downloaded / ".modelctl" / "quarantine" / "old").exists()
    assert (downloaded / BIG).exists() and (downloaded / ".modelctl" / "manifest.json").exists()


def test_corrupted_removes_only_bad_files(cli: Run, downloaded: Path) -> None:
    (downloaded / "config.json").write_bytes(b"")
    done = cli.json("clean", "--corrupted", "--yes")
    assert [(Path(i["path"]).name, i["reason"]) for i in done["items"]] == [("config.json", "fails verify")]
    assert not (downloaded / "config.json").exists()
    assert (downloaded / "tokenizer.json").exists()


def test_whole_model_needs_a_name_and_yes_without_a_terminal(cli: Run, downloaded: Path) -> None:
    assert cli("clean").exit_code == 2
    refused = cli("clean", "tiny")
    assert refused.exit_code == 2
    assert "without a terminal to confirm it needs --yes" in refused.stderr
    assert downloaded.exists()
    done = cli.json("clean", "tiny", "--yes")
    assert done["bytes_freed"] > 3_000_000
    assert not downloaded.exists()


def test_root_filter_and_shadowed_copies(cli: Run, downloaded: Path, project: Path) -> None:
    cli.json("download", "tiny", "--to", "project")
    done = cli.json("clean", "tiny", "--root", "project", "--yes")
    assert [i["root"] for i in done["items"]] == ["project"]
    assert downloaded.exists() and not (project / "models" / "tiny").exists()


def test_never_follows_a_symlink_out_of_a_root(
    cli: Run, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.bin").write_bytes(b"data")
    registry(TINY)
    (project / "models").mkdir()
    (project / "models" / "tiny").symlink_to(outside)
    done = cli.json("clean", "tiny", "--yes")
    assert done["items"] == []  # the symlinked folder points outside: it is not a model here
    assert (outside / "keep.bin").read_bytes() == b"data"
    inside = project / "models" / "store"
    inside.mkdir()
    (inside / "w.bin").write_bytes(b"x")
    (project / "models" / "tiny").unlink()
    (project / "models" / "tiny").symlink_to(inside)
    (inside / "evil").symlink_to(outside)
    done = cli.json("clean", "tiny", "--yes")
    assert [Path(i["path"]).name for i in done["items"]] == ["tiny"]
    assert not (project / "models" / "tiny").exists()  # the link is gone…
    assert (inside / "w.bin").exists() and (outside / "keep.bin").exists()  # …not what it points to


def test_checksum_lines_are_ready_to_paste(cli: Run, project: Path) -> None:
    (project / "a.bin").write_bytes(b"hello")
    result = cli("checksum", "a.bin", "--algo", "md5")
    assert result.exit_code == 0
    assert result.stdout == f"md5:{hashlib.md5(b'hello').hexdigest()}  a.bin\n"
    sha = cli("checksum", "a.bin")
    assert sha.stdout.startswith(f"sha256:{hashlib.sha256(b'hello').hexdigest()}  ")
    missing = cli("checksum", "nope.bin")
    assert missing.exit_code == 4 and "Cannot read nope.bin" in missing.stderr
    assert cli("checksum", "a.bin", "--algo", "crc").exit_code == 2


def test_removing_a_whole_model_first_names_the_files_that_are_not_the_models(
    cli: Run, downloaded: Path
) -> None:
    (downloaded / "my-notes.txt").write_text("mine")
    dry = cli.json("clean", "tiny", "--dry-run")
    (item,) = dry["items"]
    assert item["path"] == str(downloaded)
    assert item["reason"] == "whole model, with 1 file(s) that are not the model's: my-notes.txt"
    assert (downloaded / "my-notes.txt").exists()
