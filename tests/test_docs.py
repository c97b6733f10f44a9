"""docs/cli.md is generated from --help; this fails when it is stale."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_cli_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == expected, (
        "docs/cli.md is stale: run python docs/gen_cli.py"
    )
    for command in ("list", "info", "download", "verify", "ensure", "clean", "checksum", "lock", "doctor"):
        assert f"## modelctl {command}\n" in expected


def test_migration_tables_name_real_commands_and_options() -> None:
    """Every `modelctl …` line of docs/migrating.md names a command and options that exist."""
    import re
    from typing import Any

    import typer

    from modelctl.cli import app

    root: Any = typer.main.get_command(app)  # a click Group (Typer's own click, on newer Typers)
    text = (DOCS / "migrating.md").read_text(encoding="utf-8")
    lines = re.findall(r"`((?:[A-Z_]+=\S+ )*modelctl [^`]*)`", text)
    assert len(lines) >= 15, lines
    for line in lines:
        words = [w for w in line.split() if "=" not in w or w.startswith("-")]
        words = words[words.index("modelctl") + 1 :]
        options = {o for p in root.params for o in p.opts}
        command: Any = root
        for word in words:
            if word.startswith("-"):
                assert word.split("=")[0] in options, (line, word)
            elif command is root and word in root.commands:
                command = root.commands[word]
                options |= {o for p in command.params for o in p.opts}
        assert command is not root or words[0].startswith("-"), line


def test_readme_links_lead_to_files() -> None:
    """README.md is a guide that points into docs/: every relative link names a file there is."""
    import re

    readme = DOCS.parent / "README.md"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link]
    assert len(local) >= 15, local
    missing = [link for link in local if not (readme.parent / link).is_file()]
    assert missing == []
    assert readme.stat().st_size <= 12 * 1024  # a guide; the manual is docs/


# Rows of docs/reliability.md allowed to say `none` in their test column, each with the reason
# (empty: every scenario on the page is exercised by a test).
RELIABILITY_ROWS_WITHOUT_A_TEST: dict[int, str] = {}


def test_every_reliability_row_names_tests_that_exist() -> None:
    """Each row of docs/reliability.md's table ends with `path::name` of tests that are defined there."""
    import re

    text = (DOCS / "reliability.md").read_text(encoding="utf-8")
    assert "| bad files accepted | test |\n" in text  # the tests are the table's last column
    rows: dict[str, str] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            assert cells[0] not in rows, f"row {cells[0]} appears twice"
            rows[cells[0]] = cells[-1]
    assert len(rows) >= 79, sorted(rows, key=int)
    untested = sorted(int(number) for number, tests in rows.items() if tests == "none")
    assert untested == sorted(RELIABILITY_ROWS_WITHOUT_A_TEST), "rows saying `none` = the allowlist"
    for number, tests in rows.items():
        if tests == "none":
            continue
        for node in tests.split("<br>"):
            path, _, name = node.partition("::")
            assert re.fullmatch(r"tests/[\w/]+\.py", path) and re.fullmatch(r"test_\w+", name), (number, node)
            source = DOCS.parent / path
            assert source.is_file(), (number, node)
            assert f"def {name}(" in source.read_text(encoding="utf-8"), (number, node)
