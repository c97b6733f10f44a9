"""The reliability suite: the real `modelctl` executable against a misbehaving Hub and hostile input.

Every scenario asserts the end state on disk: each file under its real name holds exactly the
Hub's bytes (no bad file accepted), files that were good stay (no file lost), partials are
resumable or cleaned, and the exit code and message say what happened. README.md's reliability
table is this file, scenario by scenario.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY, partial_of
from tests.hubserver import Fault, HubServer, Repo, model_files
from tests.process import (
    BIG,
    assert_complete,
    assert_nothing_bad,
    files_of,
    run,
    settle,
    start,
    wait_for,
)

CHUNK = 1 << 20


# --------------------------------------------------------------------------- helpers


def drop_caps() -> list[str]:
    """As root, drop the capabilities that ignore file permissions (so chmod means something)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux setpriv")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


# --------------------------------------------------------------------------- 1-3 interruptions


def test_01_kill_9_mid_file_resumes_fetching_only_the_rest(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.delay = 0.01
    proc = start(project, "download", "tiny")
    partial = partial_of(tiny, BIG)
    wait_for(lambda: partial.exists() and partial.stat().st_size > 1_200_000)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert_nothing_bad(tiny, files_of(hub))
    missing = len(files_of(hub)[BIG]) - partial.stat().st_size
    hub.delay = 0.0
    settle(hub)
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    assert hub.body_bytes(BIG) <= missing + CHUNK
    assert_complete(tiny, files_of(hub))


def test_02_sigint_exits_130_keeps_the_partial_and_publishes_nothing_half(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    hub.delay = 0.02
    proc = start(project, "download", "tiny")
    partial = partial_of(tiny, BIG)
    wait_for(lambda: partial.exists() and partial.stat().st_size > 200_000)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "partial downloads were kept" in err
    assert partial.exists() and not (tiny / BIG).exists()
    assert_nothing_bad(tiny, files_of(hub))


def test_03_connection_cut_several_times_in_one_file(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.faults[BIG] = Fault(cut_after=700_000, times=3)
    result = run(project, "download", "tiny", "--json")
    assert result.returncode == 0, result.stderr
    assert len(hub.file_gets(BIG)) == 4 and hub.body_bytes(BIG) == len(files_of(hub)[BIG])
    assert_complete(tiny, files_of(hub))


# --------------------------------------------------------------------------- 4-5 bad answers


def test_04_busy_servers_errors_and_stalls_are_retried(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.faults["config.json"] = Fault(status=429, retry_after="1", times=1)
    hub.faults["README.md"] = Fault(status=503, retry_after="1", times=1)
    hub.faults["tokenizer.json"] = Fault(status=500, times=2)
    hub.faults[BIG] = Fault(stall_after=300_000, stall=3.0, times=1)
    result = run(project, "download", "tiny", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert "HTTP 429" in result.stderr and "HTTP 503" in result.stderr and "stalled" in result.stderr
    first, second = hub.file_gets("config.json")
    assert second.at - first.at >= 0.95  # Retry-After honoured
    assert_complete(tiny, files_of(hub))


def test_04b_metadata_500_is_retried(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.api_failures = 2
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    assert "retry org/tiny metadata (attempt 2)" in result.stderr and "HTTP 500" in result.stderr
    assert_complete(tiny, files_of(hub))


def test_04c_metadata_503_waits_as_its_retry_after_says(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.api_failures, hub.api_retry_after = 1, "2"
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    assert "retry org/tiny metadata (attempt 2) in 2.0 s: " in result.stderr  # the server's wait, not backoff
    assert_complete(tiny, files_of(hub))


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault(flip_at=100, times=None), 3),
        (Fault(length_delta=-100, times=None), 1),
        (Fault(extra=b"0123456789", times=None), 1),
    ],
    ids=["flipped-byte", "short-content-length", "extra-bytes"],
)
def test_05_corrupt_or_wrong_length_bodies_are_never_published(
    hub: HubServer, tiny: Path, project: Path, fault: Fault, code: int
) -> None:
    hub.faults["model.safetensors"] = fault
    result = run(project, "download", "tiny", "--retries", "2")
    assert result.returncode == code, result.stderr
    assert "model.safetensors" in result.stderr
    assert not (tiny / "model.safetensors").exists()
    assert_nothing_bad(tiny, files_of(hub))
    assert (tiny / "config.json").read_bytes() == files_of(hub)["config.json"]  # no good file lost


# --------------------------------------------------------------------------- 6-7 disks and roots


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=72m", "tmpfs", str(mount)], check=False
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_06a_disk_too_small_is_refused_before_any_byte(
    hub: HubServer, tiny: Path, project: Path, small_disk: Path
) -> None:
    (small_disk / "filler").write_bytes(b"\0" * (10 << 20))  # 62 MiB left < 3 MB + 64 MiB headroom
    result = run(project, "download", "tiny", "--to", str(small_disk))
    assert result.returncode == 5
    assert "Not enough disk space" in result.stderr and str(small_disk) in result.stderr
    assert hub.file_gets() == []


def test_06b_disk_filling_mid_download_fails_cleanly(
    hub: HubServer, tiny: Path, project: Path, small_disk: Path
) -> None:
    hub.delay = 0.02
    proc = start(project, "download", "tiny", "--to", str(small_disk), "--max-workers", "1")
    folder = small_disk / "tiny"
    wait_for(lambda: partial_of(folder, BIG).exists())
    with (small_disk / "filler").open("wb") as junk:  # another program fills the disk
        try:
            while True:
                junk.write(b"\0" * (1 << 20))
                junk.flush()
        except OSError:
            pass
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    assert "the disk filled up" in err
    assert not (folder / BIG).exists()
    assert_nothing_bad(folder, files_of(hub))


def test_07_read_only_root_sends_the_download_to_the_next_writable_one(
    hub: HubServer, tiny: Path, project: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    command = [*drop_caps(), sys.executable, "-m", "modelctl", "download", "tiny"]
    home.chmod(0o555)
    try:
        moved = subprocess.run([*command, "--json"], cwd=project, capture_output=True, text=True, check=False)
        refused = subprocess.run(
            [*command, "--to", "user"], cwd=project, capture_output=True, text=True, check=False
        )
    finally:
        home.chmod(0o755)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["models"][0]["root"] == "project"
    assert_complete(project / "models" / "tiny", files_of(hub))
    assert refused.returncode == 1 and f"The user root {home} is not writable" in refused.stderr
    assert list(home.iterdir()) == []


# --------------------------------------------------------------------------- 8-9 concurrency


@pytest.mark.parametrize("processes", [2, 4])
def test_08_concurrent_downloads_fetch_each_byte_once(
    hub: HubServer, tiny: Path, project: Path, processes: int
) -> None:
    hub.delay = 0.01
    procs = [start(project, "download", "tiny") for _ in range(processes)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * processes, [err for _, err in results]
    assert hub.body_bytes() == sum(len(d) for d in files_of(hub).values())
    assert_complete(tiny, files_of(hub))


def test_09_stale_lock_is_taken_over_and_a_live_one_waited_for(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    (tiny / ".modelctl").mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import filelock, sys, time; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
            "open(sys.argv[2], 'w').write('1'); time.sleep(60)",
            str(tiny / ".modelctl" / "lock"),
            str(tiny / "held"),
        ],
    )
    wait_for(lambda: (tiny / "held").exists())
    (tiny / ".modelctl" / "lock.owner").write_text(f"{holder.pid} host\n")
    waited = run(project, "download", "tiny", "--lock-timeout", "0.5")
    assert waited.returncode == 1
    assert f"is locked by pid {holder.pid}, still busy after waiting 0.5 s" in waited.stderr
    holder.kill()
    holder.wait()
    (tiny / "held").unlink()
    result = run(project, "download", "tiny")  # the dead holder's lock is taken over
    assert result.returncode == 0, result.stderr
    assert_complete(tiny, files_of(hub))


# --------------------------------------------------------------------------- 10-11 hostile input


@pytest.mark.parametrize(
    "name", ["../../escape.txt", "/etc/escape.txt", "a\x00b", "dir\\..\\..\\x", ".modelctl/manifest.json"]
)
def test_10_hostile_file_names_are_refused(
    hub: HubServer, tiny: Path, project: Path, tmp_path: Path, name: str
) -> None:
    hub.repos["org/tiny"].extra_listing.append({"type": "file", "path": name, "size": 4, "oid": "0" * 40})
    result = run(project, "download", "tiny")
    assert result.returncode == 1
    assert "which would land outside the model folder" in result.stderr
    assert hub.file_gets() == []
    assert not (tmp_path / "escape.txt").exists() and not tiny.exists()


def test_10b_symlink_inside_a_root_pointing_outside_is_not_written_through(
    hub: HubServer, tiny: Path, project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tiny.mkdir(parents=True)
    (tiny / "weights").symlink_to(outside)
    result = run(project, "download", "tiny")
    assert result.returncode == 1
    assert "leads outside" in result.stderr
    assert list(outside.iterdir()) == []


def test_10c_registry_ids_and_folders_that_escape_are_refused(
    registry: Callable[..., Path], project: Path
) -> None:
    registry("models:\n  - {id: ../x, repo_id: org/x}\n  - {id: ok, repo_id: org/y, local_dir: ../../etc}\n")
    result = run(project, "download", "--all")
    assert result.returncode == 1
    assert "models[0].id: '../x' is not a valid id" in result.stderr
    assert "models[1].local_dir: '../../etc' is not a folder name" in result.stderr


def test_11_malformed_registry_and_damaged_metadata(
    hub: HubServer, tiny: Path, project: Path, registry: Callable[..., Path]
) -> None:
    bad = registry("models:\n  - id: tiny\n    repo_id: [org, tiny\n")
    result = run(project, "list")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{bad}:4: YAML syntax error: did not find expected ',' or ']'" in result.stderr
    assert "(while parsing a flow sequence started at line 3)" in result.stderr
    registry(TINY)
    assert run(project, "download", "tiny").returncode == 0
    # A damaged record is not trusted: the folder is unverified, and a file changed behind it is
    # still caught and fetched again.
    (tiny / ".modelctl" / "manifest.json").write_text('{"version": 2, "files": [')
    (tiny / "config.json").write_bytes(b'{"model_type": "tampered"}')
    settle(hub)
    verify = run(project, "verify", "--json")
    assert verify.returncode == 3  # no record: nothing says these are the model's files
    assert "unreadable record ignored" in verify.stdout and "unverified" in verify.stdout
    repaired = run(project, "download", "tiny")
    assert repaired.returncode == 0, repaired.stderr
    assert [r.path.rsplit("/", 1)[-1] for r in hub.file_gets()] == ["config.json"]
    assert json.loads((tiny / ".modelctl" / "manifest.json").read_text())["version"] == 2  # rebuilt
    assert run(project, "verify").returncode == 0
    (project / "models.lock").write_text("{not json")
    locked = run(project, "verify")
    assert locked.returncode == 1 and "models.lock is damaged" in locked.stderr
    assert_complete(tiny, files_of(hub))


# --------------------------------------------------------------------------- 12-13 secrets and liars


def test_12_the_token_never_appears_anywhere(
    registry: Callable[..., Path], project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_reliability_secret_42"
    with HubServer(redirect_lfs=True) as server:
        server.add(Repo("org/tiny", model_files(), token=secret))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        registry(TINY)
        log = tmp_path / "log.txt"
        env = {"HF_TOKEN": secret, "MODELCTL_DEBUG": "1"}
        outputs = [
            run(project, "--log-file", str(log), "-v", "download", "tiny", "--json", env=env),
            run(project, "--log-file", str(log), "verify", "--json", env=env),
            run(project, "doctor", "--json", env=env),
            run(project, "download", "tiny", "--token", "hf_wrong_token_value", env={"MODELCTL_DEBUG": "1"}),
        ]
        assert outputs[0].returncode == 0, outputs[0].stderr
        assert outputs[3].returncode == 1 and "Traceback" in outputs[3].stderr
        cdn = [r for r in server.requests if r.path.startswith("/cdn/")]
        assert cdn and all(r.authorization is None for r in cdn)
    text = "".join(o.stdout + o.stderr for o in outputs) + log.read_text()
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != log)
    assert secret not in text and secret.encode() not in written
    assert "hf_wrong_token_value" not in text


def test_13a_listing_that_disagrees_with_the_body(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.repos["org/tiny"].listed_sizes["model.safetensors"] = len(files_of(hub)["model.safetensors"]) + 10
    result = run(project, "download", "tiny", "--retries", "2")
    assert result.returncode == 1
    assert "model.safetensors" in result.stderr and not (tiny / "model.safetensors").exists()
    assert_nothing_bad(tiny, files_of(hub))


def test_13b_content_that_changes_between_listing_and_transfer(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    hub.delay = 0.03  # six small files first, one chunk each: ~0.2 s to rewrite the repo in
    proc = start(project, "download", "tiny", "--max-workers", "1")
    wait_for(lambda: any("/tree/" in r.path for r in hub.requests))  # listed, not yet transferred
    original = files_of(hub)[BIG]
    files_of(hub)[BIG] = bytes(reversed(original))  # the repo is rewritten mid-download
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "do not match the Hub's hash" in err
    assert not (tiny / BIG).exists()
    files_of(hub)[BIG] = original
    assert_nothing_bad(tiny, files_of(hub))
