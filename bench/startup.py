"""Time `modelctl list` against a fair floor on the same Typer, interleaved, and print the ratios.

The floor is a two-command Typer app (FLOOR_APP) that reads the same models.yaml and draws a
Rich table: what any Typer + Rich + YAML command pays, on whichever Typer is installed (0.29
imports pydantic at command time, 0.28 does not). Target: `modelctl list` <= 1.3x the floor.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def registry_text(count: int) -> str:
    lines = ["models:"]
    for i in range(count):
        lines += [
            f"  - id: model-{i}",
            f"    repo_id: org/model-{i}",
            "    family: bench",
            f"    size: {i % 3 + 1}b",
            f"    required: {str(i % 2 == 0).lower()}",
            '    files: ["*.json", "*.safetensors"]',
        ]
    return "\n".join(lines) + "\n"


FLOOR_APP = """\
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

app = typer.Typer()


@app.command("list")
def list_command(
    size: Annotated[str | None, typer.Option("--size", "-s", help="Size variant.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Registry file.")] = None,
) -> None:
    \"\"\"List the registry's models.\"\"\"
    data = yaml.safe_load((config or Path("models.yaml")).read_text())
    table = Table("id", "repo", "size", "required", "present")
    for m in data["models"]:
        if size in (None, m.get("size")):
            present = (Path("models") / m["id"]).is_dir()
            table.add_row(m["id"], m["repo_id"], m.get("size"), str(m.get("required", True)), str(present))
    Console().print(table)


@app.command("info")
def info_command(model: str) -> None:
    \"\"\"Show one model.\"\"\"
    typer.echo(model)


if __name__ == "__main__":
    app()
"""


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    work = Path(tempfile.mkdtemp(prefix="modelctl-startup-"))
    try:
        (work / "models.yaml").write_text(registry_text(10))
        for i in range(0, 10, 2):  # half the models present in the project root
            folder = work / "models" / f"model-{i}"
            folder.mkdir(parents=True)
            (folder / "config.json").write_text("{}")
            (folder / "model.safetensors").write_bytes(b"\0" * 1024)
        # No MODELCTL_HOME: the user root comes from platformdirs, as on a user's machine.
        env = {**os.environ, "HOME": str(work / "home"), "XDG_DATA_HOME": str(work / "home" / "data")}
        env.pop("MODELCTL_HOME", None)
        env.pop("MODELCTL_CONFIG", None)
        # An installed wheel has bytecode; an editable install under PYTHONDONTWRITEBYTECODE=1 would
        # recompile modelctl on every run and measure the compiler, not modelctl.
        import modelctl

        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", os.path.dirname(modelctl.__file__)], check=True
        )
        (work / "floor.py").write_text(FLOOR_APP)
        modelctl = shutil.which("modelctl") or "modelctl"
        commands = {
            "modelctl list": [modelctl, "list"],
            "modelctl list --json": [modelctl, "list", "--json"],
            "modelctl --help": [modelctl, "--help"],
            "floor app list": [sys.executable, "floor.py", "list"],
            "import typer, rich, yaml": [sys.executable, "-c", "import typer, rich, yaml"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():  # warm the page cache once
            run(cmd, work, env)
        for _ in range(rounds):
            for name, cmd in commands.items():
                times[name].append(run(cmd, work, env))
        from importlib.metadata import version

        base = statistics.median(times["import typer, rich, yaml"])
        floor = statistics.median(times["floor app list"])
        print(f"Typer {version('typer')}, Rich {version('rich')}, {rounds} interleaved rounds")
        print(f"{'command':<28}{'median ms':>10}{'/imports':>10}{'/floor':>8}")
        for name, samples in times.items():
            med = statistics.median(samples)
            print(f"{name:<28}{med * 1000:>10.1f}{med / base:>10.2f}{med / floor:>8.2f}")
        ratio = statistics.median(times["modelctl list"]) / floor
        verdict = "ok" if ratio <= 1.3 else "OVER the 1.3x target"
        print(f"modelctl list / floor app list = {ratio:.2f} ({verdict})")
        check = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from modelctl.cli import app; "
                "app(['list'], standalone_mode=False); "
                "print('huggingface_hub' in sys.modules, 'pydantic' in sys.modules, file=sys.stderr)",
            ],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        hub, pyd = check.stderr.strip().splitlines()[-1].split()
        print(f"huggingface_hub imported by list: {hub}; pydantic imported: {pyd}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
