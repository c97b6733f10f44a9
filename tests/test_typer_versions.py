"""What holds on every Typer that pyproject.toml allows (CI runs the lowest and the newest).

docs/cli.md is generated under the newest Typer, and tests/test_docs.py compares it exactly. Typer
0.29 renders metavars differently (`<bool>` beside flags, `<list[str]>`, `models...`) and so wraps
help text at other words; under any version, the same commands, options and help words must appear.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from typer.testing import CliRunner

from modelctl.cli import app

DOCS = Path(__file__).resolve().parents[1] / "docs"
_METAVAR = re.compile(r"<[^<>\s]*>")  # <bool>, <str>, <list[str]>, <path>
_NOISE = re.compile(r"[│╭╮╰╯─]+|\.\.\.")


def words(text: str) -> list[str]:
    """Help text without what differs between Typer versions: box drawing, metavars, wrapping."""
    return _NOISE.sub(" ", _METAVAR.sub(" ", text)).split()


def test_cli_reference_matches_help_on_this_typer() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert words(module.render()) == words((DOCS / "cli.md").read_text(encoding="utf-8")), (
        "docs/cli.md is stale: run python docs/gen_cli.py (under the newest Typer)"
    )


def test_bad_usage_is_exit_2_and_models_take_several_ids(project: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["download", "--max-workers", "many"])
    assert result.exit_code == 2
    assert "--max-workers" in result.stderr  # Typer 0.29 no longer repeats the value
    result = runner.invoke(app, ["list", "--no-such-option"])
    assert result.exit_code == 2
    (project / "models.yaml").write_text(
        "models:\n  - id: a\n    repo_id: org/a\n  - id: b\n    repo_id: org/b\n"
    )
    result = runner.invoke(app, ["info", "a", "b", "--json"])
    assert result.exit_code == 0, result.stderr
    assert '"a"' in result.stdout and '"b"' in result.stdout
