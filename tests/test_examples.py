"""The example setup script, run for real against the fixture Hub."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import TINY, Run
from tests.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[1]


def run_script(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "examples" / "setup_models.sh"), *args],
        cwd=project,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_setup_script_fetches_repairs_and_reports(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    first = run_script(project)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "home" / "org--tiny"
    assert first.stdout == f"model ready: {folder}\n"
    assert (folder / "config.json").read_bytes() == hub.repos["org/tiny"].files["config.json"]
    (folder / "config.json").write_bytes(b"")
    hub.reset_counters()
    again = run_script(project, "0.5b")
    assert again.returncode == 0, again.stderr
    assert [r.path.rsplit("/", 1)[-1] for r in hub.file_gets()] == ["config.json"]
    unknown = run_script(project, "13b")
    assert unknown.returncode == 4
    assert "not in the registry" in unknown.stderr


def _workflow_steps(env: dict[str, str], project: Path) -> list[tuple[str, str]]:
    """The shipped workflow's `run:` steps, in order, as (name, script); its env added to `env`."""
    workflow = yaml.safe_load((ROOT / "examples" / "github-actions.yml").read_text())
    job = workflow["jobs"]["test"]
    for key, value in job["env"].items():
        if "${{" not in str(value):  # secrets are the runner's
            env[key] = str(value)
    return [(step.get("name", step["run"]), step["run"]) for step in job["steps"] if "run" in step]


def test_github_actions_example_passes_as_shipped_in_a_fresh_project(hub: HubServer, tmp_path: Path) -> None:
    """Every `run:` step, in order, in a project that is not this repository: a first run with no
    lock, then with the lock committed; the runner's home (its ~/.cache/modelctl) kept between."""
    import sys

    from tests.hubserver import Repo

    hub.add(Repo("org/full-only", {"weights.bin": b"x" * 1000}))
    project = tmp_path / "their-project"
    (project / "tests").mkdir(parents=True)
    (project / "models.yaml").write_text(TINY + "  - {id: full-only, repo_id: org/full-only}\n")
    (project / "models.minimal.yaml").write_text(TINY)
    (project / "tests" / "test_models.py").write_text(
        "import subprocess\nfrom pathlib import Path\n\n\ndef test_the_model_is_there():\n"
        "    out = subprocess.run(['modelctl', 'path', 'tiny'], capture_output=True, text=True, check=True)\n"
        "    assert (Path(out.stdout.strip()) / 'config.json').is_file()\n"
    )
    home = tmp_path / "runner"
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("MODELCTL_HOME")  # the workflow sets it
    steps = _workflow_steps(env, project)
    version = next(
        line.split('"')[1]
        for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.startswith("version")
    )
    install, *rest = steps
    assert install[1] == f'pip install "modelctl=={version}"'  # pinned to the version released
    keys = []
    for round_ in ("first run, no lock", "lock committed"):
        output = tmp_path / f"github-output-{len(keys)}"
        for name, script in rest:
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                cwd=project,
                env={**env, "GITHUB_OUTPUT": str(output)},
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, (
                f"{round_}: step {name!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        keys.append(output.read_text())
        lock = subprocess.run(
            ["modelctl", "lock"], cwd=project, env=env, capture_output=True, text=True, check=False
        )
        assert lock.returncode == 0, lock.stderr
    assert (project / "models.minimal.lock").is_file() and not (project / "models.lock").exists()
    assert keys[0].startswith("key=models-") and keys[0] != keys[1]  # the lock is part of the key
    assert (home / ".cache" / "modelctl" / "org--tiny" / "config.json").is_file()  # what actions/cache keeps
    assert not (home / ".cache" / "modelctl" / "org--full-only").exists()  # the minimal set only


def test_setup_script_never_calls_an_incomplete_model_ready(
    cli: Run, hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    cli.json("download", "tiny", "--include", "*.json")  # as a first download cut short leaves it
    offline = subprocess.run(
        ["bash", str(ROOT / "examples" / "setup_models.sh"), "0.5b"],
        cwd=project,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert offline.returncode == 3 and "model ready" not in offline.stdout
    done = run_script(project, "0.5b")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "home" / "org--tiny"
    assert done.stdout == f"model ready: {folder}\n"
    assert (folder / "weights" / "big.bin").read_bytes() == hub.repos["org/tiny"].files["weights/big.bin"]


def test_setup_fastvlm_shows_progress_on_a_terminal_and_prints_only_paths(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    """setup_fastvlm.sh runs `ensure --quiet`: on a terminal its stderr still draws the bars."""
    import pty
    import select

    from tests.hubserver import Hold
    from tests.process import BIG

    registry(TINY)
    hold = Hold()
    hub.holds[BIG] = hold
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        ["bash", str(ROOT / "examples" / "setup_fastvlm.sh"), "0.5b"],
        cwd=project,
        env=os.environ.copy(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    drawn = b""
    try:
        while b"big.bin" not in drawn:  # the file's bar, drawn while its bytes are held back
            ready, _, _ = select.select([controller], [], [], 60)  # a guard against a hang, not a timing
            assert ready, f"no progress drawn on the terminal; it showed: {drawn!r}"
            drawn += os.read(controller, 4096)
        hold.release()
        out, _ = proc.communicate(timeout=120)
        while True:
            try:
                piece = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not piece:
                break
            drawn += piece
    finally:
        hold.release()
        os.close(controller)
    assert proc.returncode == 0
    assert out == f"model ready: {tmp_path / 'home' / 'org--tiny'}\n"  # stdout: only the path
    assert b"tiny (total)" in drawn and b"done " not in drawn  # bars only, no summary lines
