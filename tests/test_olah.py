"""Interop with a real third-party Hub: olah (PyPI) in offline mirror mode, serving a local git repo.

olah reads LFS pointer files itself and serves the objects from .git/lfs/objects; it answers
Range requests with 200 and streams chunked. The olah executable comes from MODELCTL_OLAH
(.ci/run installs olah in a venv of its own), else PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hubserver import gguf_bytes, lfs_pointer, safetensors_bytes

REPO = "olahorg/tiny"


def olah_cli() -> str | None:
    return os.environ.get("MODELCTL_OLAH") or shutil.which("olah-cli")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FILES: dict[str, bytes] = {
    "config.json": json.dumps({"model_type": "olah-test", "hidden_size": 16}).encode(),
    "tokenizer.json": json.dumps({"vocab": {f"tok{i}": i for i in range(300)}}).encode(),
    "README.md": b"# served by olah\n",
    "model.safetensors": safetensors_bytes({"w": ("F32", [128, 64]), "b": ("F16", [64])}, seed=7),
    "model-q4.gguf": gguf_bytes({"t": [64, 32]}, seed=7),
    "weights/big.bin": os.urandom(3 * 1024 * 1024),
}
LFS = {"model.safetensors", "model-q4.gguf", "weights/big.bin"}


def git_repo(path: Path) -> None:
    """A git repo whose LFS files are pointers, their objects under .git/lfs/objects (as git-lfs does)."""
    import hashlib

    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, data in FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name in LFS:
            target.write_bytes(lfs_pointer(data))
            oid = hashlib.sha256(data).hexdigest()
            obj = path / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
        else:
            target.write_bytes(data)
    (path / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    FILES[".gitattributes"] = (path / ".gitattributes").read_bytes()
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-qm",
            "init",
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def olah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cli = olah_cli()
    if cli is None:
        pytest.skip("olah is not installed (set MODELCTL_OLAH; .ci/run installs it)")
    base = tmp_path_factory.mktemp("olah")
    git_repo(base / "mirrors" / "models" / REPO)
    port = free_port()
    config = base / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{base / "repos"}"\n'
        f'mirrors-path = ["{base / "mirrors"}"]\n\n[accessibility]\noffline = true\n'
    )
    log = (base / "olah.log").open("wb")
    proc = subprocess.Popen([cli, "-c", str(config)], cwd=base, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"olah exited: {(base / 'olah.log').read_text()[-2000:]}")
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def through_olah(olah: str, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_ENDPOINT", olah)
    registry(f"models:\n  - id: tiny\n    repo_id: {REPO}\n")
    return olah


def modelctl(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelctl", *args], cwd=project, capture_output=True, text=True, check=False
    )


def test_download_through_olah_is_byte_identical_then_idempotent(
    through_olah: str, project: Path, tmp_path: Path
) -> None:
    first = modelctl(project, "download", "tiny", "--json")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "home" / "tiny"
    for name, data in FILES.items():
        assert (folder / name).read_bytes() == data, name
    data = json.loads(first.stdout)
    assert {f["path"] for f in data["models"][0]["files"]} == set(FILES)
    second = modelctl(project, "download", "tiny", "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["bytes_fetched"] == 0
    assert {f["action"] for f in again["models"][0]["files"]} == {"keep"}
    verify = modelctl(project, "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["health"] == "healthy"


def test_partial_left_from_an_earlier_run_survives_olah_ignoring_range(
    through_olah: str, project: Path, tmp_path: Path
) -> None:
    first = modelctl(project, "download", "tiny")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "home" / "tiny"
    big = folder / "weights" / "big.bin"
    manifest = json.loads((folder / ".modelctl" / "manifest.json").read_text())
    record = next(f for f in manifest["files"] if f["path"] == "weights/big.bin")
    data = big.read_bytes()
    big.unlink()
    (folder / "weights" / "big.bin.partial").write_bytes(data[: len(data) // 2])
    (folder / "weights" / "big.bin.partial.json").write_text(
        json.dumps(
            {
                "version": 1,
                "url": "",
                "path": "weights/big.bin",
                "commit": manifest["commit"],
                "size": record["size"],
                "sha256": record["sha256"],
                "blob_id": record["blob_id"],
                "etag": '"whatever-olah-said"',
                "started_at": "2026-01-01T00:00:00Z",
            }
        )
    )
    result = modelctl(project, "download", "tiny", "--json")
    assert result.returncode == 0, result.stderr
    entry = next(f for f in json.loads(result.stdout)["models"][0]["files"] if f["path"] == "weights/big.bin")
    assert entry["action"] == "resume"
    assert big.read_bytes() == FILES["weights/big.bin"]
    assert not (folder / "weights" / "big.bin.partial").exists()


def test_failover_from_a_dead_endpoint_to_olah(
    olah: str, registry: Callable[..., Path], project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    registry(f"endpoints: [http://127.0.0.1:9, {olah}]\nmodels:\n  - id: tiny\n    repo_id: {REPO}\n")
    result = modelctl(project, "download", "tiny", "--json")
    assert result.returncode == 0, result.stderr
    served = {f["endpoint"] for f in json.loads(result.stdout)["models"][0]["files"]}
    assert served == {olah.removeprefix("http://")}
    assert (tmp_path / "home" / "tiny" / "weights" / "big.bin").read_bytes() == FILES["weights/big.bin"]
