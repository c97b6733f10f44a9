"""Correct together: processes, threads and projects sharing one model folder never call a bad byte good.

Each test drives the real executable (or the API from threads) against the fixture Hub, and
orders the actors with events (a Hold on the Hub, a lock held by the test, a line on stderr),
never with sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from filelock import FileLock

from tests.conftest import TINY, Run, partial_of
from tests.hubserver import Fault, Hold, HubServer, Repo
from tests.process import BIG, assert_complete, files_of, read_until, run, start, wait_for


def _flipped(data: bytes) -> bytes:
    """The same length, one byte different: only a hash tells it from the original."""
    return bytes([data[0] ^ 0x01]) + data[1:]


def test_a_check_is_recorded_for_the_bytes_hashed_not_for_what_the_name_holds_later(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    hold = hub.holds[BIG] = Hold()
    proc = start(project, "download", "tiny", "--timeout", "300")
    config = tiny / "config.json"
    hold.arrived.wait()
    wait_for(config.exists, 120)  # published; the record is written when the whole model is done
    # Meanwhile another process renames other bytes (of the same size) into place, as a repair
    # putting back a quarantined copy would.
    other = tiny / "config.json.other"
    other.write_bytes(_flipped(files_of(hub)["config.json"]))
    os.replace(other, config)
    hold.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = run(project, "verify", "tiny", "--json")  # the cached verify: it trusts the record
    assert result.returncode == 3, result.stderr
    bad = [f for f in json.loads(result.stdout)["models"][0]["findings"] if f["status"] == "bad"]
    assert {f["path"] for f in bad} == {"config.json"}


def test_ensure_moves_nothing_while_another_modelctl_holds_the_folder(
    cli: Run, hub: HubServer, downloaded: Path, project: Path
) -> None:
    d = downloaded
    (d / "config.json").write_bytes(b"")
    lock = FileLock(str(d / ".modelctl" / "lock"))
    lock.acquire()
    (d / ".modelctl" / "lock.owner").write_text(f"{os.getpid()} test\n")
    try:
        proc = start(project, "ensure", "tiny")
        read_until(proc, f"waiting for pid {os.getpid()}, which holds the lock on {d}")
        # While the holder works, the bad file is where it was: nothing moved aside, nothing fetched.
        assert (d / "config.json").read_bytes() == b""
        assert not (d / ".modelctl" / "quarantine").exists()
        assert hub.file_gets() == []
    finally:
        lock.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert_complete(d, files_of(hub))
    assert hub.served() == {"config.json": len(files_of(hub)["config.json"])}


def test_a_download_and_two_ensures_at_once_leave_no_bad_byte_called_good(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    assert run(project, "download", "tiny").returncode == 0
    good = files_of(hub)
    for _ in range(2):
        (tiny / "config.json").write_bytes(_flipped(good["config.json"]))
        (tiny / BIG).write_bytes(_flipped(good[BIG]))
        assert run(project, "verify", "tiny", "--no-cache").returncode == 3  # known bad, recorded so
        procs = [start(project, *args) for args in (("ensure",), ("download", "tiny"), ("ensure",))]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert "Traceback" not in err, err
            assert proc.returncode in (0, 1), err  # a download may refuse the bad file: never a crash
        for use_cache in ((), ("--no-cache",)):
            result = run(project, "verify", "tiny", "--json", *use_cache)
            bad_on_disk = any((tiny / n).read_bytes() != data for n, data in good.items())
            said = json.loads(result.stdout)["health"]
            assert said != "healthy" or not bad_on_disk, (use_cache, said)
        assert run(project, "ensure").returncode == 0
        assert_complete(tiny, good)
        assert not (tiny / ".modelctl" / "quarantine").exists()


def test_two_processes_on_one_model_fetch_each_byte_once(hub: HubServer, tiny: Path, project: Path) -> None:
    hold = hub.holds[BIG] = Hold()
    first = start(project, "download", "tiny", "--timeout", "300")
    hold.arrived.wait()  # the first holds the folder's lock and is fetching
    second = start(project, "download", "tiny")
    read_until(second, f"waiting for pid {first.pid}, which holds the lock on {tiny}")
    hold.release()
    _out1, err1 = first.communicate(timeout=120)
    _out2, err2 = second.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), err1 + err2
    assert hub.body_bytes() == sum(len(d) for d in files_of(hub).values())
    assert_complete(tiny, files_of(hub))


def _claimed_by_another_machine(folder: Path) -> None:
    """Rewrite the folder's record as another machine would have written it (its checks its claims)."""
    record = folder / ".modelctl" / "manifest.json"
    data = json.loads(record.read_text())
    for f in data["files"]:
        if f["checked"] is not None:
            f["checked"]["by"] = "another-machine"
    record.write_text(json.dumps(data))


def _flip_keeping_mtime(path: Path) -> None:
    """Bit rot: one byte changes, size and mtime stay (only a hash can tell)."""
    st = path.stat()
    with path.open("r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_shared_store_another_machine_filled_is_hashed_before_it_is_trusted(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    shared = tmp_path / "nfs"
    registry(TINY)
    cli.json("download", "tiny", "--to", str(shared))  # machine A filled the share
    _claimed_by_another_machine(shared / "tiny")
    _flip_keeping_mtime(shared / "tiny" / BIG)  # then the share rotted, mtime kept
    before = {p: p.read_bytes() for p in (shared / "tiny").rglob("*") if p.is_file()}
    registry("storage:\n  shared: " + str(shared) + "\n" + TINY)  # machine B
    listed = cli.json("list")["models"][0]
    assert (listed["status"], listed["root"]) == ("unverified", "shared")  # a claim, not yet a check
    report = cli.json("verify", code=3)  # hashed here: the claim did not spare it
    assert report["models"][0]["bad_files"] == [BIG]
    assert cli("path", "tiny").exit_code == 3  # remembered, though the share is read-only
    assert cli.json("verify", code=3)["models"][0]["bad_files"] == [BIG]
    hub.reset_counters()
    data = cli.json("download", "tiny")
    assert data["models"][0]["root"] == "user"
    assert hub.served() == {BIG: len(files_of(hub)[BIG])}  # the good files linked, the rotten one fetched
    assert_complete(tmp_path / "home" / "org--tiny", files_of(hub))
    assert cli.json("verify", "--no-cache")["health"] == "healthy"
    after = {p: p.read_bytes() for p in (shared / "tiny").rglob("*") if p.is_file()}
    assert after == before  # the share is never written


def test_a_finding_about_a_read_only_copy_is_remembered(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    shared = tmp_path / "nfs"
    registry(TINY)
    cli.json("download", "tiny", "--to", str(shared))  # this machine filled it: its checks count
    registry("storage:\n  shared: " + str(shared) + "\n" + TINY)
    _flip_keeping_mtime(shared / "tiny" / "config.json")
    assert cli.json("verify")["health"] == "healthy"  # the cache trusts an unchanged stat...
    assert cli.json("verify", "--no-cache", code=3)["models"][0]["bad_files"] == ["config.json"]
    # ...until a hash says otherwise, and then every command knows it.
    assert cli.json("verify", code=3)["models"][0]["bad_files"] == ["config.json"]
    assert cli.json("list")["models"][0]["status"] == "partial"
    assert cli("path", "tiny").exit_code == 3
    data = cli.json("ensure")
    assert data["health"] == "healthy" and data["models"][0]["root"] == "user"


@contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """folder becomes a read-only mount of itself (a bind mount), as a user root on an ro mount is."""
    made = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot bind-mount here (mount needs root): {made.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_user_root_on_a_read_only_mount_with_bit_rot(
    hub: HubServer, tiny: Path, project: Path, tmp_path: Path
) -> None:
    assert run(project, "download", "tiny").returncode == 0
    _flip_keeping_mtime(tiny / "model.safetensors")
    with _read_only(tmp_path / "home"):
        assert run(project, "verify", "--no-cache").returncode == 3
        for args in (("verify",), ("path", "tiny")):  # remembered though the root cannot be written
            result = run(project, *args)
            assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert json.loads(run(project, "list", "--json").stdout)["models"][0]["status"] == "partial"
        result = run(project, "ensure", "--no-cache", "--json")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert json.loads(result.stdout)["models"][0]["root"] == "project"  # the first writable root
        path = run(project, "path", "tiny")
        assert (path.returncode, path.stdout.strip()) == (0, str(project / "models" / "tiny"))
        assert_complete(project / "models" / "tiny", files_of(hub))


def test_credentials_in_an_endpoint_url_are_never_printed(
    hub: HubServer, tiny: Path, project: Path, tmp_path: Path
) -> None:
    secret = "s3cret-pw"
    endpoint = hub.url.replace("http://", f"http://alice:{secret}@")
    env = {"HF_ENDPOINT": endpoint}
    log = tmp_path / "modelctl.log"
    runs = [
        run(project, "--log-file", str(log), "-v", "download", "tiny", env=env),
        run(project, "download", "tiny", "--force", "--json", env=env),
        run(project, "doctor", env=env),
        run(project, "doctor", "--json", env=env),
        run(project, "download", "org/absent", env=env),  # an error naming the endpoint
    ]
    assert [r.returncode for r in runs[:2]] == [0, 0], runs[0].stderr + runs[1].stderr
    assert runs[4].returncode != 0
    said = "".join(r.stdout + r.stderr for r in runs) + log.read_text()
    assert secret not in said
    assert "alice:***@" in said or "***@" in said  # the endpoint is still shown, masked
    served = json.loads(runs[1].stdout)["models"][0]["files"]
    assert {f["endpoint"] for f in served if f["action"] != "keep"} == {f"127.0.0.1:{hub.port}"}


def test_a_yaml_alias_bomb_and_a_huge_registry_are_refused_naming_the_file(project: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):  # 8 levels of 9 aliases: 43 million nodes from 429 bytes
        below = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{below}]")
    registry = project / "models.yaml"
    registry.write_text("\n".join(lines) + "\nmodels: []\n")
    result = run(project, "list")
    assert result.returncode == 1, result.stderr
    assert f"{registry}: its YAML aliases expand to more than" in result.stderr
    assert "Traceback" not in result.stderr

    registry.write_text("models: []\n" + "# padding\n" * 500_000)  # 5 MB
    result = run(project, "list", "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert f"Registry {registry} is 5,000,011 bytes" in error["message"]


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for sig (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask >> (sig - 1) & 1)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_record_what_was_verified_and_say_so(
    hub: HubServer, tiny: Path, project: Path, sig: signal.Signals, code: int
) -> None:
    hold = hub.holds[BIG] = Hold()
    proc = start(project, "download", "tiny")
    hold.arrived.wait()
    wait_for((tiny / "config.json").exists, 120)  # a finished file, not yet in the record
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    hold.release()
    assert proc.returncode == code, err
    assert f"Interrupted by {sig.name}. Finished files are in place; partial downloads were kept." in err
    assert "Traceback" not in err
    record = json.loads((tiny / ".modelctl" / "manifest.json").read_text())
    states = {f["path"]: f["state"] for f in record["files"]}
    assert states["config.json"] == "verified" and states[BIG] == "pending"
    assert run(project, "download", "tiny").returncode == 0
    assert_complete(tiny, files_of(hub))


def test_ctrl_c_inside_an_exec_string_still_exits_130_under_python_m(tmp_path: Path) -> None:
    # CPython remembers a bare KeyboardInterrupt leaving exec()/eval() of a string (dataclasses and
    # namedtuple do that while modules are imported) and, under `python -m`, ends the process by
    # SIGINT (-2) whatever handled it; CI met it 1 run in 25. Our handler raises a subclass.
    child = tmp_path / "child"
    child.mkdir()
    (child / "__main__.py").write_text(
        "import os, signal\n"
        "from modelctl.__main__ import install_signal_handlers\n"
        "install_signal_handlers()\n"
        "try:\n"
        "    exec('os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10**6): pass')\n"
        "except KeyboardInterrupt as err:\n"
        "    print(type(err).__name__)\n"
        "    raise SystemExit(130)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "child"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stdout) == (130, "Interrupted\n"), proc.stderr


def test_ctrl_c_while_starting_exits_130_without_a_traceback(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    hold = hub.holds[BIG] = Hold()  # the download never ends by itself: only the signal ends it
    for _ in range(3):
        proc = start(project, "download", "tiny")
        # From the first instant our handlers are in place (SIGTERM's is installed first), the
        # SIGINT lands somewhere in the ~0.2 s of imports and command-line building, or later.
        wait_for(lambda p=proc: _catches(p.pid, signal.SIGTERM), 60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert proc.returncode == 130, err
    hold.release()


@contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at folder (a disk that fills up)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (mount needs root): {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path) -> None:
    """Write into folder until its file system has not one byte left."""
    with (folder / "filler").open("wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                continue


def _stray(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_a_full_disk_at_the_edges_is_exit_5_with_nothing_left_behind(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    with _tmpfs(tmp_path / "home", "80m") as home:
        registry(TINY)
        assert run(project, "download", "tiny").returncode == 0
        (home / "org--tiny" / ".modelctl" / "manifest.json").unlink()  # every file there, no record
        _fill(home)
        result = run(project, "download", "tiny", "--json")
        assert result.returncode == 5, result.stderr
        assert "the disk filled up" in json.loads(result.stdout)["error"]["message"]
        assert "Traceback" not in result.stderr and _stray(home) == []
    with _tmpfs(project, "1m"):
        registry(TINY)
        _fill(project)
        for args in (("lock",), ("init", "--force"), ("add", "org/tiny", "--id", "again")):
            result = run(project, *args, "--json") if args[0] != "init" else run(project, *args)
            assert result.returncode == 5, (args, result.stderr)
            assert "the disk filled up" in result.stderr + result.stdout, args
            assert "Traceback" not in result.stderr
            assert _stray(project) == [] and not (project / "models.lock").exists()
        assert (project / "models.yaml").read_text() == TINY


def test_add_writes_through_a_symlinked_registry_and_refuses_a_hard_linked_one(
    hub: HubServer, project: Path, tmp_path: Path
) -> None:
    team = tmp_path / "team" / "models.yaml"
    team.parent.mkdir()
    team.write_text(TINY)
    (project / "models.yaml").symlink_to(team)
    result = run(project, "add", "org/tiny", "--id", "again")
    assert result.returncode == 0, result.stderr
    assert (project / "models.yaml").is_symlink() and "id: again" in team.read_text()
    (project / "models.yaml").unlink()
    os.link(team, project / "models.yaml")
    before = team.read_text()
    result = run(project, "add", "org/tiny", "--id", "third")
    assert result.returncode == 1
    assert (
        f"Cannot write {project / 'models.yaml'} (the registry): it has 1 other hard link(s)" in result.stderr
    )
    assert team.read_text() == before and os.stat(team).st_nlink == 2


def test_copies_that_share_an_inode_are_judged_and_repaired_together(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    assert run(project, "download", "tiny").returncode == 0
    assert run(project, "download", "tiny", "--to", "project").returncode == 0
    copy = project / "models" / "tiny"
    shared = os.stat(copy / BIG).st_ino == os.stat(tiny / BIG).st_ino  # linked; a CoW clone is not
    with (copy / BIG).open("r+b") as f:  # a program edits the project's copy in place
        f.seek(100)
        f.write(b"\xff\xfe")
    if shared:
        result = run(project, "verify", "--json")  # the copy in use (user root) changed with it
        assert result.returncode == 3
        findings = json.loads(result.stdout)["models"][0]["findings"]
        assert any(f["check"] == "shared" and str(copy / BIG) in f["detail"] for f in findings), findings
    result = run(project, "ensure", "--json")
    assert result.returncode == 0, result.stderr
    for folder in (tiny, copy):  # both copies hold the Hub's bytes again, not only the one in use
        assert_complete(folder, files_of(hub))
    record = json.loads((copy / ".modelctl" / "manifest.json").read_text())
    big = next(f for f in record["files"] if f["path"] == BIG)
    assert big["state"] == "verified" and big["checked"]["inode"] == os.stat(copy / BIG).st_ino
    assert run(project, "verify", "--all").returncode == 0
    info = json.loads(run(project, "info", "tiny", "--json").stdout)["models"][0]["locations"]
    shares = {loc["root"]: loc["shares_bytes_with"] for loc in info if loc["exists"]}
    assert shares == (
        {"user": [str(copy)], "project": [str(tiny)]} if shared else {"user": [], "project": []}
    )
    if shared:
        said = "".join(run(project, "info", "tiny").stdout.split())  # Rich folds a long line
        assert "sharesbyteswith" + "".join(str(copy).split()) in said
    du = json.loads(run(project, "du", "--json").stdout)
    linked = {f["root"]: f["linked_bytes"] for f in du["folders"] if f["models"] == ["tiny"]}
    total = sum(len(data) for data in files_of(hub).values())
    assert linked == ({"user": total, "project": total} if shared else {"user": 0, "project": 0})


def test_two_projects_that_lock_different_commits_of_one_branch_never_touch_each_other(
    hub: HubServer, tmp_path: Path
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for project in (first, second):
        project.mkdir()
        (project / "models.yaml").write_text(TINY)
    old = dict(files_of(hub))
    assert run(first, "lock").returncode == 0 and run(first, "download", "tiny").returncode == 0
    new = {**old, "config.json": b'{"model_type": "test", "hidden_size": 32}'}
    hub.add(Repo("org/tiny", new))  # main moves on; the second project locks the new commit
    assert run(second, "lock").returncode == 0 and run(second, "download", "tiny").returncode == 0
    hub.reset_counters()
    for project in (first, second):  # in turn, then at once: neither fetches, neither fails verify
        assert run(project, "ensure").returncode == 0
    procs = [start(project, "ensure") for project in (first, second)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    for project in (first, second):
        result = run(project, "verify", "--no-cache")
        assert result.returncode == 0, result.stdout + result.stderr
    assert hub.file_gets() == []
    folders = {
        json.loads(run(p, "info", "tiny", "--json").stdout)["models"][0]["path"]: p for p in (first, second)
    }
    assert len(folders) == 2  # one folder per pinned commit
    for path, project in folders.items():
        assert_complete(Path(path), old if project == first else new)


def test_a_download_waiting_on_the_lock_survives_clean_removing_the_folder(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    assert run(project, "download", "tiny").returncode == 0
    lock = FileLock(str(tiny / ".modelctl" / "lock"))
    lock.acquire()  # as `clean` holds it while it removes the folder
    (tiny / ".modelctl" / "lock.owner").write_text(f"{os.getpid()} test\n")
    try:
        proc = start(project, "download", "tiny", "--force")
        read_until(proc, f"waiting for pid {os.getpid()}")
        shutil.rmtree(tiny)  # the lock file and .modelctl/ with it
    finally:
        lock.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert_complete(tiny, files_of(hub))


def test_a_revision_with_a_newline_is_refused_never_printed_raw(project: Path) -> None:
    (project / "models.yaml").write_text(
        'models:\n  - id: tiny\n    repo_id: org/tiny\n    revision: "main\\nError: fake"\n'
    )
    result = run(project, "list")
    assert result.returncode == 1
    assert "revision: 'main\\nError: fake' holds a space or a control character" in result.stderr
    assert "\nError: fake" not in result.stderr
    (project / "models.yaml").write_text(TINY)
    result = run(project, "download", "tiny", "--revision", "v1\nError: fake")
    assert result.returncode == 2 and "\nError: fake" not in result.stderr


def test_a_run_that_ends_well_removes_what_killed_runs_left(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    assert run(project, "download", "tiny").returncode == 0
    hold = hub.holds[BIG] = Hold()
    proc = start(project, "download", "tiny", "--force")  # killed while it refetches a complete model
    hold.arrived.wait()
    wait_for(partial_of(tiny, BIG).exists, 60)
    proc.kill()
    proc.communicate()
    hold.release()
    del hub.holds[BIG]
    assert json.loads(run(project, "list", "--json").stdout)["models"][0]["status"] == "partial"
    assert run(project, "download", "tiny").returncode == 0
    assert json.loads(run(project, "list", "--json").stdout)["models"][0]["status"] == "present"
    assert_complete(tiny, files_of(hub))  # no partial left either

    (tiny / BIG).write_bytes(b"x" * len(files_of(hub)[BIG]))  # bad: ensure quarantines it, then is killed
    hold = hub.holds[BIG] = Hold()
    proc = start(project, "ensure")
    hold.arrived.wait()
    assert any((tiny / ".modelctl" / "quarantine").rglob("big.bin"))
    proc.kill()
    proc.communicate()
    hold.release()
    del hub.holds[BIG]
    assert run(project, "ensure").returncode == 0
    assert not (tiny / ".modelctl" / "quarantine").exists()
    assert_complete(tiny, files_of(hub))


def test_a_first_download_through_ensure_says_so(hub: HubServer, tiny: Path, project: Path) -> None:
    result = run(project, "ensure")
    assert result.returncode == 0, result.stderr
    assert "Downloaded tiny: it was not on disk" in result.stdout and "Repaired" not in result.stdout


def test_du_and_clean_count_a_sparse_partial_as_allocated_and_name_its_file(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    hub.delay = 0.0
    hold = hub.holds[BIG] = Hold()
    proc = start(project, "download", "tiny")
    hold.arrived.wait()
    wait_for(partial_of(tiny, BIG).exists, 60)
    proc.kill()
    proc.communicate()
    hold.release()
    partial = partial_of(tiny, BIG)
    os.truncate(partial, 200 << 20)  # a partial with holes: 200 MiB long, nothing written in it
    du = json.loads(run(project, "du", "--json").stdout)
    folder = next(f for f in du["folders"] if f["models"] == ["tiny"])
    assert folder["partial_bytes"] < 1 << 20, folder  # the blocks it holds, as `du` counts them
    plan = json.loads(run(project, "clean", "tiny", "--incomplete", "--dry-run", "--json").stdout)
    reasons = {Path(i["path"]).name: i["reason"] for i in plan["items"]}
    assert reasons[partial.name] == f"partial download of {BIG}"


def test_a_server_that_trickles_is_cut_retried_and_named(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.faults[BIG] = Fault(trickle_after=100_000, trickle=0.2, times=None)  # 5 bytes a second
    result = run(project, "download", "tiny", "--timeout", "2", "--retries", "2", "--json")
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["error"]["message"]
    assert "too slow: " in error and f"from 127.0.0.1:{hub.port}" in error, error
    wait_for(lambda: len(hub.file_gets(BIG)) >= 2, 60)  # the server notes a request when it ends
    assert len(hub.file_gets(BIG)) == 2  # cut, retried once, then given up
    assert not (tiny / BIG).exists()
    del hub.faults[BIG]
    rerun = run(project, "download", "tiny", "--json")  # what arrived before the cut is kept
    assert rerun.returncode == 0, rerun.stderr
    big = next(f for f in json.loads(rerun.stdout)["models"][0]["files"] if f["path"] == BIG)
    assert big["action"] == "resume" and big["resumed_from"] >= 100_000
    assert_complete(tiny, files_of(hub))


def test_a_listing_that_trickles_is_cut_retried_and_named(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.tree_trickle_after = 10  # then 5 bytes a second, for a listing of ~1 KB
    result = run(project, "download", "tiny", "--timeout", "2", "--retries", "2", "--json")
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["error"]["message"]
    assert "too slow: " in error and f"127.0.0.1:{hub.port}" in error, error
    trees = lambda: [r for r in hub.requests if "/tree/" in r.path]  # noqa: E731 (noted when it ends)
    wait_for(lambda: len(trees()) >= 2, 600)
    assert len(trees()) == 2  # cut, retried once, then given up
    assert hub.file_gets() == [] and not tiny.exists()
    hub.tree_trickle_after = None
    assert run(project, "download", "tiny").returncode == 0
    assert_complete(tiny, files_of(hub))
