"""`modelctl ensure`: repair only what is bad, proven by the fixture Hub's byte counters."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

from tests.conftest import TINY, Run, put_partial
from tests.hubserver import Fault, HubServer

BIG = "weights/big.bin"


def test_every_corruption_is_repaired_fetching_only_the_bad_files(
    cli: Run, hub: HubServer, downloaded: Path
) -> None:
    d = downloaded
    files = hub.repos["org/tiny"].files
    st = d / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-10])  # truncated safetensors
    gg = d / "model-q4.gguf"
    gg.write_bytes(b"GGML" + gg.read_bytes()[4:])  # bad magic
    big = bytearray((d / BIG).read_bytes())
    big[12345] ^= 0x80
    (d / BIG).write_bytes(bytes(big))  # flipped byte in a large LFS file
    (d / "config.json").write_bytes(b"")  # empty
    (d / "tokenizer.json").write_bytes(b"{" + (d / "tokenizer.json").read_bytes()[1:-1] + b",")  # invalid
    (d / "README.md").unlink()  # missing
    (d / "notes.txt").write_text("mine")  # extra: left alone
    leftover = put_partial(d, "weights/x.bin", b"1")  # leftover: left alone (clean removes it)
    result = cli("ensure", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["health_before"], data["health"]) == ("unhealthy", "healthy")
    bad = {"model.safetensors", "model-q4.gguf", BIG, "config.json", "tokenizer.json", "README.md"}
    assert set(data["repaired"]["tiny"]) == bad
    assert hub.served() == {name: len(files[name]) for name in bad}  # only the bad files, once each
    for name, content in files.items():
        assert (d / name).read_bytes() == content
    assert (d / "notes.txt").read_text() == "mine"
    assert leftover.read_bytes() == b"1"
    assert not (d / ".modelctl" / "quarantine").exists() or not any(
        (d / ".modelctl" / "quarantine").iterdir()
    )


def test_healthy_model_fetches_nothing(cli: Run, hub: HubServer, downloaded: Path) -> None:
    result = cli("ensure")
    assert result.exit_code == 0
    assert "Nothing to repair." in result.stdout and "Health: healthy" in result.stdout
    assert hub.file_gets() == []


def test_quiet_prints_one_path_per_model(cli: Run, hub: HubServer, downloaded: Path) -> None:
    (downloaded / "config.json").write_bytes(b"{}")
    result = cli("ensure", "-q")
    assert result.exit_code == 0
    assert result.stdout == f"{downloaded}\n"
    assert result.stderr == ""


def test_missing_required_model_is_downloaded(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    data = cli.json("ensure")
    assert data["repaired"] == {"tiny": ["*"]}
    assert data["health"] == "healthy"
    for name, content in hub.repos["org/tiny"].files.items():
        assert (tmp_path / "home" / "org--tiny" / name).read_bytes() == content


def test_failed_repair_puts_the_bad_files_back_and_names_them(
    cli: Run, hub: HubServer, downloaded: Path
) -> None:
    damaged = bytearray((downloaded / BIG).read_bytes())
    damaged[7] ^= 1
    (downloaded / BIG).write_bytes(bytes(damaged))
    hub.faults[BIG] = Fault(status=500, times=None)
    result = cli("ensure", "--retries", "1")
    assert result.exit_code == 1
    assert f"Repair failed, the bad files were put back (tiny: {BIG})" in result.stderr
    assert (downloaded / BIG).read_bytes() == bytes(damaged)  # restored, not lost
    assert not any((downloaded / ".modelctl" / "quarantine").glob("*/**/*.bin"))


def test_offline_reports_without_repairing(cli: Run, hub: HubServer, downloaded: Path) -> None:
    (downloaded / "config.json").write_bytes(b"")
    result = cli("ensure", "--offline", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["health"] == "unhealthy"
    assert hub.requests == []


def test_header_length_corruption_repaired(cli: Run, hub: HubServer, downloaded: Path) -> None:
    st = downloaded / "model.safetensors"
    raw = bytearray(st.read_bytes())
    raw[:8] = struct.pack("<Q", len(raw) * 2)
    st.write_bytes(bytes(raw))
    data = cli.json("ensure")
    assert data["repaired"] == {"tiny": ["model.safetensors"]}
    assert st.read_bytes() == hub.repos["org/tiny"].files["model.safetensors"]


def test_shared_read_only_store_is_used_never_written_and_repaired_elsewhere(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "nfs"
    registry(TINY)
    cli.json("download", "tiny", "--to", str(shared))  # someone filled the shared store
    registry("storage:\n  shared: " + str(shared) + "\n" + TINY)
    before = {p: p.read_bytes() for p in (shared / "tiny").rglob("*") if p.is_file()}
    listed = cli.json("list")["models"][0]
    assert (listed["status"], listed["root"]) == ("present", "shared")
    assert [r["name"] for r in cli.json("list")["roots"]] == ["user", "shared", "project", "legacy"]
    assert cli.json("verify")["health"] == "healthy"
    hub.reset_counters()
    assert cli.json("download", "tiny")["models"][0]["root"] == "shared"  # complete there: used in place
    assert not (tmp_path / "home" / "org--tiny").exists() and hub.file_gets() == []
    assert cli.json("download", "tiny", "--to", "user")["models"][0]["root"] == "user"  # a copy, asked for
    assert (tmp_path / "home" / "org--tiny" / "config.json").exists()
    cli.json("clean", "tiny", "--root", "user", "--yes")
    (shared / "tiny" / "config.json").write_bytes(b"")  # the share goes bad (outside modelctl)
    before[shared / "tiny" / "config.json"] = b""
    data = cli.json("ensure")
    assert data["repaired"] == {"tiny": ["*"]} and data["health"] == "healthy"
    assert data["models"][0]["root"] == "user"
    after = {p: p.read_bytes() for p in (shared / "tiny").rglob("*") if p.is_file()}
    assert after == before  # the shared store was not touched (no quarantine, cache or manifest write)
    assert cli.json("clean", "tiny", "--yes")["items"][0]["root"] == "user"
    assert (shared / "tiny" / "model.safetensors").exists()
    assert cli("download", "tiny", "--to", "shared").exit_code == 1
