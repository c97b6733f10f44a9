"""Bytes already on the machine are not fetched again: the HF cache and other roots (reuse.py).

Proven on disk (bytes, inodes, filesystems) and by the fixture Hub's counters (no file GET).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY, Run, put_partial
from tests.hubserver import Fault, HubServer, git_blob_sha1

BIG = "weights/big.bin"


def blob_name(hub: HubServer, path: str) -> str:
    """The HF cache names a blob by the file's sha256 (LFS) or git blob sha1 (the others)."""
    repo = hub.repos["org/tiny"]
    data = repo.files[path]
    return hashlib.sha256(data).hexdigest() if path in repo.lfs else git_blob_sha1(data)


def fill_hf_cache(cache: Path, hub: HubServer, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """org/tiny as `hf download` leaves it in the cache: blobs named by hash, snapshot symlinks to them."""
    repo = hub.repos["org/tiny"]
    base = cache / "models--org--tiny"
    blobs: dict[str, Path] = {}
    for path, data in repo.files.items():
        if path in skip:
            continue
        blob = base / "blobs" / blob_name(hub, path)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / repo.commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
        blobs[path] = blob
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(repo.commit)
    return blobs


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def other_fs_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An HF cache on another filesystem than tmp_path (/dev/shm, a tmpfs), so a link fails with EXDEV."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no writable second filesystem (/dev/shm) to put the HF cache on")
    cache = shm / f"modelctl-test-{uuid.uuid4().hex}"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    try:
        yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def record_states(folder: Path) -> dict[str, str]:
    data = json.loads((folder / ".modelctl" / "manifest.json").read_text())
    return {f["path"]: f["state"] for f in data["files"]}


def test_hf_cache_blobs_are_hard_linked_verified_and_nothing_is_fetched(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    registry(TINY)
    blobs = fill_hf_cache(hf_cache, hub)
    plan = cli.json("download", "tiny", "--dry-run")["models"][0]
    assert {f["action"] for f in plan["files"]} == {"reuse"}
    assert plan["bytes_needed"] == 0
    assert {f["path"]: f["source"] for f in plan["files"]} == {p: str(b) for p, b in blobs.items()}
    assert all(f["reason"].startswith("hard link from the HF cache") for f in plan["files"])

    data = cli.json("download", "tiny")
    assert hub.file_gets() == []
    assert data["bytes_fetched"] == 0
    files = {f["path"]: f for f in data["models"][0]["files"]}
    folder = tmp_path / "home" / "org--tiny"
    for path, content in hub.repos["org/tiny"].files.items():
        assert files[path]["action"] == "reuse"
        assert files[path]["source"] == str(blobs[path])
        assert files[path]["sha256"] == hashlib.sha256(content).hexdigest()
        assert (folder / path).read_bytes() == content
        assert (folder / path).stat().st_ino == blobs[path].stat().st_ino  # a hard link, no copy
        assert not (folder / path).is_symlink()
    assert set(record_states(folder).values()) == {"verified"}
    assert not any((folder / ".modelctl" / "partials").iterdir())
    assert cli.json("verify")["health"] == "healthy"
    assert hub.file_gets() == []

    again = cli("download", "tiny")  # now it is kept, not reused again
    assert again.exit_code == 0
    assert "Nothing to fetch; 7 files kept" in again.stdout


def test_plain_output_names_each_reused_file_and_the_summary_counts_them(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path
) -> None:
    registry(TINY)
    fill_hf_cache(hf_cache, hub, skip=("README.md",))
    result = cli("download", "tiny")
    assert result.exit_code == 0, result.stderr
    assert (
        "tiny: 1 to fetch (" in result.stderr
        and "bytes), 6 to reuse from this machine, 0 kept" in result.stderr
    )
    assert f"  reused {BIG}: 3,145,728 bytes from {hf_cache}" in result.stderr
    assert "1 fetched, 6 reused, 0 kept" in result.stdout
    assert "6 files reused (linked or copied from this machine, verified)" in result.stdout
    assert hub.served() == {"README.md": len(hub.repos["org/tiny"].files["README.md"])}


@pytest.mark.parametrize(
    ("damaged", "total"),
    [(False, ("13", "13", "bytes")), (True, ("3.1", "3.1", "MB"))],
    ids=["good", "bad-blob"],
)
def test_the_overall_bar_counts_only_what_is_fetched(
    hub: HubServer,
    registry: Callable[..., Path],
    hf_cache: Path,
    project: Path,
    damaged: bool,
    total: tuple[str, str, str],
) -> None:
    """On a terminal, the model's total bar counts what is fetched: README.md (13 bytes), plus
    weights/big.bin (3.1 MB) when its blob fails the check and it is fetched after all."""
    script = shutil.which("script")
    if script is None:
        pytest.skip("util-linux script is needed to give modelctl a terminal")
    registry(TINY)
    blobs = fill_hf_cache(hf_cache, hub, skip=("README.md",))
    if damaged:
        data = bytearray(blobs[BIG].read_bytes())
        data[1000] ^= 0x01
        blobs[BIG].write_bytes(bytes(data))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "150"}
    command = f"{sys.executable} -m modelctl download tiny"
    result = subprocess.run(
        [script, "-qec", command, "/dev/null"], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)  # colours and cursor moves
    totals = re.findall(r"tiny \(total\) ━+ ([\d.]+)/([\d.]+) (bytes|kB|MB)", screen)
    assert totals and totals[-1] == total, totals
    assert set(hub.served()) == ({"README.md", BIG} if damaged else {"README.md"})


def test_a_corrupt_blob_is_never_used_the_file_is_fetched_and_the_blob_left_alone(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    registry(TINY)
    blobs = fill_hf_cache(hf_cache, hub)
    damaged = bytearray(blobs[BIG].read_bytes())
    damaged[1000] ^= 0x01  # same size, one bit off: only a hash tells
    blobs[BIG].write_bytes(bytes(damaged))
    data = cli.json("download", "tiny")
    files = hub.repos["org/tiny"].files
    assert hub.served() == {BIG: len(files[BIG])}  # that file alone, once
    folder = tmp_path / "home" / "org--tiny"
    assert (folder / BIG).read_bytes() == files[BIG]
    assert (folder / BIG).stat().st_ino != blobs[BIG].stat().st_ino
    assert blobs[BIG].read_bytes() == bytes(damaged)  # untouched
    actions = {f["path"]: f["action"] for f in data["models"][0]["files"]}
    assert actions.pop(BIG) == "download"
    assert set(actions.values()) == {"reuse"}
    assert set(record_states(folder).values()) == {"verified"}
    assert not any((folder / ".modelctl" / "partials").iterdir())


def test_hf_cache_on_another_filesystem_is_copied_then_verified(
    cli: Run, hub: HubServer, registry: Callable[..., Path], other_fs_cache: Path, tmp_path: Path
) -> None:
    registry(TINY)
    blobs = fill_hf_cache(other_fs_cache, hub)
    plan = cli.json("download", "tiny", "--dry-run")["models"][0]
    assert all(f["reason"].startswith("copy from the HF cache") for f in plan["files"])
    data = cli.json("download", "tiny")
    assert hub.file_gets() == []
    folder = tmp_path / "home" / "org--tiny"
    for path, content in hub.repos["org/tiny"].files.items():
        assert (folder / path).read_bytes() == content
        assert (folder / path).stat().st_dev != blobs[path].stat().st_dev  # a copy, on our disk
    assert {f["action"] for f in data["models"][0]["files"]} == {"reuse"}
    assert set(record_states(folder).values()) == {"verified"}


def test_a_failed_copy_never_leaves_part_of_a_file_under_its_real_name(
    cli: Run,
    hub: HubServer,
    registry: Callable[..., Path],
    other_fs_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry(TINY)
    blobs = fill_hf_cache(other_fs_cache, hub, skip=tuple(p for p in hub.repos["org/tiny"].files if p != BIG))
    folder = tmp_path / "home" / "org--tiny"
    seen: list[tuple[str, bool]] = []
    copyfile = shutil.copyfile

    def disk_fills_halfway(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> object:
        # The copy goes to a temp name under .modelctl/partials, never to the file's own name.
        seen.append((os.path.relpath(dst, folder), (folder / BIG).exists()))
        with open(src, "rb") as s, open(dst, "wb") as d:
            d.write(s.read(1 << 20))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", disk_fills_halfway)
    data = cli.json("download", "tiny")
    monkeypatch.setattr(shutil, "copyfile", copyfile)
    assert len(seen) == 1
    temp, dest_existed = seen[0]
    assert temp.startswith(".modelctl/partials/") and temp.endswith(".reuse.partial")
    assert not dest_existed
    assert hub.served()[BIG] == len(blobs[BIG].read_bytes())  # fetched instead
    assert (folder / BIG).read_bytes() == hub.repos["org/tiny"].files[BIG]
    assert {f["path"]: f["action"] for f in data["models"][0]["files"]}[BIG] == "download"
    assert list((folder / ".modelctl" / "partials").glob("*.reuse.partial")) == []


def test_a_symlink_in_the_hf_cache_to_outside_is_never_linked(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    registry(TINY)
    blobs = fill_hf_cache(hf_cache, hub)
    outside = tmp_path / "elsewhere" / "big.bin"
    outside.parent.mkdir()
    outside.write_bytes(hub.repos["org/tiny"].files[BIG])  # the right bytes, in the wrong place
    blobs[BIG].unlink()
    blobs[BIG].symlink_to(outside)
    plan = {f["path"]: f for f in cli.json("download", "tiny", "--dry-run")["models"][0]["files"]}
    assert plan[BIG]["action"] == "download"
    cli.json("download", "tiny")
    folder = tmp_path / "home" / "org--tiny"
    assert hub.served() == {BIG: outside.stat().st_size}
    assert (folder / BIG).stat().st_ino != outside.stat().st_ino
    assert outside.stat().st_nlink == 1


def test_another_root_holding_the_model_is_linked_not_fetched(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("download", "tiny", "--to", "project")
    source = project / "models" / "tiny"
    hub.reset_counters()
    data = cli.json("download", "tiny", "--to", "user")
    assert hub.file_gets() == []
    folder = tmp_path / "home" / "org--tiny"
    for f in data["models"][0]["files"]:
        assert (f["action"], f["source"]) == ("reuse", str(source / f["path"]))
        assert (folder / f["path"]).stat().st_ino == (source / f["path"]).stat().st_ino
    assert set(record_states(folder).values()) == {"verified"}


def test_a_hand_made_copy_in_another_root_is_hashed_before_it_is_linked(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    source = project / "models" / "tiny"  # no record: nothing vouches for these bytes
    for path, content in hub.repos["org/tiny"].files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(content)
    bad = bytearray(hub.repos["org/tiny"].files["config.json"])
    bad[3] ^= 0x01  # same size, other bytes
    (source / "config.json").write_bytes(bytes(bad))
    cli.json("download", "tiny", "--to", "user")
    assert hub.served() == {"config.json": len(hub.repos["org/tiny"].files["config.json"])}
    folder = tmp_path / "home" / "org--tiny"
    assert (folder / BIG).stat().st_ino == (source / BIG).stat().st_ino
    assert (folder / "config.json").read_bytes() == hub.repos["org/tiny"].files["config.json"]


def test_ensure_of_a_model_bad_in_the_shared_root_fetches_only_the_bad_files(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    shared = tmp_path / "nfs"
    registry(TINY)
    cli.json("download", "tiny", "--to", str(shared))  # someone filled the shared store
    registry("storage:\n  shared: " + str(shared) + "\n" + TINY)
    store = shared / "tiny"
    damaged = bytearray((store / BIG).read_bytes())
    damaged[5] ^= 0x10
    (store / BIG).write_bytes(bytes(damaged))  # same size: found only by hashing
    (store / "config.json").write_bytes(b"")
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}
    hub.reset_counters()
    data = cli.json("ensure")
    assert data["health"] == "healthy"
    files = hub.repos["org/tiny"].files
    assert hub.served() == {BIG: len(files[BIG]), "config.json": len(files["config.json"])}
    folder = tmp_path / "home" / "org--tiny"
    for path, content in files.items():
        assert (folder / path).read_bytes() == content
        linked = (folder / path).stat().st_ino == (store / path).stat().st_ino
        assert linked == (path not in (BIG, "config.json"))
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file()} == before  # the share untouched


def test_reuse_comes_before_resuming_a_partial(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    registry(TINY)
    blobs = fill_hf_cache(hf_cache, hub)
    folder = tmp_path / "home" / "org--tiny"
    partial = put_partial(folder, BIG, hub.repos["org/tiny"].files[BIG][:1000])
    plan = {f["path"]: f for f in cli.json("download", "tiny", "--dry-run")["models"][0]["files"]}
    assert plan[BIG]["action"] == "reuse"
    cli.json("download", "tiny")
    assert hub.file_gets() == []
    assert (folder / BIG).stat().st_ino == blobs[BIG].stat().st_ino
    assert not partial.exists()  # the stale partial went with it


def test_force_fetches_even_what_the_hf_cache_holds(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path
) -> None:
    registry(TINY)
    fill_hf_cache(hf_cache, hub)
    data = cli.json("download", "tiny", "--force")
    assert {f["action"] for f in data["models"][0]["files"]} == {"download"}
    assert set(hub.served()) == set(hub.repos["org/tiny"].files)


def test_hf_cache_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from modelctl.store.storage import hf_cache_path

    env = {"HF_HOME": str(tmp_path / "h"), "XDG_CACHE_HOME": str(tmp_path / "x")}
    assert hf_cache_path({**env, "HF_HUB_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    assert hf_cache_path(env) == tmp_path / "h" / "hub"
    assert hf_cache_path({"XDG_CACHE_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "huggingface" / "hub"
    monkeypatch.setenv("HOME", str(tmp_path / "home-dir"))
    assert hf_cache_path({}) == tmp_path / "home-dir" / ".cache" / "huggingface" / "hub"


# --------------------------------------------------------------------------- offline


def test_offline_with_models_lock_fills_the_model_from_the_hf_cache(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    """Air-gapped: models.lock says what complete is, the HF cache holds the bytes; no request."""
    registry(TINY)
    assert cli("lock").exit_code == 0  # online, once: the commit's listing, pinned
    blobs = fill_hf_cache(hf_cache, hub)
    hub.reset_counters()
    data = cli.json("download", "tiny", "--offline")
    assert hub.requests == []
    folder = tmp_path / "home" / "org--tiny"
    files = {f["path"]: f for f in data["models"][0]["files"]}
    for path, content in hub.repos["org/tiny"].files.items():
        assert files[path]["action"] == "reuse"
        assert (folder / path).read_bytes() == content
        assert (folder / path).stat().st_ino == blobs[path].stat().st_ino
    assert set(record_states(folder).values()) == {"verified"}
    assert cli.json("verify")["health"] == "healthy"
    assert hub.requests == []


def test_offline_with_a_record_takes_the_rest_from_the_hf_cache(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    """A download cut short left the record (the commit's listing): offline, the HF cache completes it."""
    registry(TINY)
    hub.faults[BIG] = Fault(status=500, times=None)
    assert cli("download", "tiny", "--retries", "1").exit_code == 1  # everything but big.bin
    folder = tmp_path / "home" / "org--tiny"
    assert not (folder / BIG).exists() and record_states(folder)[BIG] == "pending"
    blobs = fill_hf_cache(hf_cache, hub)
    hub.reset_counters()
    result = cli("download", "tiny", "--offline")
    assert result.exit_code == 0, result.stderr
    assert hub.requests == []
    assert (folder / BIG).read_bytes() == hub.repos["org/tiny"].files[BIG]
    assert (folder / BIG).stat().st_ino == blobs[BIG].stat().st_ino
    assert set(record_states(folder).values()) == {"verified"}


def test_offline_without_a_listing_or_with_a_file_nowhere_fails_naming_it(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    """The HF cache alone never says a model is complete; a lock with a file missing everywhere names it."""
    registry(TINY)
    fill_hf_cache(hf_cache, hub, skip=("README.md",))
    hub.reset_counters()
    bare = cli("download", "tiny", "--offline")
    assert bare.exit_code == 4, bare.stderr  # no models.lock, no record: complete is unknown
    assert "offline mode is on" in bare.stderr
    assert "run `modelctl lock` once online, so the HF cache can be used offline" in bare.stderr
    commit = hub.repos["org/tiny"].commit[:12]
    assert (
        f"the HF cache holds org/tiny at {commit} (6 files), but nothing on this machine says" in bare.stderr
    )
    assert "not downloaded in any root" not in bare.stderr
    assert cli("lock").exit_code == 0
    hub.reset_counters()
    result = cli("download", "tiny", "--offline")
    assert result.exit_code == 4, result.stderr
    assert "not on this machine (HF cache, other roots): README.md" in result.stderr
    assert hub.requests == []
    assert not (tmp_path / "home" / "org--tiny" / "config.json").exists()  # nothing half-done


def test_offline_copy_that_fails_its_hash_is_not_used_and_the_run_fails(
    cli: Run, hub: HubServer, registry: Callable[..., Path], hf_cache: Path, tmp_path: Path
) -> None:
    registry(TINY)
    assert cli("lock").exit_code == 0
    blobs = fill_hf_cache(hf_cache, hub)
    damaged = bytearray(blobs[BIG].read_bytes())
    damaged[1000] ^= 0x01
    blobs[BIG].write_bytes(bytes(damaged))
    hub.reset_counters()
    result = cli("download", "tiny", "--offline")
    assert result.exit_code == 4, result.stderr
    assert f"offline, and no good copy of {BIG} is on this machine" in result.stderr
    assert hub.requests == []
    folder = tmp_path / "home" / "org--tiny"
    assert not (folder / BIG).exists()  # never the bad bytes
    states = record_states(folder)
    assert states[BIG] == "pending" and states["config.json"] == "verified"  # the good ones stay
