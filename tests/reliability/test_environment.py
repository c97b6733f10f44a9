"""The environment modelctl runs in: closed or short-lived stdout/stderr, a deleted working directory,
terminal escapes in names, and progress lines said once.

Every test runs the real `modelctl` in a subprocess with real pipes and file descriptors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import put_files
from tests.hubserver import Fault, HubServer
from tests.process import assert_complete, files_of, run

MODELCTL = [sys.executable, "-m", "modelctl"]
ESCAPE = "\x1b]0;pwned\x07"  # sets the terminal's title: must never reach a terminal raw


def run_closed(project: Path, redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """modelctl with a shell redirection applied first, e.g. `>&-` closes stdout."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", *MODELCTL, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def into_head(
    project: Path, *args: str, stderr_too: bool = False, reader: tuple[str, ...] = ("head", "-1")
) -> tuple[subprocess.Popen[bytes], bytes, bytes]:
    """`modelctl ARGS | head -1` (with `2>&1` when stderr_too): modelctl, head's output, modelctl's stderr."""
    proc = subprocess.Popen(
        [*MODELCTL, *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
    )
    head = subprocess.Popen(reader, stdin=proc.stdout, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # head alone reads the pipe: when it exits, the pipe has no reader
    shown, _ = head.communicate(timeout=120)
    err = b""
    if proc.stderr is not None:
        err = proc.stderr.read()
        proc.stderr.close()
    proc.wait(timeout=120)
    return proc, shown, err


def assert_no_crash(err: str | bytes) -> None:
    text = err.decode() if isinstance(err, bytes) else err
    assert "Traceback" not in text and "Exception ignored" not in text, text


# --------------------------------------------------------------------------- A1 stdout closed


@pytest.mark.parametrize("args", [["list"], ["list", "--json"]], ids=["table", "json"])
def test_a1_closed_stdout_is_a_clean_error(
    registry: Callable[..., Path], project: Path, args: list[str]
) -> None:
    registry()
    result = run_closed(project, ">&-", *args)
    assert result.returncode == 1
    assert_no_crash(result.stderr)
    assert "Error: Cannot write the answer: standard output is closed." in result.stderr
    both = run_closed(project, ">&- 2>&-", *args)  # nowhere to say it: still exit 1, no crash
    assert both.returncode == 1


# --------------------------------------------------------------------------- A2 deleted cwd


def test_a2_deleted_working_directory(registry: Callable[..., Path], project: Path, tmp_path: Path) -> None:
    config = registry()
    gone = tmp_path / "gone"
    gone.mkdir()
    command = ["sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(gone), *MODELCTL, "list"]
    with_config = subprocess.run(
        command,
        env={**os.environ, "MODELCTL_CONFIG": str(config)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert with_config.returncode == 0, with_config.stderr
    assert "tiny" in with_config.stdout and "2 models" in with_config.stdout
    for args in (["list"], ["init"]):  # the registry is looked for from the cwd; init writes there
        gone.mkdir()
        without = subprocess.run([*command[:-1], *args], capture_output=True, text=True, check=False)
        assert without.returncode == 1
        assert_no_crash(without.stderr)
        assert "Error: The current directory no longer exists" in without.stderr
        assert "Hint: cd to an existing folder" in without.stderr


# --------------------------------------------------------------------------- A3 short pipe on stdout


def many_models(count: int) -> str:
    return "models:\n" + "".join(
        f"  - {{id: model-{i:04}, repo_id: org/model-{i:04}, family: demo, size: 1b}}\n" for i in range(count)
    )


@pytest.mark.parametrize(
    ("args", "reader", "first"),
    [
        (["list"], ("head", "-1"), b"id "),
        (["list", "--json"], ("true",), b""),  # the reader is gone before the first byte
    ],
    ids=["table-head", "json-true"],
)
def test_a3_short_pipe_ends_quietly(
    registry: Callable[..., Path], project: Path, args: list[str], reader: tuple[str, ...], first: bytes
) -> None:
    registry(many_models(1500))  # ~130 KB of table, ~640 KB of JSON: more than a pipe holds
    proc, shown, err = into_head(project, *args, reader=reader)
    assert proc.returncode == 0, err
    assert err.decode().startswith("Registry:") or not err
    assert_no_crash(err)
    assert b"Error" not in err
    assert shown.startswith(first)


# --------------------------------------------------------------------------- A4 stderr short or closed


def test_a4_download_goes_on_when_stderr_goes_into_a_short_pipe(
    hub: HubServer,
    tiny: Path,
    project: Path,
) -> None:
    hub.delay = 0.01  # ~0.5 s of transfer: progress lines keep coming after head has gone
    proc, shown, _ = into_head(project, "download", "tiny", stderr_too=True)
    assert proc.returncode == 0
    assert shown.startswith(b"Registry:")
    assert_complete(tiny, files_of(hub))


def test_a4_download_goes_on_with_stderr_closed(
    hub: HubServer,
    tiny: Path,
    project: Path,
) -> None:
    result = run_closed(project, "2>&-", "download", "tiny")
    assert result.returncode == 0
    assert "Fetched" in result.stdout and "every file verified by hash" in result.stdout
    assert_complete(tiny, files_of(hub))


# --------------------------------------------------------------------------- B escapes in names


def test_b_unprintable_characters_in_names_are_shown_escaped(
    registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(
        "models:\n  - id: tiny\n    repo_id: org/tiny\n"
        '    description: "Tiny \\e]0;pwned\\a model"\n'  # YAML's \e and \a: ESC and BEL
    )
    put_files(tmp_path / "home" / "org--tiny", {f"evil{ESCAPE}\r.bin": b"x"})
    info = run(project, "info", "tiny")
    assert info.returncode == 0, info.stderr
    assert "\x1b" not in info.stdout and "\r" not in info.stdout
    assert "Tiny \\x1b]0;pwned\\x07 model" in info.stdout  # the description
    assert "evil\\x1b]0;pwned\\x07\\r.bin" in info.stdout  # the file on disk
    unknown = run(project, "info", f"x{ESCAPE}")  # an error message naming what was asked for
    assert unknown.returncode == 4
    assert "\x1b" not in unknown.stderr and "x\\x1b]0;pwned\\x07" in unknown.stderr


def test_b_server_file_names_never_reach_the_terminal_raw(
    hub: HubServer,
    tiny: Path,
    project: Path,
) -> None:
    # A name with ESC or CR is refused by download.py (its error message is then rendered by
    # output.error, escaped); a bidi override is not a control character, and is shown escaped.
    name = "evil\u202etxt.exe"
    hub.repos["org/tiny"].files[name] = b"data"
    hub.repos["org/tiny"].__post_init__()  # a new commit that lists it
    result = run(project, "download", "tiny")
    shown = result.stderr + result.stdout
    assert not any(ch in shown for ch in "\x1b\x07\u202e"), shown
    assert result.returncode == 0, result.stderr
    assert "start evil\\u202etxt.exe (4 bytes)" in result.stderr


# --------------------------------------------------------------------------- C retry lines once


def test_c_each_retry_is_reported_once(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.faults["config.json"] = Fault(status=500, times=1)
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    retries = [line for line in result.stderr.splitlines() if "retry config.json" in line]
    assert len(retries) == 1, result.stderr
    assert "HTTP 500" in retries[0]
    hub.faults["config.json"] = Fault(status=500, times=1)
    quiet = run(project, "download", "tiny", "--force", "-q")  # -q: nothing on stderr at all
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert_complete(tiny, files_of(hub))
