"""Url models: registry entries whose files are at plain URLs (not on the Hub), pinned by sha256."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Run, partial_of
from tests.hubserver import Fault, HubServer, Repo, model_files

BIG = "weights/big.bin"
CONFIG = "config.json"


@pytest.fixture
def files_server() -> Iterator[HubServer]:
    """A plain file server: the URLs point at its resolve paths; HF_ENDPOINT is NOT set to it."""
    with HubServer() as server:
        server.add(Repo("files/data", model_files()))
        yield server


def url_of(server: HubServer, name: str) -> str:
    return f"{server.url}/files/data/resolve/main/{name}"


def sha(server: HubServer, name: str) -> str:
    return hashlib.sha256(server.repos["files/data"].files[name]).hexdigest()


def url_registry(server: HubServer, *, big_sha: str | None = None, sizes: bool = False) -> str:
    big = server.repos["files/data"].files[BIG]
    size_line = f"\n        size: {len(big)}" if sizes else ""
    return f"""\
models:
  - id: rawdata
    description: files that are not on the Hub
    url:
      - url: {url_of(server, BIG)}
        path: weights/big.bin
        sha256: "{big_sha or sha(server, BIG)}"{size_line}
      - url: {url_of(server, CONFIG)}
        sha256: "sha256:{sha(server, CONFIG)}"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "home" / "urls--rawdata"


def test_download_verify_list(
    cli: Run, files_server: HubServer, registry: Callable[..., Path], folder: Path
) -> None:
    registry(url_registry(files_server))
    out = cli.json("download", "rawdata")
    model = out["models"][0]
    assert model["path"] == str(folder)
    data = files_server.repos["files/data"].files
    assert (folder / BIG).read_bytes() == data[BIG]
    assert (folder / CONFIG).read_bytes() == data[CONFIG]  # path: the URL's last segment
    assert not list(folder.glob("*.partial"))
    record = json.loads((folder / ".modelctl" / "manifest.json").read_text())
    assert record["repo_id"] == "url:rawdata" and record["revision"] == "url"
    assert {f["path"]: f["state"] for f in record["files"]} == {BIG: "verified", CONFIG: "verified"}
    assert not any(r.path.startswith("/api/") for r in files_server.requests)  # no Hub asked

    result = cli("verify", "rawdata")
    assert result.exit_code == 0, result.stderr
    [listed] = cli.json("list")["models"]
    assert (listed["status"], listed["repo_id"], listed["path"]) == ("present", "url:rawdata", str(folder))
    assert cli("path", "rawdata").stdout.strip() == str(folder)

    files_server.reset_counters()
    again = cli("download", "rawdata")
    assert again.exit_code == 0, again.stderr
    assert files_server.file_gets() == []  # kept by the record


def test_wrong_sha256_exits_3_and_publishes_nothing(
    cli: Run, files_server: HubServer, registry: Callable[..., Path], folder: Path
) -> None:
    registry(url_registry(files_server, big_sha="0" * 64, sizes=True))
    result = cli("download", "rawdata")
    assert result.exit_code == 3, result.stderr
    assert f"{BIG}: the downloaded bytes do not match" in result.stderr
    assert not (folder / BIG).exists()
    assert not partial_of(folder, BIG).exists()
    assert cli("verify", "rawdata").exit_code == 3


def test_interrupted_download_resumes_with_range(
    cli: Run, files_server: HubServer, registry: Callable[..., Path], folder: Path
) -> None:
    registry(url_registry(files_server))
    files_server.faults[BIG] = Fault(cut_after=1_000_000, times=1)
    first = cli("download", "rawdata", "--retries", "1")
    assert first.exit_code == 1
    assert not (folder / BIG).exists()
    assert partial_of(folder, BIG).stat().st_size == 1_000_000
    assert cli("verify", "rawdata").exit_code == 3  # planned, not complete

    files_server.reset_counters()
    second = cli("download", "rawdata")
    assert second.exit_code == 0, second.stderr
    assert [g.range for g in files_server.file_gets(BIG)] == [f"bytes=1000000-{3 * 1024 * 1024 - 1}"]
    assert (folder / BIG).read_bytes() == files_server.repos["files/data"].files[BIG]
    assert cli("verify", "rawdata").exit_code == 0


def test_missing_sha256_names_file_and_line(cli: Run, registry: Callable[..., Path]) -> None:
    path = registry(
        """\
models:
  - id: rawdata
    url:
      - url: https://example.org/a.bin
        sha256: "{}"
      - url: https://example.org/b.bin
        size: 10
""".replace("{}", "a" * 64)
    )
    result = cli("list")
    assert result.exit_code == 1
    assert f"{path}:6: models[0].url[1]: missing required key 'sha256'" in result.stderr


def test_url_with_repo_id_and_unsafe_path_are_refused(cli: Run, registry: Callable[..., Path]) -> None:
    path = registry(
        f"""\
models:
  - id: rawdata
    repo_id: org/x
    url: {{url: "https://example.org/a.bin", path: ../a.bin, sha256: "{"b" * 64}"}}
"""
    )
    result = cli("list")
    assert result.exit_code == 1
    assert f"{path}:3: models[0].repo_id: not allowed with 'url:'" in result.stderr
    assert f"{path}:4: models[0].url.path:" in result.stderr


def test_token_is_never_sent_to_urls(
    cli: Run,
    files_server: HubServer,
    registry: Callable[..., Path],
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Even with the token set and HF_ENDPOINT pointing at the very host of the URLs.
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HF_ENDPOINT", files_server.url)
    registry(url_registry(files_server))
    result = cli("download", "rawdata")
    assert result.exit_code == 0, result.stderr
    assert files_server.requests
    assert all(r.authorization is None for r in files_server.requests)
    assert any(r.method == "HEAD" for r in files_server.requests)  # sizes not given: asked


def test_lock_skips_url_models(cli: Run, files_server: HubServer, registry: Callable[..., Path]) -> None:
    registry(url_registry(files_server, sizes=True))
    result = cli("lock")
    assert result.exit_code == 0, result.stderr
    assert files_server.requests == []


def test_ensure_repairs_and_offline_keeps(
    cli: Run, files_server: HubServer, registry: Callable[..., Path], folder: Path
) -> None:
    registry(url_registry(files_server, sizes=True))
    assert cli("download", "rawdata").exit_code == 0
    (folder / CONFIG).unlink()
    assert cli("verify", "rawdata").exit_code == 3
    files_server.reset_counters()
    result = cli("ensure", "rawdata")
    assert result.exit_code == 0, result.stderr
    assert [g.path.rsplit("/", 1)[-1] for g in files_server.file_gets()] == [CONFIG]
    offline = cli("download", "rawdata", "--offline")
    assert offline.exit_code == 0, offline.stderr
    assert cli("verify", "rawdata").exit_code == 0
