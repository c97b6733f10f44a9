"""What the commands print: the registry note, summaries, --version, help, JSON errors (through the CLI)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from modelctl import __version__
from tests.conftest import TINY, Run, put_partial
from tests.hubserver import HubServer
from tests.process import run

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- 1: the registry note once


def test_registry_note_is_printed_once_by_download_dry_run_and_ensure(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    for args in (("download", "tiny", "--dry-run"), ("download", "tiny")):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        assert result.stderr.count("Registry: ") == 1, args
    (tmp_path / "home" / "org--tiny" / "config.json").write_bytes(b"")
    repaired = cli("ensure")
    assert repaired.exit_code == 0, repaired.stderr
    assert "Repaired tiny: config.json" in repaired.stdout
    assert repaired.stderr.count("Registry: ") == 1


def test_registry_note_is_printed_once_in_a_pipe(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(TINY)
    for args in (("download", "tiny", "--dry-run"), ("download", "tiny")):
        result = run(project, *args)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("Registry: ") == 1, args
    (tmp_path / "home" / "org--tiny" / "config.json").write_bytes(b"")
    repaired = run(project, "ensure")
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stderr.count("Registry: ") == 1


# --------------------------------------------------------------------------- 2: honest summaries


def test_download_with_nothing_to_fetch_says_what_it_did(cli: Run, downloaded: Path) -> None:
    again = cli("download", "tiny")
    assert again.exit_code == 0, again.stderr
    assert "verified by hash" not in again.stdout
    assert again.stdout.splitlines()[-1] == "Nothing to fetch; 7 files kept, verified by their record."
    (downloaded / "README.md").touch()  # same bytes, new mtime: the record no longer vouches for it
    os.utime(downloaded / "README.md", ns=(1, 1))
    touched = cli("download", "tiny")
    assert touched.stdout.splitlines()[-1] == (
        "Nothing to fetch; 7 files kept: 1 verified by hashing them now, 6 by their record."
    )


def test_download_that_fetches_keeps_its_summary(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    registry(TINY)
    result = cli("download", "tiny")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("Fetched 3.2 MB in ")
    assert result.stdout.rstrip().endswith("; every file verified by hash.")


def test_verify_counts_files_from_cache_the_same_way_twice(
    cli: Run, hub: HubServer, registry: Callable[..., Path]
) -> None:
    files = hub.repos["org/tiny"].files
    pins = "".join(
        f'      {name}: "sha256:{hashlib.sha256(files[name]).hexdigest()}"\n'
        for name in ("config.json", "model.safetensors", "README.md")
    )
    registry(TINY + "    checksums:\n" + pins)
    cli.json("download", "tiny")
    result = cli("verify")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "tiny: ok, 7 files checked (7 files from cache)"
    assert lines[1].endswith(", 7 files from cache)")
    assert "hashes from cache" not in result.stdout


def test_list_counts_partial_downloads_on_disk(cli: Run, downloaded: Path) -> None:
    before = cli.json("list")
    put_partial(downloaded, "extra/later.bin", b"x" * 5_000_000)
    data = cli.json("list")
    assert data["summary"]["bytes"] == before["summary"]["bytes"]  # `bytes` keeps its meaning
    assert data["summary"]["partial_bytes"] == 5_000_000
    assert before["summary"]["partial_bytes"] == 0
    assert data["models"][0]["partial_bytes"] == 5_000_000
    human = cli("list")
    assert human.exit_code == 0, human.stderr
    assert "8.2 MB" in human.stdout.splitlines()[1]  # the model's row: its files and its partials
    assert human.stdout.splitlines()[-1].endswith("; 8.2 MB on disk (5.0 MB of it partial downloads)")


# --------------------------------------------------------------------------- 4: --version


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_answer_on_stdout(cli: Run, project: Path, flag: str) -> None:
    result = cli(flag)
    assert result.exit_code == 0
    assert result.stdout == f"modelctl {__version__}\n"
    assert result.stderr == ""
    real = run(project, flag)
    assert (real.returncode, real.stdout, real.stderr) == (0, f"modelctl {__version__}\n", "")


# --------------------------------------------------------------------------- 5: --help


def test_help_at_80_columns_keeps_descriptions_readable(cli: Run) -> None:
    result = cli("download", "--help", env={"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0
    assert "<int range>" not in result.stdout and "1<=x<=64" not in result.stdout
    row = next(line for line in result.stdout.splitlines() if "--max-workers" in line)
    assert "Files fetched at once, 1 to 64." in row
    assert "Fetch only files matching this glob" in result.stdout
    assert "Also fetch" not in result.stdout
    words = " ".join(result.stdout.replace("│", " ").split())
    assert "stay part of the model: `list` says partial until `ensure` fetches them." in words


def test_max_workers_range_is_still_enforced(cli: Run, registry: Callable[..., Path]) -> None:
    registry(TINY)
    result = cli("download", "tiny", "--max-workers", "65")
    assert result.exit_code == 2
    assert "65 is not in the range 1 to 64" in result.stderr


def test_every_command_help_ends_with_examples(cli: Run) -> None:
    from modelctl.cli import COMMANDS

    for name, _, examples in COMMANDS:
        result = cli(name, "--help", env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"})
        assert result.exit_code == 0
        assert "Examples:" in result.stdout, name
        assert 1 <= len(examples) <= 2
        for example in examples:
            assert example in result.stdout, (name, example)


# --------------------------------------------------------------------------- 9: --json failures


def test_json_failure_answers_with_an_error_object(cli: Run, registry: Callable[..., Path]) -> None:
    registry(TINY)
    result = cli("download", "nope", "--json")
    assert result.exit_code == 4
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "MissingModelError"
    assert error["exit_code"] == 4
    assert "nope" in error["message"] and error["hint"]
    assert result.stderr.startswith("Error: ") and "Hint: " in result.stderr
    without = cli("download", "nope")
    assert without.exit_code == 4 and without.stdout == ""


def test_json_usage_error_answers_with_an_error_object(
    cli: Run, registry: Callable[..., Path], project: Path
) -> None:
    registry(TINY)
    result = run(project, "download", "tiny", "--max-workers", "0", "--json")
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "UsageError" and error["exit_code"] == 2
    assert "not in the range 1 to 64" in error["message"]
    assert "Usage:" in result.stderr


# --------------------------------------------------------------------------- 10: doctor, clean, FastVLM


def test_doctor_text_shows_the_versions(cli: Run, registry: Callable[..., Path]) -> None:
    registry(TINY)
    text = cli("doctor").stdout.splitlines()
    versions = cli.json("doctor", code=1)["versions"]  # exit 1: the required model is not downloaded
    assert text[0].split() == [
        "versions",
        "modelctl",
        f"{versions['modelctl']},",
        "huggingface_hub",
        f"{versions['huggingface_hub']},",
        "typer",
        f"{versions['typer']},",
        "rich",
        versions["rich"],
    ]


def test_clean_json_names_the_registry(cli: Run, registry: Callable[..., Path], project: Path) -> None:
    path = registry(TINY)
    data = cli.json("clean", "--incomplete", "--dry-run")
    assert data["registry"] == {"path": str(path), "reason": "found"}
    assert data["items"] == []


FASTVLM = """\
models:
  - id: fastvlm-0.5b
    repo_id: org/tiny
    family: fastvlm
    size: 0.5b
"""


def test_setup_fastvlm_script_wraps_setup_models(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    registry(FASTVLM)

    def script(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(ROOT / "examples" / "setup_fastvlm.sh"), *args],
            cwd=project,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            check=False,
        )

    first = script()
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "home" / "org--tiny"
    assert first.stdout == f"model ready: {folder}\n"
    assert (folder / "config.json").read_bytes() == hub.repos["org/tiny"].files["config.json"]
    again = script("0.5b")
    assert again.returncode == 0 and again.stdout == first.stdout
    wrong = script("3b")
    assert wrong.returncode == 4 and "0.5b, 1.5b and 7b" in wrong.stderr


# --------------------------------------------------------------------------- next steps as data


def test_a_next_step_is_data_that_each_front_end_words() -> None:
    """The core names what to change (option/command); the CLI words it as flags, the API as
    arguments, and a hint never holds a flag spelled by the core (tests/test_layers.py)."""
    import modelctl.cli  # noqa: F401  (the CLI says how it speaks when imported)
    from modelctl.core.errors import ConfigurationError, NotEnoughSpaceError, command, option, plain_words
    from modelctl.output import cli_words

    steps = (option("to", "PATH"), command("clean", "", "incomplete", "dry-run"))
    err = NotEnoughSpaceError("full", hint="Free {0}, then run {1}.", steps=steps)
    assert err.worded(cli_words) == "Free --to PATH, then run `modelctl clean --incomplete --dry-run`."
    assert err.worded(plain_words) == "Free the `to` option (PATH), then run the `clean` command."
    assert err.hint == err.worded(cli_words)
    stale = ConfigurationError(
        "stale", hint="Run {0}.", api_hint="The CLI writes it: run {0}.", steps=(command("lock", "m {0}"),)
    )
    assert stale.hint == "Run `modelctl lock m {0}`."  # a value is never read as a field
    from modelctl.core.settings import download_options

    assert cli_words(download_options(size="0.5b").rerun()) == "`modelctl download --size 0.5b`"
    assert cli_words(download_options().rerun(online=True)) == "`HF_HUB_OFFLINE=0 modelctl download --all`"
    assert cli_words(download_options().rerun(["a", "b"]).adding("token hf_...")) == (
        "`modelctl download a b --token hf_...`"
    )
    odd = ConfigurationError("x", hint="Fix /tmp/{7}/m, then run {0}.", steps=(command("list"),))
    assert odd.hint == "Fix /tmp/{7}/m, then run `modelctl list`."  # a field with no step stays text
    assert stale.in_api_terms(cli_words).hint == "The CLI writes it: run `modelctl lock m {0}`."


def test_a_hint_from_the_core_comes_out_in_flags(cli: Run, project: Path) -> None:
    result = cli("add", "org/model")  # no models.yaml here: ops/add.py's hint, as steps
    assert result.exit_code == 1, result.stderr
    assert (
        "Run `modelctl init` to write a models.yaml in this folder, or pass --config PATH." in result.stderr
    )


def test_the_api_words_text_in_its_voice_unless_the_cli_spoke() -> None:
    """A process that imports only the API gets options as arguments; the CLI's voice wins when both are loaded."""
    import subprocess
    import sys

    code = (
        "import modelctl.api\n"
        "from modelctl.core.errors import command, option, spoken\n"
        "print(spoken('{0}, {1}', command('ensure', 'x'), option('to', 'PATH')))\n"
        "import modelctl.cli\n"
        "print(spoken('{0}, {1}', command('ensure', 'x'), option('to', 'PATH')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["`modelctl ensure x`, to=PATH", "`modelctl ensure x`, --to PATH"]
