"""models.yaml: every key validated with file:line messages, and which file is chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelctl.core.errors import ConfigurationError, ExitCode, MissingModelError
from modelctl.core.hashing import ALGORITHMS
from modelctl.core.registry import (
    ROOT_KINDS,
    Checksum,
    bundled_registry,
    find_registry,
    load_registry,
    parse_checksum,
)
from tests.conftest import TWO_MODELS, write

ROOT = Path(__file__).resolve().parents[1]
ROOT_NAMES = ", ".join(kind.name for kind in ROOT_KINDS)  # user, shared, project, legacy
PIN_FORMS = ", ".join(
    f"{a}:<{n} hex digits>" for a, n in sorted(ALGORITHMS.items())
)  # md5:<32 hex digits>, ...


def error_of(project: Path, text: str) -> str:
    write(project / "models.yaml", text)
    with pytest.raises(ConfigurationError) as info:
        load_registry()
    assert info.value.exit_code == ExitCode.FAILURE
    return info.value.message


def test_valid_registry_gives_specs_with_defaults(project: Path) -> None:
    write(project / "models.yaml", TWO_MODELS)
    reg = load_registry()
    tiny, big = reg.models
    assert (tiny.id, tiny.repo_id, tiny.revision, tiny.size, tiny.required) == (
        "tiny",
        "org/tiny",
        "main",
        "0.5b",
        True,
    )
    assert tiny.files == ("config.json", "*.safetensors")
    assert tiny.folder_name == "tiny"
    assert (big.revision, big.required, big.folder_name) == ("v2", False, "Big-Model")
    assert reg.verify == "sha256"
    assert reg.storage.paths["project"] == project / "models"
    assert reg.storage.paths["legacy"] == project / "checkpoints"
    assert reg.storage.paths["user"] is None
    assert reg.sizes == ("0.5b", "7b")


def test_unknown_key_names_line_path_and_suggestion(project: Path) -> None:
    text = """\
    models:
      - id: a
        repo_id: org/a
      - id: b
        repo_id: org/b
      - id: c
        repo_id: org/c
        sise: 7b
    """
    msg = error_of(project, text)
    assert f"{project / 'models.yaml'}:8: models[2].sise: unknown key (did you mean 'size'?)" in msg


def test_unknown_top_level_and_storage_keys(project: Path) -> None:
    msg = error_of(project, "modles: []\nstorage:\n  projet: x\nmodels: []\n")
    assert "models.yaml:1: modles: unknown key (did you mean 'models'?)" in msg
    assert "models.yaml:3: storage.projet: unknown key (did you mean 'project'?)" in msg


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  - id: a\n    repo_id: org/a\n    required: maybe\n",
            "models[0].required: expected true or false, got a string",
        ),
        ("  - id: a\n    repo_id: [org, a]\n", "models[0].repo_id: expected a string, got a list"),
        (
            "  - id: a\n    repo_id: org/a\n    size: 7\n",
            'models[0].size: expected a size variant such as "0.5b", got the number 7',
        ),
        ("  - id: a\n    repo_id: org/a\n    files: config.json: x\n", "models.yaml:4: YAML syntax error"),
        (
            "  - id: a\n    repo_id: org/a\n    files: {a: 1}\n",
            "models[0].files: expected a list of file names or globs, got a mapping",
        ),
        ("  - id: a\n    repo_id: org/a/b\n", "models[0].repo_id: 'org/a/b' is not a Hub repo id"),
        ("  - id: a\n", "models.yaml:2: models[0]: missing required key 'repo_id'"),
        ("  - repo_id: org/a\n", "models[0]: missing required key 'id'"),
        ("  - id: ../x\n    repo_id: org/a\n", "models[0].id: '../x' is not a valid id"),
        ("  - id: a/b\n    repo_id: org/a\n", "models[0].id: 'a/b' is not a valid id"),
        ("  - id: Upper\n    repo_id: org/a\n", "models[0].id: 'Upper' is not a valid id"),
        (
            "  - id: a\n    repo_id: org/a\n    local_dir: ../escape\n",
            "models[0].local_dir: '../escape' is not a folder name",
        ),
        (
            "  - id: a\n    repo_id: org/a\n    local_dir: x/y\n",
            "models[0].local_dir: 'x/y' is not a folder name",
        ),
        (
            "  - id: a\n    repo_id: org/a\n    files: ['../secret']\n",
            "models[0].files[0]: pattern '../secret' must be a relative path",
        ),
        (
            "  - id: a\n    repo_id: org/a\n    files: ['/etc/passwd']\n",
            "models[0].files[0]: pattern '/etc/passwd' must be a relative path",
        ),
        (
            "  - id: a\n    repo_id: org/a\n    size: all\n",
            "models[0].size: 'all' is not a valid size variant",
        ),
        (
            "  - id: a\n    repo_id: org/a\n  - id: a\n    repo_id: org/b\n",
            "models.yaml:4: models[1].id: duplicate id 'a' (first defined at line 2)",
        ),
        ("  - id: a\n    repo_id: org/a\n    id: b\n", "models.yaml:4: models[0].id: key appears twice"),
        (
            "  - id: a\n    repo_id: org/a\n    local_dir: shared\n  - id: b\n    repo_id: org/b\n    local_dir: Shared\n",
            "models.yaml:7: models[1].local_dir: 'b' would share the folder 'Shared' with 'a' (line 2)",
        ),
        (
            "  - id: a\n    repo_id: org/a\n  - id: b\n    repo_id: org/b\n    local_dir: a\n",
            "models[1].local_dir: 'b' would share the folder 'a' with 'a' (line 2)",
        ),
        ("  - just-a-string\n", "models[0]: expected a mapping with at least id and repo_id, got a string"),
        (
            "  - id: a\n    repo_id: org/a\n    checksums: {m.bin: 'sha256:xyz'}\n",
            "models.yaml:4: models[0].checksums.m.bin: malformed checksum 'sha256:xyz': expected "
            + PIN_FORMS,
        ),
        (
            "  - id: a\n    repo_id: org/a\n    checksums: {m.bin: 'crc32:deadbeef'}\n",
            "models[0].checksums.m.bin: malformed checksum 'crc32:deadbeef'",
        ),
        (
            "  - id: a\n    repo_id: org/a\n    checksums: {../m.bin: 'md5:" + "0" * 32 + "'}\n",
            "models[0].checksums.../m.bin: file '../m.bin' must be a relative path",
        ),
    ],
)
def test_model_errors(project: Path, body: str, expected: str) -> None:
    assert expected in error_of(project, "models:\n" + body)


def test_every_problem_is_reported_at_once(project: Path) -> None:
    msg = error_of(project, "verify: md5\nmodels:\n  - id: A\n    repo_id: org/a\n    colour: red\n")
    lines = msg.splitlines()
    assert len(lines) == 3
    assert "models.yaml:1: verify: must be one of none, size, sha256, got 'md5'" in lines[0]
    assert any("models[0].id: 'A' is not a valid id" in line for line in lines)
    assert any("models[0].colour: unknown key (allowed: id, repo_id" in line for line in lines)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the registry is empty"),
        ("- a\n- b\n", "expected a mapping with keys storage, verify, models, got a list"),
        ("verify: size\n", "models: missing: the registry needs a 'models:' list"),
        ("models: {a: 1}\n", "models: expected a list of models, got a mapping"),
        ("cache_dir: m\nstorage: {project: p}\nmodels: []\n", "cache_dir: conflicts with storage.project"),
        (
            "storage: models\nmodels: []\n",
            f"storage: expected a mapping with keys {ROOT_NAMES}, got a string",
        ),
    ],
)
def test_document_errors(project: Path, text: str, expected: str) -> None:
    assert expected in error_of(project, text)


def test_storage_paths_relative_to_registry_folder_and_cache_dir_alias(project: Path) -> None:
    write(
        project / "conf" / "models.yaml",
        "cache_dir: store\nstorage:\n  legacy: /abs/old\n  user: u\nmodels: []\n",
    )
    reg = load_registry(project / "conf" / "models.yaml")
    assert reg.storage.paths["project"] == project / "conf" / "store"
    assert reg.storage.paths["legacy"] == Path("/abs/old")
    assert reg.storage.paths["user"] == project / "conf" / "u"


def test_checksum_parsing() -> None:
    assert parse_checksum("SHA256:" + "A" * 64) == Checksum("sha256", "a" * 64)
    assert parse_checksum("md5:" + "0" * 32) == Checksum("md5", "0" * 32)
    assert parse_checksum("sha1:" + "0" * 39) is None
    assert parse_checksum("0" * 64) is None


# --------------------------------------------------------------------------- which file


def test_selection_order(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = write(project / "flag.yaml", "models: []\n")
    env = write(project / "env.yaml", "models: []\n")
    found = write(project / "models.yaml", "models: []\n")
    write(project / "models.minimal.yaml", "models: []\n")
    sub = project / "deep" / "er"
    sub.mkdir(parents=True)

    monkeypatch.setenv("MODELCTL_CONFIG", str(env))
    assert find_registry(flag, cwd=sub) == (flag, "--config")
    assert find_registry(None, cwd=sub) == (env, "MODELCTL_CONFIG")
    monkeypatch.delenv("MODELCTL_CONFIG")
    assert find_registry(None, cwd=sub) == (found, "found")
    monkeypatch.setenv("CI_MINIMAL_MODELS", "true")  # the minimal file beside whichever was chosen
    assert find_registry(None, cwd=sub) == (project / "models.minimal.yaml", "CI_MINIMAL_MODELS")
    monkeypatch.setenv("CI_MINIMAL_MODELS", "0")
    assert find_registry(None, cwd=sub) == (found, "found")


def test_ci_minimal_models_looks_beside_the_registry_named(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = project / "config" / "model_manager"  # seed 003's layout: no models.yaml at the top
    config.mkdir(parents=True)
    full = write(config / "models.yaml", "models: []\n")
    minimal = write(config / "models.minimal.yaml", "models: []\n")
    monkeypatch.setenv("CI_MINIMAL_MODELS", "1")
    assert find_registry(full) == (minimal, "CI_MINIMAL_MODELS")
    assert find_registry(minimal) == (minimal, "--config")  # already the minimal set
    monkeypatch.setenv("MODELCTL_CONFIG", str(full))
    assert find_registry() == (minimal, "CI_MINIMAL_MODELS")
    minimal.unlink()
    with pytest.raises(ConfigurationError, match=r"model_manager/models\.minimal\.yaml does not exist"):
        find_registry()


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_ci_minimal_values(project: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    write(project / "models.yaml", "models: []\n")
    write(project / "models.minimal.yaml", "models: []\n")
    monkeypatch.setenv("CI_MINIMAL_MODELS", value)
    assert find_registry().reason == "CI_MINIMAL_MODELS"


def test_bundled_when_nothing_found(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not any((p / "models.yaml").exists() for p in (project, *project.parents))
    source = find_registry()
    assert source == (bundled_registry(), "bundled")
    reg = load_registry()
    assert reg.storage.paths["project"] == project / "models"  # bundled: relative to the cwd
    monkeypatch.setenv("CI_MINIMAL_MODELS", "1")  # a CI job asking for its set never gets the package's
    with pytest.raises(ConfigurationError, match=r"no models\.yaml was found in .* or any parent"):
        load_registry()
    minimal = load_registry(bundled_registry().with_name("models.minimal.yaml"))  # named: used
    assert [m.id for m in minimal.models] == ["smollm2-135m"]
    assert minimal.storage.paths["project"] == project / "models"


def test_missing_files_are_configuration_errors(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"nope\.yaml \(from --config\) does not exist"):
        find_registry(Path("nope.yaml"))
    monkeypatch.setenv("MODELCTL_CONFIG", str(project / "gone.yaml"))
    with pytest.raises(ConfigurationError, match=r"gone\.yaml \(from MODELCTL_CONFIG\) does not exist"):
        find_registry()
    monkeypatch.delenv("MODELCTL_CONFIG")
    write(project / "models.yaml", "models: []\n")
    monkeypatch.setenv("CI_MINIMAL_MODELS", "1")
    with pytest.raises(
        ConfigurationError, match=r"CI_MINIMAL_MODELS is set but .*models\.minimal\.yaml does not exist"
    ):
        find_registry()


def test_shipped_registries_are_valid_and_bundled_copies_match() -> None:
    for name in ("models.yaml", "models.minimal.yaml"):
        shipped = ROOT / name
        assert shipped.read_bytes() == (bundled_registry().parent / name).read_bytes(), name
        reg = load_registry(shipped)
        assert reg.models
    full = load_registry(ROOT / "models.yaml")
    repos = {m.repo_id for m in full.models}
    assert {"apple/FastVLM-0.5B", "apple/FastVLM-1.5B", "apple/FastVLM-7B"} <= repos
    assert {
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "Qwen/Qwen2-VL-2B-Instruct-AWQ",
    } <= repos
    minimal = load_registry(ROOT / "models.minimal.yaml")
    assert {m.id for m in minimal.models} <= {m.id for m in full.models}


def test_select_by_id_and_size(project: Path) -> None:
    write(project / "models.yaml", TWO_MODELS)
    reg = load_registry()
    assert [m.id for m in reg.select()] == ["tiny", "big"]
    assert [m.id for m in reg.select(size="7B")] == ["big"]
    assert [m.id for m in reg.select(size="all")] == ["tiny", "big"]
    assert [m.id for m in reg.select(["big"], size="0.5b")] == ["tiny", "big"]
    with pytest.raises(MissingModelError, match="Did you mean 'tiny'"):
        reg.select(["tiyn"])
    with pytest.raises(MissingModelError) as info:
        reg.select(size="3b")
    assert info.value.exit_code == ExitCode.NOT_FOUND
    assert info.value.hint == "Size variants in this registry: 0.5b, 7b, or 'all'."
