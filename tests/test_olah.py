"""`modelctl download` against a real third-party Hub: olah (PyPI `olah`) in offline mirror mode.

olah serves the git repos it finds at `<mirrors-path>/<repo type>/<org>/<name>` (here
`mirrors/models/olahorg/...`, made with git by the fixture below). What olah 0.5.4 does, read in its
mirror/repos.py and confirmed against the running server, and what these tests lean on:
  * a committed file of 121-149 bytes that parses as an LFS pointer is listed with `lfs` and served
    from `<repo>/.git/lfs/objects/<aa>/<bb>/<sha256>` (for a bare repo too: `<bare>/.git/lfs/...`,
    not git-lfs's `<bare>/lfs/objects`, so only non-bare repos are used here);
  * GET /resolve answers 200, chunked, without Content-Length or ETag, and ignores Range;
  * a non-LFS file of 121-149 bytes that is not UTF-8 makes the tree listing fail (HTTP 500);
  * a pointer whose object is missing answers HTTP 500 on GET (not 404).

The olah executable: $MODELCTL_OLAH (.ci/run installs olah in a venv of its own), else olah-cli on
PATH, else /tmp/olahvenv/bin/olah-cli; without one the module is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Run, partial_of, put_partial, sidecar_of
from tests.hubserver import LFS_SUFFIXES, Repo, git_blob_sha1, lfs_pointer, model_files

TINY = "olahorg/tiny"  # model_files(): configs, safetensors, GGUF, a 3 MiB binary; tag v1 = an older commit
HUGE = "olahorg/huge"  # one 24 MiB file: long enough to kill a run in the middle of it
BINARY = "olahorg/binary-tokenizer"  # a 130-byte non-UTF-8 tokenizer.model: olah's listing fails
MISSING = "olahorg/missing-object"  # an LFS pointer without its object: olah's GET fails
BIG = "weights/big.bin"

OLD_FILES: dict[str, bytes] = {  # tag v1
    "config.json": json.dumps({"model_type": "test", "hidden_size": 8}).encode(),
    "README.md": b"# test model, first version\n",
}
FILES: dict[str, dict[str, bytes]] = {
    TINY: model_files(),
    HUGE: {
        "config.json": b'{"model_type": "huge"}',
        "weights/huge.bin": random.Random(2).randbytes(24 * 1024 * 1024),
    },
    BINARY: {
        "config.json": b'{"model_type": "spm"}',
        "tokenizer.model": bytes(range(126, 256)),  # 130 bytes, not UTF-8, not LFS
    },
    MISSING: {
        "config.json": b'{"model_type": "partial-mirror"}',
        "model.safetensors": random.Random(3).randbytes(4096),
    },
}
UNPLACED = {(MISSING, "model.safetensors")}  # pointers committed without their object in .git/lfs


def olah_executable() -> str | None:
    """$MODELCTL_OLAH, else olah-cli on PATH, else the venv /tmp/olahvenv; None if there is none."""
    configured = os.environ.get("MODELCTL_OLAH")
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.fail(f"MODELCTL_OLAH={configured} is not an executable file")
        return configured
    fallback = Path("/tmp/olahvenv/bin/olah-cli")
    return shutil.which("olah-cli") or (str(fallback) if os.access(fallback, os.X_OK) else None)


def git(repo: Path, *args: str) -> str:
    identity = ("-c", "user.name=modelctl tests", "-c", "user.email=tests@modelctl.invalid")
    done = subprocess.run(
        ["git", "-C", str(repo), *identity, "-c", "commit.gpgsign=false", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def commit_files(repo: Path, files: dict[str, bytes], message: str, *, unplaced: set[str]) -> str:
    """Commit files as git-lfs would: LFS files as pointers, their bytes under .git/lfs/objects."""
    for old in git(repo, "ls-files", "-z").split("\0"):
        if old:
            (repo / old).unlink()
    for name, data in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(LFS_SUFFIXES):
            target.write_bytes(lfs_pointer(data))
            if name not in unplaced:
                oid = hashlib.sha256(data).hexdigest()
                obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
                obj.parent.mkdir(parents=True, exist_ok=True)
                obj.write_bytes(data)
        else:
            target.write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Olah:
    url: str
    log: Path
    commits: dict[str, str]  # repo id → commit of main; TINY + "@v1" → the tag's commit

    @property
    def netloc(self) -> str:
        return self.url.removeprefix("http://")

    def mark(self) -> int:
        """A point in olah's log: `gets(..., since=mark)` counts only the requests after it."""
        return self.log.stat().st_size

    def gets(self, repo_id: str, path: str, since: int = 0) -> list[int]:
        """Statuses of the GET /resolve requests for one file, from olah's access log."""
        with self.log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        line = re.compile(
            rf'"GET /{re.escape(repo_id)}/resolve/[^/ ]+/{re.escape(path)} HTTP/1\.1" (\d{{3}})'
        )
        return [int(m.group(1)) for m in line.finditer(text)]

    def api(self, path: str) -> Any:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
        with opener.open(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(proc: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    """Whether olah (still running) serves TINY's model info before the timeout."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with opener.open(f"{url}/api/models/{TINY}/revision/main", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def olah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Olah]:
    """olah on 127.0.0.1 serving the repos of FILES (offline: it has no upstream to reach)."""
    executable = olah_executable()
    if executable is None:
        pytest.skip("olah is not installed: set MODELCTL_OLAH to an olah-cli (.ci/run installs olah 0.5.4)")
    base = tmp_path_factory.mktemp("olah")
    commits: dict[str, str] = {}
    for repo_id, files in FILES.items():
        repo = base / "mirrors" / "models" / repo_id
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        unplaced = {path for rid, path in UNPLACED if rid == repo_id}
        if repo_id == TINY:
            commits[TINY + "@v1"] = commit_files(repo, OLD_FILES, "first version", unplaced=unplaced)
            git(repo, "tag", "v1")
        commits[repo_id] = commit_files(repo, files, "add the model", unplaced=unplaced)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONUNBUFFERED"] = "1"  # the access log reaches the file as requests are served
    log = base / "olah.log"
    for _ in range(3):  # another process may take the free port before olah binds it
        port = free_port()
        config = base / "olah.toml"
        config.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {port}\n"
            f'repos-path = "{base / "cache"}"\n'
            f'mirrors-path = ["{base / "mirrors"}"]\n'
            'hf-scheme = "http"\n'  # upstream: the discard port, should offline mode ever look there
            'hf-netloc = "127.0.0.1:9"\n'
            'hf-lfs-netloc = "127.0.0.1:9"\n'
            "\n[accessibility]\n"
            "offline = true\n"
        )
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [executable, "-c", str(config)], cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        if _answers(proc, url, timeout=60):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"olah did not start; its log ends:\n{log.read_text(errors='replace')[-3000:]}")
    try:
        yield Olah(url, log, commits)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def through_olah(olah: Olah, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Olah:
    """HF_ENDPOINT → olah; a registry with one model per repo (id: the repo's name)."""
    monkeypatch.setenv("HF_ENDPOINT", olah.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    models = "".join(f"  - id: {repo_id.split('/')[1]}\n    repo_id: {repo_id}\n" for repo_id in FILES)
    registry(f"models:\n{models}  - id: tiny-v1\n    repo_id: {TINY}\n    revision: v1\n")
    return olah


def assert_identical(folder: Path, files: dict[str, bytes]) -> None:
    """Exactly these files with these bytes, and no partial download left beside them."""
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {p for p in on_disk if not p.startswith(".modelctl/")} == set(files)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def test_download_through_olah_is_byte_identical(cli: Run, through_olah: Olah, tmp_path: Path) -> None:
    files = FILES[TINY]
    mark = through_olah.mark()
    data = cli.json("download", "tiny")
    folder = tmp_path / "home" / "olahorg--tiny"
    assert_identical(folder, files)
    (model,) = data["models"]
    assert model["commit"] == through_olah.commits[TINY]
    assert data["bytes_fetched"] == sum(len(d) for d in files.values())
    fetched = {f["path"]: f for f in model["files"]}
    assert {p: f["action"] for p, f in fetched.items()} == {p: "download" for p in files}
    assert {p: f["sha256"] for p, f in fetched.items()} == {
        p: hashlib.sha256(d).hexdigest() for p, d in files.items()
    }
    assert {f["endpoint"] for f in fetched.values()} == {through_olah.netloc}
    assert {p: through_olah.gets(TINY, p, since=mark) for p in files} == {p: [200] for p in files}
    manifest = json.loads((folder / ".modelctl" / "manifest.json").read_text())
    assert manifest["commit"] == through_olah.commits[TINY]
    assert {f["path"] for f in manifest["files"] if f["lfs"]} == {"model.safetensors", "model-q4.gguf", BIG}
    assert cli.json("verify", "tiny")["health"] == "healthy"


def test_olah_lists_files_as_the_fixture_hub_does(through_olah: Olah) -> None:
    """The listing modelctl trusts (blob ids, LFS sha256 and sizes) matches tests/hubserver.py's."""
    commit = through_olah.commits[TINY]
    listing = through_olah.api(f"/api/models/{TINY}/tree/{commit}/?recursive=true")
    files = {e["path"]: e for e in listing if e["type"] == "file"}
    fixture = Repo(TINY, FILES[TINY])
    assert files == {p: fixture.entry(p) for p in FILES[TINY]}
    assert through_olah.api(f"/api/models/{TINY}/revision/main")["sha"] == commit


def test_second_run_fetches_nothing(cli: Run, through_olah: Olah) -> None:
    mark = through_olah.mark()
    cli.json("download", "tiny")
    served = {p: through_olah.gets(TINY, p, since=mark) for p in FILES[TINY]}
    assert served == {p: [200] for p in FILES[TINY]}
    again = cli.json("download", "tiny")
    assert again["bytes_fetched"] == 0
    assert {f["action"] for f in again["models"][0]["files"]} == {"keep"}
    assert {f["path"] for f in again["models"][0]["files"]} == set(FILES[TINY])
    assert {p: through_olah.gets(TINY, p, since=mark) for p in FILES[TINY]} == served  # no new GET


def test_a_tag_resolves_to_its_commit(cli: Run, through_olah: Olah, tmp_path: Path) -> None:
    data = cli.json("download", "tiny-v1")
    assert data["models"][0]["commit"] == through_olah.commits[TINY + "@v1"]
    assert_identical(tmp_path / "home" / "olahorg--tiny@v1", OLD_FILES)


def test_partial_from_an_earlier_run_is_completed_though_olah_ignores_range(
    cli: Run, through_olah: Olah, tmp_path: Path
) -> None:
    """Half of the file and its sidecar as a run against a Hub that sends ETags (huggingface.co) leaves them.

    modelctl asks olah for the rest (Range + If-Range); olah answers 200 with the whole file, so
    modelctl drops the half it had and takes the whole body: the file is complete and identical.
    """
    data = FILES[TINY][BIG]
    half = len(data) // 2
    folder = tmp_path / "home" / "olahorg--tiny"
    put_partial(folder, BIG, data[:half])
    sha256 = hashlib.sha256(data).hexdigest()
    commit = through_olah.commits[TINY]
    sidecar = {
        "version": 1,
        "url": f"https://hub.example.invalid/{TINY}/resolve/{commit}/{BIG}",  # never requested
        "path": BIG,
        "commit": commit,
        "size": len(data),
        "sha256": sha256,
        "blob_id": git_blob_sha1(lfs_pointer(data)),
        "etag": f'"{sha256}"',
        "started_at": "2026-01-01T00:00:00Z",
    }
    sidecar_of(folder, BIG).write_text(json.dumps(sidecar))
    mark = through_olah.mark()
    result = cli.json("download", "tiny")
    big = next(f for f in result["models"][0]["files"] if f["path"] == BIG)
    assert (big["action"], big["resumed_from"]) == ("download", 0)  # the half was dropped
    assert big["bytes_fetched"] == len(data)  # the whole file again: olah's 200 replaced the half
    assert through_olah.gets(TINY, BIG, since=mark) == [200]  # one request (with Range), one answer
    assert_identical(folder, FILES[TINY])


def test_a_run_killed_mid_file_leaves_a_partial_the_next_run_replaces(
    cli: Run, through_olah: Olah, project: Path, tmp_path: Path
) -> None:
    """olah sends no ETag, so the partial it leaves has no validator: the next run starts it over."""
    data = FILES[HUGE]["weights/huge.bin"]
    folder = tmp_path / "home" / "olahorg--huge"
    partial = partial_of(folder, "weights/huge.bin")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelctl", "download", "huge"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size >= 1 << 20:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {err!r}"
    kept = partial.stat().st_size
    assert 0 < kept < len(data)
    assert not (folder / "weights" / "huge.bin").exists()
    sidecar = json.loads(sidecar_of(folder, "weights/huge.bin").read_text())
    assert (sidecar["size"], sidecar["etag"]) == (len(data), None)
    result = cli.json("download", "huge")
    huge = next(f for f in result["models"][0]["files"] if f["path"] == "weights/huge.bin")
    assert (huge["action"], huge["resumed_from"], huge["bytes_fetched"]) == ("download", 0, len(data))
    assert_identical(folder, FILES[HUGE])


def test_olah_failing_the_listing_is_an_error_and_nothing_is_published(
    through_olah: Olah, project: Path, tmp_path: Path
) -> None:
    """olah decodes every 121-149-byte file as UTF-8 to spot LFS pointers: a binary one breaks the listing.

    A process of its own, for stderr as a user sees it. It takes ~23 s even with --retries 1:
    huggingface_hub's list_repo_tree retries a 500 five times itself (1+2+4+8+8 s).
    """
    result = subprocess.run(
        [sys.executable, "-m", "modelctl", "download", "binary-tokenizer", "--retries", "1"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert f"Error: The Hub at {through_olah.url} answered HTTP 500 for {BINARY}@main." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "olahorg--binary-tokenizer").exists()


def test_olah_failing_one_file_is_an_error_and_that_file_is_not_published(
    cli: Run, through_olah: Olah, tmp_path: Path
) -> None:
    """A pointer whose object the mirror lacks: olah answers 500 for it; the other files land."""
    mark = through_olah.mark()
    result = cli("download", "missing-object", "--retries", "2")
    assert result.exit_code == 1, result.stderr
    assert "model.safetensors: HTTP 500; gave up after 2 attempts" in result.stderr
    assert through_olah.gets(MISSING, "model.safetensors", since=mark) == [500, 500]
    folder = tmp_path / "home" / "olahorg--missing-object"
    assert not (folder / "model.safetensors").exists()
    assert (folder / "config.json").read_bytes() == FILES[MISSING]["config.json"]


def test_failover_from_a_dead_endpoint_to_olah(
    cli: Run, olah: Olah, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(f"endpoints: [http://127.0.0.1:9, {olah.url}]\nmodels:\n  - id: tiny\n    repo_id: {TINY}\n")
    result = cli.json("download", "tiny", "--retries", "2")
    assert {f["endpoint"] for f in result["models"][0]["files"]} == {olah.netloc}
    assert_identical(tmp_path / "home" / "olahorg--tiny", FILES[TINY])
