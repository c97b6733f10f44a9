"""The connection count adapts: from 4, doubled while it pays, halved when the server is busy;
and a first byte behind a mirror filling its cache is waited for.

The rule is fed bytes and times directly (net/pace.py is arithmetic on what the engine measured);
two runs of the engine against the fixture Hub show it in place: a Hub that sends each connection
slowly gets more connections, one that answers 503 gets fewer.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from modelctl.core.retry import RetryPolicy
from modelctl.fetch.download import NullEvents
from modelctl.net.engine import fetch_files
from modelctl.net.pace import START, WINDOW, Pacer
from tests.hubserver import Fault, Hold, HubServer, Repo
from tests.process import file_job

MIB = 1 << 20


def run_link(pacer: Pacer, per_connection: float, link: float, seconds: float) -> list[int]:
    """Feed the pacer what a link gives: each connection up to per_connection B/s, all of them
    up to link B/s; return the counts it chose."""
    now, received = 0.0, 0
    step = 0.2
    while now < seconds:
        received += int(min(pacer.target * per_connection, link) * step)
        now += step
        pacer.tick(now, received, flowing=pacer.target)
    return pacer.counts


def test_a_link_capped_per_connection_grows_to_the_ceiling() -> None:
    assert run_link(Pacer(None, 64), per_connection=1e6, link=1e12, seconds=30) == [4, 64]


def test_a_link_full_at_a_few_connections_settles_there() -> None:
    # loopback: 4 connections fill it; 8 bring nothing, so the step is given back
    assert run_link(Pacer(None, 64), per_connection=500e6, link=1e9, seconds=30) == [4, 8, 4]
    # 10 MB/s per connection: x4 at once (32 MB/s over 10). A link 8 fill: 16 brought a third
    # of a linear gain, so 32; those bring nothing: back to 16. A link 6 fill: 16 brought little,
    # so what 60 MB/s needs at 10 MB/s each, and a quarter more: 8
    assert run_link(Pacer(None, 64), per_connection=10e6, link=80e6, seconds=30) == [4, 16, 32, 16]
    assert run_link(Pacer(None, 64), per_connection=10e6, link=60e6, seconds=30) == [4, 16, 8]
    assert run_link(Pacer(None, 64), per_connection=25e6, link=1e12, seconds=30) == [4, 8, 32, 64]
    # a link 20 fill: 16 were linear, so x4, capped at 64; those bring a quarter more: what 20 need
    assert run_link(Pacer(None, 64), per_connection=10e6, link=200e6, seconds=30) == [4, 16, 64, 25]


def test_a_busy_server_halves_the_count_and_ends_the_growth() -> None:
    pacer = Pacer(None, 64)
    run_link(pacer, per_connection=1e6, link=1e12, seconds=4 * WINDOW)
    grown = pacer.target
    assert grown > START
    pacer.busy()
    assert pacer.target == grown // 2
    assert run_link(pacer, per_connection=1e6, link=1e12, seconds=30)[-1] == grown // 2


def test_no_bytes_yet_is_no_verdict() -> None:
    """A mirror filling its cache sends nothing for a while: that is not 'more connections pay'."""
    pacer = Pacer(None, 64)
    for tick in range(1, 100):
        pacer.tick(tick * 0.2, 0, flowing=0)
    assert pacer.counts == [START]


def test_connections_still_waiting_for_their_first_byte_are_no_verdict() -> None:
    """Right after a step the new connections are not receiving yet: the window starts over."""
    pacer = Pacer(None, 64)
    now, received = 0.0, 0
    while pacer.target == START:
        now, received = now + 0.2, received + int(START * 1e6 * 0.2)
        pacer.tick(now, received, flowing=START)
    grown = pacer.target
    for _ in range(50):  # the old ones go on at 1 MB/s each; the new ones have not begun
        now, received = now + 0.2, received + int(START * 1e6 * 0.2)
        pacer.tick(now, received, flowing=START)
    assert pacer.counts == [START, grown]


def test_a_fixed_count_never_changes() -> None:
    pacer = Pacer(16, 64)
    assert run_link(pacer, per_connection=1e6, link=1e12, seconds=30) == [16]
    pacer.busy()
    assert pacer.counts == [16]
    assert Pacer(100, 64).target == 64  # never above the ceiling


def test_a_slow_connection_at_a_time_gets_more_connections(tmp_path: Path) -> None:
    # Each connection sends 64 KiB, then sleeps 20 ms (~3 MB/s): doubling the count doubles the rate.
    with HubServer(delay=0.02) as hub:
        repo = Repo("org/slow", {"weights.bin": os.urandom(24 * MIB)})
        hub.add(repo)
        engine = fetch_files(
            [file_job(hub.url, repo, "weights.bin", tmp_path)],
            RetryPolicy(attempts=3),
            NullEvents(),
            split_size=MIB,
        )
        assert engine.errors == {}
        assert (tmp_path / "weights.bin").read_bytes() == repo.files["weights.bin"]
        assert engine.connection_counts[0] == START and max(engine.connection_counts) >= 2 * START
        connections = {r.client_port for r in hub.file_gets("weights.bin")}
        assert len(connections) > START


def test_a_server_answering_503_gets_fewer_connections(tmp_path: Path) -> None:
    with HubServer() as hub:
        repo = Repo("org/busy", {"weights.bin": os.urandom(8 * MIB)})
        hub.add(repo)
        hub.faults["weights.bin"] = Fault(status=503, retry_after="0", times=1)
        engine = fetch_files(
            [file_job(hub.url, repo, "weights.bin", tmp_path)],
            RetryPolicy(attempts=3),
            NullEvents(),
            split_size=MIB,
        )
        assert engine.errors == {}
        assert (tmp_path / "weights.bin").read_bytes() == repo.files["weights.bin"]
        assert engine.connection_counts == [START, START // 2]


def test_a_first_byte_slower_than_the_read_timeout_is_waited_for(tmp_path: Path) -> None:
    """A pull-through mirror answers only once it has the block from the origin: the head of the
    answer may take FIRST_BYTE read timeouts; the body's reads keep the plain one."""
    with HubServer() as hub:
        repo = Repo("org/cold", {"weights.bin": os.urandom(2 * MIB)})
        hub.add(repo)
        hold = hub.holds["weights.bin"] = Hold()

        def filling_the_cache() -> None:
            hold.arrived.wait()
            time.sleep(1.5)  # the scenario itself: longer than the 1 s read timeout
            hold.release()

        thread = threading.Thread(target=filling_the_cache)
        thread.start()
        engine = fetch_files(
            [file_job(hub.url, repo, "weights.bin", tmp_path)],
            RetryPolicy(attempts=1, timeout=1.0),
            NullEvents(),
            connections=1,
        )
        thread.join()
        assert engine.errors == {}
        assert (tmp_path / "weights.bin").read_bytes() == repo.files["weights.bin"]
        assert len(hub.file_gets("weights.bin")) == 1  # waited, not timed out and asked again
