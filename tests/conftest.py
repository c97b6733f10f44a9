"""Every test runs in its own project folder with every storage root and setting inside tmp_path."""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelctl.cli import app
from tests.hubserver import HubServer, Repo, model_files

TWO_MODELS = """\
models:
  - id: tiny
    repo_id: org/tiny
    family: demo
    size: 0.5b
    files: ["config.json", "*.safetensors"]
  - id: big
    repo_id: org/big
    revision: v2
    size: 7b
    required: false
    local_dir: Big-Model
"""


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder as cwd; user root in tmp_path; no token, no registry override."""
    for var in (
        "MODELCTL_CONFIG",
        "CI_MINIMAL_MODELS",
        "MODELCTL_DEBUG",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "HF_HOME",
        "HUGGINGFACE_HUB_CACHE",
        "MODELCTL_CONNECTIONS",
        "MODELCTL_SPLIT_SIZE",
        "HF_HUB_ENABLE_HF_TRANSFER",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELCTL_STATE_DIR", str(tmp_path / "state"))  # this machine's own checks
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # never the machine's own cache
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("COLUMNS", "200")
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def put_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def partial_of(folder: Path, rel: str) -> Path:
    """Where modelctl keeps the bytes of `rel` while it downloads (under .modelctl/partials/)."""
    from modelctl.store.storage import partial_path

    return partial_path(folder, rel)


def sidecar_of(folder: Path, rel: str) -> Path:
    from modelctl.store.storage import sidecar_path

    return sidecar_path(folder, rel)


def put_partial(folder: Path, rel: str, data: bytes) -> Path:
    """A partial download of `rel` as an interrupted run leaves it: bytes and a sidecar naming it."""
    partial = partial_of(folder, rel)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(data)
    sidecar_of(folder, rel).write_text(json.dumps({"version": 1, "path": rel}))
    return partial


def put_model(
    folder: Path,
    files: dict[str, bytes],
    *,
    repo_id: str = "org/tiny",
    revision: str = "main",
    commit: str = "c" * 40,
    listing: dict[str, bytes] | None = None,
) -> Path:
    """A model folder as a complete download leaves it: the files and a record naming them verified.

    `listing` is the commit's every file (default: `files`); listed files not in `files` are absent.
    """
    from modelctl.core.record import Record, RepoFile, checked_now, write_record
    from tests.hubserver import LFS_SUFFIXES, git_blob_sha1

    put_files(folder, files)
    entries = []
    for name, data in (listing if listing is not None else files).items():
        sha256 = hashlib.sha256(data).hexdigest()
        entry = RepoFile(
            name, len(data), sha256 if name.endswith(LFS_SUFFIXES) else None, git_blob_sha1(data)
        )
        if name in files:
            digests = {"sha256": sha256, "git-sha1": git_blob_sha1(data)}
            entry = entry._replace(checked=checked_now((folder / name).stat(), digests))
        entries.append(entry)
    write_record(folder, Record(repo_id, revision, commit, tuple(entries), "2026-01-01T00:00:00Z"))
    return folder


class Run:
    """Invoke the CLI in-process; stdout and stderr are kept apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return self.runner.invoke(app, list(args), env=env, catch_exceptions=False)

    def json(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> Any:
        result = self(*args, "--json", env=env)
        assert result.exit_code == code, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli() -> Run:
    return Run()


@pytest.fixture
def registry(project: Path) -> Callable[[str], Path]:
    def make(text: str = TWO_MODELS, name: str = "models.yaml") -> Path:
        return write(project / name, text)

    return make


@pytest.fixture
def tiny(registry: Callable[..., Path], tmp_path: Path) -> Path:
    """The registry with org/tiny; returns the folder the model will land in (user root)."""
    registry(TINY)
    return tmp_path / "home" / "org--tiny"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A fixture Hub on 127.0.0.1 with org/tiny (small model files + a 3 MB binary); HF_ENDPOINT → it."""
    with HubServer() as server:
        server.add(Repo("org/tiny", model_files()))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


TINY = """\
models:
  - id: tiny
    repo_id: org/tiny
    size: 0.5b
"""


@pytest.fixture
def downloaded(cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path) -> Path:
    """org/tiny downloaded into the user root (request counters reset); its folder."""
    registry(TINY)
    cli.json("download", "tiny")
    hub.reset_counters()
    return tmp_path / "home" / "org--tiny"
