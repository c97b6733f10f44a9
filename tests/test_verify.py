"""`modelctl verify`: every corruption case found, offline, with the cache and the exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY, Run, put_model, put_partial
from tests.hubserver import HubServer, Repo, model_files

BIG = "weights/big.bin"


def bad_files(data: dict) -> dict[str, set[str]]:
    return {m["id"]: set(m["bad_files"]) for m in data["models"]}


def finding(data: dict, path: str) -> list[tuple[str, str, str]]:
    return [
        (f["check"], f["status"], f["detail"])
        for m in data["models"]
        for f in m["findings"]
        if f["path"] == path
    ]


def test_healthy_model_verifies_offline(cli: Run, downloaded: Path, hub: HubServer) -> None:
    hub.reset_counters()
    data = cli.json("verify", env={"HF_HUB_OFFLINE": "1"})
    assert data["health"] == "healthy" and data["level"] == "sha256"
    (model,) = data["models"]
    assert model["ok"] is True and model["bad_files"] == []
    checks = {(f["path"], f["check"]) for f in model["findings"] if f["status"] == "ok"}
    assert ("model.safetensors", "sha256") in checks and ("config.json", "git-sha1") in checks
    assert hub.requests == []
    assert data["hashed_bytes"] == 0 and data["cached_files"] == 7  # the download's own checks
    fresh = cli.json("verify", "--no-cache", env={"HF_HUB_OFFLINE": "1"})
    assert fresh["health"] == "healthy" and fresh["hashed_bytes"] > 3_000_000
    assert hub.requests == []


def test_every_corruption_is_found(cli: Run, downloaded: Path, project: Path) -> None:
    d = downloaded
    st = d / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-10])  # truncated safetensors
    gg = d / "model-q4.gguf"
    data = bytearray(gg.read_bytes())
    data[:4] = b"GGML"  # GGUF with bad magic (same size)
    gg.write_bytes(bytes(data))
    big = bytearray((d / BIG).read_bytes())
    big[len(big) // 2] ^= 0x01  # flipped byte in a large LFS file
    (d / BIG).write_bytes(bytes(big))
    (d / "config.json").write_bytes(b"")  # empty config.json
    tok = d / "tokenizer.json"
    tok.write_bytes(tok.read_bytes()[:-1] + b",")  # invalid JSON, same size
    (d / "README.md").unlink()  # missing
    (d / "notes.txt").write_text("extra")  # extra file
    put_partial(d, "weights/other.bin", b"123")  # leftover partial
    result = cli("verify", "--json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["health"] == "unhealthy"
    assert bad_files(report) == {
        "tiny": {"model.safetensors", "model-q4.gguf", BIG, "config.json", "tokenizer.json", "README.md"}
    }
    assert finding(report, "model.safetensors")[0][:2] == ("size", "bad")
    assert finding(report, "model-q4.gguf")[0] == ("format", "bad", "bad magic b'GGML' (expected b'GGUF')")
    assert finding(report, BIG)[0][:2] == ("sha256", "bad")
    assert finding(report, "config.json")[0] == ("size", "bad", "empty (0 bytes)")
    assert (
        finding(report, "tokenizer.json")[0][1] == "bad"
        and "invalid JSON" in finding(report, "tokenizer.json")[0][2]
    )
    assert finding(report, "README.md") == [("present", "bad", "missing")]
    assert finding(report, "notes.txt") == [("extra", "note", "not a file of the model's commit")]
    assert finding(report, "weights/other.bin") == [("leftover", "note", "partial download (resumable)")]
    table = cli("verify")
    assert table.exit_code == 3
    assert "tiny: 6 bad of" in table.stdout and "Health: unhealthy" in table.stdout


def test_without_a_manifest_format_checks_still_catch_damage(
    cli: Run, registry: Callable[..., Path], project: Path, downloaded: Path
) -> None:
    registry(
        "models:\n  - id: hand\n    repo_id: org/hand\n    files: [model.safetensors, model-q4.gguf, config.json]\n"
    )
    folder = project / "models" / "hand"
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "model-q4.gguf", "config.json"):
        shutil.copy(downloaded / name, folder / name)
    unverified = cli.json("verify", code=3)  # no record: nothing says these are the model's files
    assert bad_files(unverified) == {"hand": set()}
    assert [f[:2] for f in finding(unverified, "")] == [("record", "bad")]
    st = folder / "model.safetensors"
    raw = bytearray(st.read_bytes())
    raw[:8] = struct.pack("<Q", len(raw) * 4)  # safetensors header length past the end
    st.write_bytes(bytes(raw))
    gg = folder / "model-q4.gguf"
    gg.write_bytes(gg.read_bytes()[:-40])  # GGUF truncated inside tensor data
    report = cli.json("verify", code=3)
    assert "does not fit" in finding(report, "model.safetensors")[0][2]
    assert "truncated" in finding(report, "model-q4.gguf")[0][2]


def test_unreadable_file_is_bad(downloaded: Path, project: Path) -> None:
    (downloaded / "config.json").chmod(0)
    command = [sys.executable, "-m", "modelctl", "verify", "--json", "--no-cache"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux setpriv to drop CAP_DAC_OVERRIDE")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    try:
        result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    finally:
        (downloaded / "config.json").chmod(0o644)
    assert result.returncode == 3, result.stderr
    assert finding(json.loads(result.stdout), "config.json") == [("readable", "bad", "permission denied")]


def test_cache_skips_unchanged_files_and_sees_changes(cli: Run, downloaded: Path) -> None:
    first = cli.json("verify", "--no-cache")
    assert first["hashed_bytes"] > 3_000_000 and first["cached_files"] == 0
    second = cli.json("verify")
    assert second["hashed_bytes"] == 0 and second["cached_files"] == 7
    big = bytearray((downloaded / BIG).read_bytes())
    big[10] ^= 1
    (downloaded / BIG).write_bytes(bytes(big))  # same size, new mtime
    third = cli.json("verify", code=3)
    assert third["hashed_bytes"] == len(big) and bad_files(third) == {"tiny": {BIG}}
    fresh = cli.json("verify", "--no-cache", code=3)
    assert fresh["cached_files"] == 0 and fresh["hashed_bytes"] > 3_000_000
    again = cli.json("verify", code=3)  # known bad at this stat: no need to hash it again
    assert again["hashed_bytes"] == 0 and bad_files(again) == {"tiny": {BIG}}
    (downloaded / ".modelctl" / "manifest.json").write_text("{not json")  # damaged record: trusts nothing
    damaged = cli.json("verify", code=3)
    assert damaged["cached_files"] == 0 and [f[:2] for f in finding(damaged, "")] == [("record", "bad")]


def test_same_size_change_with_restored_mtime_is_caught_without_cache(cli: Run, downloaded: Path) -> None:
    cli.json("verify")
    path = downloaded / BIG
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # a tool that preserves mtime
    assert cli.json("verify", "--no-cache", code=3)["models"][0]["bad_files"] == [BIG]


def test_levels(cli: Run, downloaded: Path) -> None:
    big = bytearray((downloaded / BIG).read_bytes())
    big[5] ^= 1
    (downloaded / BIG).write_bytes(bytes(big))
    assert cli.json("verify", "--level", "size")["health"] == "healthy"  # same size: not seen
    assert cli.json("verify", "--level", "sha256", code=3)["health"] == "unhealthy"
    (downloaded / "README.md").write_bytes(b"x")
    assert cli.json("verify", "--level", "size", code=3)["models"][0]["bad_files"] == ["README.md"]
    assert cli("verify", "--level", "md5").exit_code == 2


def test_health_degraded_and_strict(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    hub.add(Repo("org/extra", model_files()))
    registry(TINY + "  - id: extra\n    repo_id: org/extra\n    required: false\n")
    cli.json("download", "--all")
    (tmp_path / "home" / "org--extra" / "config.json").write_bytes(b"{}")
    data = cli.json("verify")
    assert data["health"] == "degraded"
    assert cli("verify").exit_code == 0
    assert cli("verify", "--strict").exit_code == 3


def test_optional_models_not_downloaded_are_notes_unless_named(
    cli: Run, registry: Callable[..., Path], project: Path
) -> None:
    registry("models:\n  - id: opt\n    repo_id: org/opt\n    required: false\n")
    data = cli.json("verify")
    assert data["health"] == "healthy"
    assert data["models"][0]["findings"] == [
        {"path": "", "check": "present", "status": "note", "detail": "not downloaded in any root"}
    ]
    assert cli.json("verify", "opt")["health"] == "degraded"  # asked for by name: a problem
    assert cli("verify", "opt", "--strict").exit_code == 3


def test_checksum_pins_are_checked(cli: Run, registry: Callable[..., Path], project: Path) -> None:
    folder = project / "models" / "pinned"
    put_model(folder, {"w.bin": b"hello"}, repo_id="org/p")
    md5 = "5d41402abc4b2a76b9719d911017c592"
    registry(f"models:\n  - id: pinned\n    repo_id: org/p\n    checksums: {{w.bin: 'md5:{md5}'}}\n")
    data = cli.json("verify")
    assert data["health"] == "healthy"
    assert ("md5", "ok", "") in finding(data, "w.bin")
    (folder / "w.bin").write_bytes(b"hellO")
    bad = cli.json("verify", code=3)
    actual = hashlib.md5(b"hellO").hexdigest()
    assert finding(bad, "w.bin")[0] == ("md5", "bad", f"expected {md5}, got {actual}")


def test_many_files_of_varied_sizes_hash_as_hashlib(
    cli: Run, registry: Callable[..., Path], project: Path
) -> None:
    from modelctl.core.hashing import CHUNK, PIECE

    rng = random.Random(7)
    sizes = (0, 1, 4095, CHUNK - 1, CHUNK + 1, PIECE, PIECE + 3, 2 * PIECE + CHUNK + 5)
    files = {f"w{i}.bin": rng.randbytes(size) for i, size in enumerate(sizes)}  # LFS: sha256
    files.update({f"t{i}.txt": rng.randbytes(size) for i, size in enumerate(sizes[:5])})  # git-sha1
    folder = put_model(project / "models" / "many", files, repo_id="org/many")
    registry("models:\n  - id: many\n    repo_id: org/many\n")
    flipped = bytearray(files["w6.bin"])
    flipped[PIECE + 1] ^= 1  # in the second piece of the file
    (folder / "w6.bin").write_bytes(bytes(flipped))
    report = cli.json("verify", "--no-cache", code=3)
    assert report["hashed_bytes"] == sum(len(d) for d in files.values())
    assert bad_files(report) == {"many": {"w6.bin"}}
    expected, actual = hashlib.sha256(files["w6.bin"]).hexdigest(), hashlib.sha256(flipped).hexdigest()
    assert finding(report, "w6.bin") == [("sha256", "bad", f"expected {expected}, got {actual}")]
    for name in files:
        if name != "w6.bin":
            assert finding(report, name) == [("sha256" if name.endswith(".bin") else "git-sha1", "ok", "")]
    again = cli.json("verify", code=3)  # the record keeps what was found
    assert again["hashed_bytes"] == 0 and again["cached_files"] == len(files)
    assert bad_files(again) == {"many": {"w6.bin"}}


def test_checksum_matches_hashlib_and_names_an_unreadable_file(cli: Run, project: Path) -> None:
    from modelctl.core.hashing import PIECE

    rng = random.Random(3)
    data = {project / f"f{size}": rng.randbytes(size) for size in (0, 10, PIECE + 1, 2 * PIECE + 7)}
    for path, content in data.items():
        path.write_bytes(content)
    result = cli("checksum", "--algo", "sha256", *map(str, data))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"sha256:{hashlib.sha256(c).hexdigest()}  {p}" for p, c in data.items()
    ]
    md5 = cli("checksum", "--algo", "md5", str(project / "f10"))
    assert md5.stdout == f"md5:{hashlib.md5(data[project / 'f10']).hexdigest()}  {project / 'f10'}\n"
    missing = cli("checksum", str(project / "f10"), str(project / "nope"))
    assert missing.exit_code == 4 and missing.stdout == ""
    assert f"Cannot read {project / 'nope'}: No such file or directory" in missing.stderr
