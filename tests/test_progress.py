"""Progress that means something, on a terminal and in a pipe, and a library that does not print."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.hubserver import HubServer
from tests.process import run

BIG = "weights/big.bin"
FAST = {"MODELCTL_PROGRESS_INTERVAL": "0.2"}
TICK = re.compile(r"^  weights/big\.bin: [\d,]+ of 3,145,728 bytes \(\d+%\), \d+ [kM]?B/s$", re.M)


# --------------------------------------------------------------------------- progress that means something


def test_rate_is_left_out_when_too_short_and_has_a_unit_that_fits() -> None:
    from modelctl.output.progress import rate

    assert rate(61, 0.001) is None
    assert rate(500, 1.0) == "500 B/s"
    assert rate(500_000, 1.0) == "500 kB/s"
    assert rate(3_000_000, 1.0) == "3 MB/s"


def test_done_lines_name_the_hash_checked_and_no_meaningless_rate(
    hub: HubServer, registry: Callable[..., Path], project: Path
) -> None:
    registry(TINY)
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    config = next(line for line in lines if line.startswith("  done config.json:"))
    assert ", git-sha1 " in config and config.endswith("… verified") and "sha256" not in config
    weights = next(line for line in lines if line.startswith("  done model.safetensors:"))
    assert ", sha256 " in weights and weights.endswith("… verified")
    assert "(0 MB/s)" not in result.stderr


def test_no_bar_on_a_terminal_when_nothing_is_to_fetch(downloaded: Path, project: Path) -> None:
    script = shutil.which("script")
    if script is None:
        pytest.skip("util-linux script is needed to give modelctl a terminal")
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    result = subprocess.run(
        [script, "-qec", f"{sys.executable} -m modelctl download tiny", "/dev/null"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
    assert "tiny: 0 to fetch" in result.stdout
    assert "tiny (total)" not in result.stdout and "0/?" not in result.stdout


# --------------------------------------------------------------------------- piped output shows a long file moving


def test_piped_download_prints_progress_lines_at_an_interval(
    hub: HubServer, registry: Callable[..., Path], project: Path
) -> None:
    registry(TINY)
    hub.delay = 0.02  # 3 MB in 64 KiB chunks: about a second
    result = run(project, "download", "tiny", env=FAST)
    assert result.returncode == 0, result.stderr
    ticks = TICK.findall(result.stderr)
    assert len(ticks) >= 2, result.stderr
    assert result.stderr.index(f"start {BIG}") < result.stderr.index(ticks[0])
    assert result.stderr.index(ticks[-1]) < result.stderr.index(f"done {BIG}")


@pytest.mark.parametrize("flags", [("-q",), ("--json", "-q")])
def test_quiet_download_prints_no_progress_lines(
    hub: HubServer, registry: Callable[..., Path], project: Path, flags: tuple[str, ...]
) -> None:
    registry(TINY)
    hub.delay = 0.02
    result = run(project, "download", "tiny", *flags, env=FAST)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_progress_interval_defaults_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelctl.output.progress import PROGRESS_INTERVAL, progress_interval

    assert progress_interval() == PROGRESS_INTERVAL == 10.0
    monkeypatch.setenv("MODELCTL_PROGRESS_INTERVAL", "0.5")
    assert progress_interval() == 0.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("MODELCTL_PROGRESS_INTERVAL", bad)
        assert progress_interval() == PROGRESS_INTERVAL


# --------------------------------------------------------------------------- the library does not print


def test_importing_modelctl_keeps_its_warnings_off_stderr(project: Path) -> None:
    code = "import logging, modelctl; logging.getLogger('modelctl.api').warning('should not be seen')"
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""


def test_an_application_that_configures_logging_still_gets_the_warnings(project: Path) -> None:
    code = (
        "import logging, modelctl; logging.basicConfig(format='%(name)s %(message)s'); "
        "logging.getLogger('modelctl.api').warning('seen')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "modelctl.api seen\n"
