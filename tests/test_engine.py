"""The transfer engine: files split into ranges over several connections, stitched only when sound.

Every test runs the real `modelctl` against the fixture Hub with MODELCTL_SPLIT_SIZE=1M, so an
8 MiB file is split among the connections, and asserts on the bytes on disk and the requests the
server saw (ranges, If-Range, bytes served per file).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelctl.store.storage import ranges_path, read_ranges
from tests.conftest import TINY, Run, partial_of
from tests.hubserver import Fault, Hold, HubServer, Repo, model_files
from tests.process import assert_complete, file_job, run, start, wait_for

BIG = "weights/big.bin"
MiB = 1 << 20
HUGE = """\
models:
  - id: huge
    repo_id: org/huge
"""


@pytest.fixture
def huge(
    hub: HubServer, registry: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """org/huge: the tiny model's files with an 8 MiB weight file; split at 1 MiB, 4 connections."""
    hub.add(Repo("org/huge", model_files(big_mb=8, seed=7)))
    registry(HUGE)
    monkeypatch.setenv("MODELCTL_SPLIT_SIZE", "1M")
    monkeypatch.setenv("MODELCTL_CONNECTIONS", "4")
    return tmp_path / "home" / "org--huge"


def files(hub: HubServer) -> dict[str, bytes]:
    return hub.repos["org/huge"].files


def spans(hub: HubServer, name: str = BIG) -> list[tuple[int, int]]:
    """The byte ranges the server sent for name, as [start, end) by its answers' sizes."""
    out = []
    for g in hub.file_gets(name):
        first = int(g.range[6:].split("-")[0]) if g.range and g.status == 206 else 0
        out.append((first, first + g.body_bytes))
    return sorted(out)


def test_big_file_is_fetched_in_ranges_over_several_connections(cli: Run, hub: HubServer, huge: Path) -> None:
    hub.delay = 0.002  # slow enough that the connections overlap
    result = cli("download", "huge", "--json")
    assert result.exit_code == 0, result.stderr
    assert_complete(huge, files(hub))
    gets = sorted(hub.file_gets(BIG), key=lambda g: g.at)
    assert len(gets) >= 4 and all(g.status == 206 for g in gets)
    etag = f'"{hub.repos["org/huge"].etag(BIG)}"'
    # Every range after the first asks If-Range: never stitched from two versions of the file.
    assert gets[0].if_range is None and all(g.if_range == etag for g in gets[1:])
    # The ranges cover the file; a split range's owner stops where the thief starts (the server
    # may have sent a little more into the socket before the owner closed it).
    size = len(files(hub)[BIG])
    assert size <= hub.body_bytes(BIG) <= size + len(gets) * MiB
    covered = 0
    for first, end in spans(hub):
        assert first <= covered
        covered = max(covered, end)
    assert covered >= size
    big = next(f for f in json.loads(result.stdout)["models"][0]["files"] if f["path"] == BIG)
    assert big["action"] == "download" and big["sha256"] == hub.repos["org/huge"].etag(BIG)


def test_one_connection_fetches_each_byte_once(cli: Run, hub: HubServer, huge: Path) -> None:
    result = cli("download", "huge", "--connections", "1")
    assert result.exit_code == 0, result.stderr
    assert_complete(huge, files(hub))
    # in order, one segment (4 split sizes) per request, on one kept-alive connection
    assert [g.range for g in hub.file_gets(BIG)] == [
        f"bytes=0-{4 * MiB - 1}",
        f"bytes={4 * MiB}-{8 * MiB - 1}",
    ]
    assert hub.body_bytes() == sum(len(d) for d in files(hub).values())
    assert len({g.client_port for g in hub.file_gets()}) == 1  # every file on one kept-alive connection


@pytest.mark.parametrize("connections", [1, 4])
@pytest.mark.parametrize("flip_at", [100, 7 * MiB + 5], ids=["first-segment", "last-segment"])
def test_flipped_byte_is_caught_whichever_way_it_was_hashed(
    cli: Run, hub: HubServer, huge: Path, connections: int, flip_at: int
) -> None:
    """A piece is hashed from the receive buffer when it is next in line (always, on one connection),
    else read back after it was written ahead: a flipped byte fails the file either way."""
    hub.delay = 0.002  # the connections overlap: later segments are written before the hash gets there
    hub.faults[BIG] = Fault(flip_at=flip_at, times=None)
    result = cli("download", "huge", "--connections", str(connections), "--retries", "2")
    assert result.exit_code == 3, result.stderr
    assert BIG in result.stderr and "do not match" in result.stderr
    assert not (huge / BIG).exists()
    assert list((huge / ".modelctl" / "partials").glob("*")) == []  # nothing half-written kept
    for name, data in files(hub).items():
        if name != BIG:
            assert (huge / name).read_bytes() == data, name
    assert hub.body_bytes(BIG) >= 2 * len(files(hub)[BIG])  # fetched again once from zero


def test_ranges_cut_mid_way_are_resumed_and_stitched(cli: Run, hub: HubServer, huge: Path) -> None:
    hub.delay = 0.001
    hub.faults[BIG] = Fault(cut_after=700_000, times=3)
    result = cli("download", "huge", "--json")
    assert result.exit_code == 0, result.stderr
    assert_complete(huge, files(hub))
    assert sum(1 for g in hub.file_gets(BIG) if g.body_bytes == 700_000) == 3


def test_wrong_content_range_is_never_written(cli: Run, hub: HubServer, huge: Path) -> None:
    hub.faults[BIG] = Fault(range_shift=4096, times=2)
    result = cli("download", "huge")
    assert result.exit_code == 0, result.stderr
    assert "server sent bytes 4096-" in result.stderr and ", not 0-" in result.stderr
    assert_complete(huge, files(hub))


def test_server_that_drops_range_mid_file_gives_one_stream(cli: Run, hub: HubServer, huge: Path) -> None:
    hub.delay = 0.005
    hub.faults[BIG] = Fault(ignore_range=True, times=None, skip=1)  # a 206, then only 200s
    result = cli("download", "huge", "--json")
    assert result.exit_code == 0, result.stderr
    assert_complete(huge, files(hub))
    gets = sorted(hub.file_gets(BIG), key=lambda g: g.at)
    assert gets[0].status == 206 and any(g.status == 200 for g in gets)
    whole = [g for g in gets if g.status == 200]
    assert any(g.body_bytes == 8 * MiB for g in whole)  # the file came whole from one answer
    big = next(f for f in json.loads(result.stdout)["models"][0]["files"] if f["path"] == BIG)
    assert big["action"] == "download"


def test_file_changed_between_ranges_is_never_stitched(cli: Run, hub: HubServer, huge: Path) -> None:
    hub.delay = 0.02
    repo = hub.repos["org/huge"]
    old_etag = f'"{repo.etag(BIG)}"'
    hub.faults[BIG] = Fault(cut_after=300_000, times=1)  # its range is asked for again, later
    changed_at: list[float] = []

    def change_file_once_started() -> None:
        wait_for(lambda: any(g.status == 206 for g in hub.file_gets(BIG)))
        repo.files[BIG] = os.urandom(8 * MiB)  # the server's ETag changes: If-Range fails
        changed_at.append(time.monotonic())

    changer = threading.Thread(target=change_file_once_started)
    changer.start()
    result = cli("download", "huge")
    changer.join()
    assert result.exit_code == 3, result.stderr  # the listed hash is the old file's: never published
    assert "do not match the Hub's hash twice" in result.stderr
    assert not (huge / BIG).exists()
    later = [g for g in hub.file_gets(BIG) if g.at > changed_at[0] and g.if_range == old_etag]
    assert later and all(g.status == 200 for g in later)  # the whole new file, never a 206 to stitch


def test_expired_redirect_is_resolved_again_and_the_token_stays_home(
    cli: Run, registry: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HubServer(redirect_lfs=True, delay=0.002) as server:
        server.add(Repo("org/huge", model_files(big_mb=8, seed=7), token="hf_secret"))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        monkeypatch.setenv("MODELCTL_SPLIT_SIZE", "1M")
        monkeypatch.setenv("MODELCTL_CONNECTIONS", "4")
        registry(HUGE)
        result = cli("download", "huge")
        assert result.exit_code == 0, result.stderr
        cdn = [r for r in server.requests if r.path.startswith("/cdn/") and r.method == "GET"]
        resolves = [r for r in server.file_gets(BIG) if "/resolve/" in r.path]
        assert len(cdn) >= 4 and len(resolves) == 1  # resolved once, its final URL reused by each range
        assert all(r.authorization is None for r in cdn) and resolves[0].authorization == "Bearer hf_secret"

        server.reset_counters()
        folder = tmp_path / "home" / "org--huge"
        (folder / BIG).unlink()
        server.faults[BIG] = Fault(status=403, times=1)  # the CDN's signed URL expired
        again = cli("download", "huge")
        assert again.exit_code == 0, again.stderr
        assert len([r for r in server.file_gets(BIG) if "/resolve/" in r.path]) == 2  # again after the 403
        assert (folder / BIG).read_bytes() == server.repos["org/huge"].files[BIG]


def test_kill_9_keeps_every_written_range(hub: HubServer, huge: Path, project: Path) -> None:
    hub.delay = 0.004
    proc = start(project, "download", "huge")
    log = ranges_path(huge, BIG)
    size = 8 * MiB
    wait_for(lambda: log.exists() and sum(b - a for a, b in read_ranges(log, size)) > 3 * MiB)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    time.sleep(0.3)
    held = read_ranges(log, size)
    assert len(held) > 1, held  # several connections: ranges with holes between them
    missing = size - sum(b - a for a, b in held)
    assert not (huge / BIG).exists() and partial_of(huge, BIG).exists()
    listed = json.loads(run(project, "list", "--json").stdout)
    assert listed["models"][0]["partial_bytes"] >= size - missing

    hub.delay = 0.0
    hub.reset_counters()
    rerun = run(project, "download", "huge", "--connections", "1", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert hub.body_bytes(BIG) == missing  # each hole once; nothing written before fetched again
    big = next(f for f in json.loads(rerun.stdout)["models"][0]["files"] if f["path"] == BIG)
    assert big["action"] == "resume" and big["resumed_from"] == size - missing
    assert_complete(huge, files(hub))


def test_connections_setting_is_checked_everywhere(
    cli: Run, hub: HubServer, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_flag = cli("download", "tiny", "--connections", "0")
    assert bad_flag.exit_code == 2 and "0 is not in the range 1 to 64" in bad_flag.stderr
    monkeypatch.setenv("MODELCTL_CONNECTIONS", "100")
    registry("models:\n  - id: tiny\n    repo_id: org/tiny\n")
    env = cli("download", "tiny")
    assert env.exit_code == 1 and "MODELCTL_CONNECTIONS=100" in env.stderr
    monkeypatch.delenv("MODELCTL_CONNECTIONS")
    monkeypatch.setenv("MODELCTL_SPLIT_SIZE", "12k")
    small = cli("download", "tiny")
    assert small.exit_code == 1 and "MODELCTL_SPLIT_SIZE='12k' is not a size of at least 1M" in small.stderr
    monkeypatch.delenv("MODELCTL_SPLIT_SIZE")
    path = registry("download:\n  connections: many\nmodels:\n  - id: tiny\n    repo_id: org/tiny\n")
    bad = cli("list")
    assert bad.exit_code == 1 and "download.connections" in bad.stderr and str(path) in bad.stderr
    registry("download:\n  connections: 1\nmodels:\n  - id: tiny\n    repo_id: org/tiny\n")
    ok = cli("download", "tiny")
    assert ok.exit_code == 0, ok.stderr


def test_hf_transfer_variable_is_accepted_and_doctor_says_why(cli: Run, hub: HubServer, huge: Path) -> None:
    env = {"HF_HUB_ENABLE_HF_TRANSFER": "1"}
    result = cli("download", "huge", env=env)
    assert result.exit_code == 0, result.stderr
    assert_complete(huge, files(hub))
    assert len(hub.file_gets(BIG)) >= 2  # split by the built-in engine
    doctor = cli("doctor", env=env)
    assert "HF_HUB_ENABLE_HF_TRANSFER is set: modelctl's own engine does what it asks" in doctor.stdout
    assert "HF_HUB_ENABLE_HF_TRANSFER" not in cli("doctor").stdout


def test_python_api_takes_the_connection_budget(hub: HubServer, huge: Path, project: Path) -> None:
    from modelctl import ModelManager

    manager = ModelManager.from_config(project / "models.yaml", endpoint=hub.url, connections=1)
    assert manager.ensure_model("huge") == huge
    assert_complete(huge, files(hub))
    assert len({g.client_port for g in hub.file_gets()}) == 1  # one connection for every file


def test_a_server_without_etags_is_split_and_no_byte_is_fetched_twice(
    cli: Run, hub: HubServer, huge: Path
) -> None:
    hub.send_etag = False  # Range honoured, no ETag: the final sha256 guards the stitch
    hub.delay = 0.002
    result = cli("download", "huge", "--json")
    assert result.exit_code == 0, result.stderr
    assert_complete(huge, files(hub))
    gets = hub.file_gets(BIG)
    assert len(gets) >= 4 and all(g.status == 206 and g.if_range is None for g in gets)
    size = len(files(hub)[BIG])
    assert size <= hub.body_bytes(BIG) <= size + len(gets) * MiB  # nothing thrown away and fetched again


def test_failures_of_an_endpoint_the_file_left_spend_no_attempt_and_never_send_it_back(
    hub: HubServer, huge: Path, registry: Callable[..., Path], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    with HubServer() as second:
        second.add(Repo("org/huge", model_files(big_mb=8, seed=7)))
        registry(f"endpoints: [{hub.url}, {second.url}]\n" + HUGE)
        hub.delay = 0.002  # the first range streams while the others wait on the first endpoint
        hold = hub.holds[BIG] = Hold(skip=1)  # the first range is served, the next ones held...
        hub.faults[BIG] = Fault(status=503, times=None, skip=1)  # ...then refused, all at once
        proc = start(project, "download", "huge", "--retries", "2", "--json")
        wait_for(lambda: hold.waiting >= 2, 60)  # several ranges in flight on the failing endpoint
        hold.release()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err  # one switch; the other failures there spent no attempt
        assert_complete(huge, files(hub))
        assert len([g for g in hub.file_gets(BIG) if g.status == 503]) >= 2
        assert second.file_gets(BIG)  # the rest came from the second endpoint
        served = {f["path"]: f["endpoint"] for f in json.loads(out)["models"][0]["files"]}
        assert served[BIG] == f"127.0.0.1:{second.port}"


def test_an_endpoint_a_file_had_to_leave_is_tried_last_by_the_next_files(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    with HubServer() as failing:
        failing.add(Repo("org/tiny", model_files()))
        for name in failing.repos["org/tiny"].files:
            failing.faults[name] = Fault(status=503, times=None)
        registry(f"endpoints: [{failing.url}, {hub.url}]\n" + TINY)
        # metadata from the first endpoint (it answers the API), files fail there
        data = cli.json("download", "tiny", "--connections", "1")
        assert {f["endpoint"] for f in data["models"][0]["files"]} == {f"127.0.0.1:{hub.port}"}
        assert len(failing.file_gets()) == 1  # the first file left it; the others never went there
        assert_complete(tmp_path / "home" / "org--tiny", hub.repos["org/tiny"].files)


def test_the_engine_takes_its_connections_from_the_connector_it_is_given(
    hub: HubServer, tmp_path: Path
) -> None:
    """The transport seam: a URL on a host that does not exist, served through a connector that
    opens every connection to the fixture Hub; the engine's ranges, hashing and publish unchanged."""
    import http.client
    from urllib.parse import urlsplit

    from modelctl.core.retry import RetryPolicy
    from modelctl.fetch.download import NullEvents
    from modelctl.net.engine import fetch_files

    asked: list[str] = []

    def to_the_fixture_hub(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
        asked.append(urlsplit(url).netloc)
        parts = urlsplit(url)
        return http.client.HTTPConnection("127.0.0.1", hub.port, timeout=timeout), parts.path

    repo = hub.repos["org/tiny"]
    data = repo.files[BIG]
    folder = tmp_path / "model"
    (folder / BIG).parent.mkdir(parents=True)  # the planner makes a file's folders before the engine runs
    job = file_job("http://models.invalid", repo, BIG, folder)
    engine = fetch_files(
        [job],
        RetryPolicy(attempts=2),
        NullEvents(),
        connections=4,
        split_size=512 << 10,
        connector=to_the_fixture_hub,
    )
    assert {p: e.message for p, e in engine.errors.items()} == {}
    assert (folder / BIG).read_bytes() == data
    assert set(asked) == {"models.invalid"} and len(asked) >= 2  # every request went through it
    assert len(spans(hub)) >= 2  # split into ranges, as over any connection


def test_a_folder_is_fsynced_once_per_run_not_once_per_file(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file's bytes are fsynced before its rename; the folder's fsync (the renames' durability)
    is made once, after the run's files are published and before the record names them."""
    many = {f"part-{i:02d}.bin": os.urandom(4096 + i) for i in range(30)}
    hub.add(Repo("org/many", many))
    registry("models:\n  - id: many\n    repo_id: org/many\n")
    folder = tmp_path / "home" / "org--many"
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:  # the OS call, counted: what was made durable
        st = os.fstat(fd)
        synced.append(("folder" if st.st_mode & 0o170000 == 0o040000 else "file", st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    result = cli("download", "many")
    assert result.exit_code == 0, result.stderr
    assert_complete(folder, many)
    inodes = {(folder / name).stat().st_ino for name in many}
    assert sum(1 for kind, ino in synced if kind == "file" and ino in inodes) == 30
    assert [kind for kind, ino in synced if ino == folder.stat().st_ino] == ["folder"]


def test_a_connection_opens_another_file_rather_than_idle(tmp_path: Path) -> None:
    """With every open file's range taken and nothing to split (small files), a free connection
    opens the next file even past max_files: one held file no longer stalls the run."""
    from modelctl.core.retry import RetryPolicy
    from modelctl.fetch.download import NullEvents
    from modelctl.net.engine import fetch_files

    with HubServer() as hub:
        names = ("a.bin", "b.bin", "c.bin")
        repo = Repo("org/small", {name: os.urandom(4096) for name in names})
        hub.add(repo)
        hold = hub.holds["a.bin"] = Hold()
        fetched_meanwhile: list[bool] = []

        def release_once_the_others_are_fetched() -> None:
            hold.arrived.wait()
            try:
                wait_for(lambda: {"b.bin", "c.bin"} <= {g.path.rsplit("/", 1)[-1] for g in hub.file_gets()})
                fetched_meanwhile.append(True)
            finally:
                hold.release()

        thread = threading.Thread(target=release_once_the_others_are_fetched)
        thread.start()
        engine = fetch_files(
            [file_job(hub.url, repo, name, tmp_path) for name in names],
            RetryPolicy(attempts=2, timeout=30),
            NullEvents(),
            connections=2,
            max_files=1,
        )
        thread.join()
    assert fetched_meanwhile == [True]
    assert sorted(engine.results) == list(names) and not engine.errors
    assert all((tmp_path / name).read_bytes() == repo.files[name] for name in names)
