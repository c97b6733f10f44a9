"""The real `modelctl` executable in a subprocess, and what tests assert of a model's folder.

Shared by the reliability suite and the transfer tests (engine, TLS, download): each starts the
executable the way a user would and judges the end state on disk.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from modelctl.net.transfer import FileJob
from tests.hubserver import HubServer, Repo

BIG = "weights/big.bin"  # org/tiny's 3 MiB file: big enough to kill or cut a download in the middle


def start(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m modelctl ARGS` in project, stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "modelctl", *args],
        cwd=project,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = start(project, *args, env=env)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    """Read proc's stderr line by line until a line holds `text`; what was read (AssertionError at EOF)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never printed; stderr was:\n{''.join(seen)}")


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def settle(hub: HubServer) -> None:
    """Let the server record requests of a killed client, then forget them."""
    time.sleep(0.3)
    hub.reset_counters()


def files_of(hub: HubServer) -> dict[str, bytes]:
    return hub.repos["org/tiny"].files


def assert_complete(folder: Path, files: dict[str, bytes]) -> None:
    """Every file holds the Hub's bytes under its real name, and no partial download is left."""
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name
    partials = folder / ".modelctl" / "partials"
    leftovers = sorted(p.name for p in partials.iterdir()) if partials.exists() else []
    assert leftovers == [], leftovers


def assert_nothing_bad(folder: Path, files: dict[str, bytes]) -> None:
    """Every file under its real name holds the Hub's bytes; nothing else looks complete."""
    if not folder.exists():
        return
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if not path.is_file() or rel.startswith(".modelctl/"):
            continue
        assert rel in files, f"unexpected file {rel}"
        assert path.read_bytes() == files[rel], f"{rel} published with wrong bytes"


def file_job(base: str, repo: Repo, name: str, folder: Path) -> FileJob:
    """The engine's job for one file of repo, fetched from base (an endpoint URL) into folder."""
    data = repo.files[name]
    return FileJob(
        urls=(f"{base}/{repo.repo_id}/resolve/{repo.commit}/{name}",),
        folder=folder,
        dest=folder / name,
        rel_path=name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blob_id=repo.entry(name)["oid"],
        commit=repo.commit,
        headers=lambda url: {},
    )
