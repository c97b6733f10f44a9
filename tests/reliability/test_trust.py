"""What modelctl may trust: one test per route by which a model folder can claim to be complete.

A model is complete only when every expected file of its record (`.modelctl/manifest.json`,
version 2, listing every file of the commit) is on disk and verified. Each scenario drives the
real `python -m modelctl` executable against the fixture Hub, then asserts what the judges say
(`verify` exit 3, `path` exit 3/4, offline `download` exit 4, `list` status) and, after the
completing step, that every file holds exactly the Hub's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.conftest import TINY, put_files, write
from tests.hubserver import Fault, HubServer, Repo, git_blob_sha1, model_files
from tests.process import BIG, assert_complete, files_of, run, settle, start, wait_for

OFFLINE = {"HF_HUB_OFFLINE": "1"}


# --------------------------------------------------------------------------- helpers


def user_folder(tmp_path: Path, repo_id: str = "org/tiny", revision: str = "main") -> Path:
    """A model's folder in the user root (MODELCTL_HOME): named from its repo and revision."""
    name = repo_id.replace("/", "--")
    if revision != "main":
        name += "@" + quote(revision, safe="")
    return tmp_path / "home" / name


def partial_of(folder: Path, rel: str = BIG) -> Path:
    """Where the bytes of `rel` collect while it downloads (the one place to change if it moves)."""
    from modelctl.store.storage import partial_path

    return partial_path(folder, rel)


def big_in_flight(folder: Path) -> Callable[[], bool]:
    """big.bin is well under way (so the small files, one chunk each, are done and published)."""

    def check() -> bool:
        try:
            return partial_of(folder).stat().st_size > 200_000
        except FileNotFoundError:
            return False

    return check


def record(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / ".modelctl" / "manifest.json").read_text())
    return data


def states(folder: Path) -> dict[str, str]:
    """path → state of every file the record lists."""
    return {f["path"]: f["state"] for f in record(folder)["files"]}


def status(project: Path, model: str = "tiny") -> str:
    """The model's status in `list --json`."""
    result = run(project, "list", "--json")
    assert result.returncode == 0, result.stderr
    models = {m["id"]: m for m in json.loads(result.stdout)["models"]}
    return str(models[model]["status"])


def verify(project: Path, *args: str, model: str = "tiny") -> tuple[int, set[str], list[dict[str, Any]]]:
    """`verify MODEL --json`: exit code, the paths of its bad findings, all its findings."""
    result = run(project, "verify", model, "--json", *args)
    assert result.returncode in (0, 3), result.stderr
    verdict = next(m for m in json.loads(result.stdout)["models"] if m["id"] == model)
    findings = verdict["findings"]
    assert verdict["ok"] == (result.returncode == 0), verdict
    return result.returncode, {f["path"] for f in findings if f["status"] == "bad"}, findings


def fetched(hub: HubServer) -> list[str]:
    """Repo paths whose bytes were requested (GET), sorted."""
    names = []
    for r in hub.file_gets():
        tail = unquote(r.path.split("?")[0]).split("/resolve/", 1)[1]
        names.append(tail.split("/", 1)[1])
    return sorted(names)


def flip_keeping_stat(path: Path) -> None:
    """Flip the last byte in place (same inode and size) and put the old times back."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)


def assert_judged_incomplete(project: Path, missing: set[str]) -> None:
    """verify 3 naming every missing file, path 3, offline download 4 naming one, list "partial"."""
    code, bad, _ = verify(project)
    assert code == 3 and missing <= bad, bad
    path = run(project, "path", "tiny")
    assert path.returncode == 3, path.stderr
    assert path.stdout == ""
    offline = run(project, "download", "tiny", env=OFFLINE)
    assert offline.returncode == 4, offline.stderr
    assert any(name in offline.stderr for name in missing), offline.stderr
    assert status(project) == "partial"


def assert_judged_complete(project: Path, folder: Path) -> None:
    """verify 0, path prints the folder, list "present"."""
    code, bad, _ = verify(project)
    assert code == 0, bad
    path = run(project, "path", "tiny")
    assert path.returncode == 0, path.stderr
    assert path.stdout.strip() == str(folder)
    assert status(project) == "present"


@pytest.fixture
def folder(hub: HubServer, registry: Callable[..., Path], tmp_path: Path) -> Path:
    """TINY as the registry; org/tiny's folder in the user root."""
    registry(TINY)
    return user_folder(tmp_path)


# --------------------------------------------------------------------------- layout and record


def test_user_root_folders_are_named_from_repo_and_revision(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    """Route: storage layout. User root: org--name[@quoted-rev]; project, legacy, --to: local_dir or id."""
    tiny = hub.repos["org/tiny"]
    tiny.revisions["refs/pr/1"] = tiny.commit
    other = Repo("org/other", model_files(big_mb=1, seed=2))
    other.revisions["v2"] = other.commit
    hub.add(other)
    registry(
        """\
        models:
          - id: tiny
            repo_id: org/tiny
            local_dir: Tiny-Local
          - id: pr
            repo_id: org/tiny
            revision: refs/pr/1
          - id: other
            repo_id: org/other
            revision: v2
        """
    )
    result = run(project, "download", "--all")
    assert result.returncode == 0, result.stderr
    home = tmp_path / "home"
    for name in ("tiny", "Tiny-Local", "pr", "other"):
        assert not (home / name).exists(), name
    for repo, revision in (("org/tiny", "main"), ("org/tiny", "refs/pr/1"), ("org/other", "v2")):
        where = user_folder(tmp_path, repo, revision)
        assert_complete(where, hub.repos[repo].files)
        assert (record(where)["repo_id"], record(where)["revision"]) == (repo, revision)

    elsewhere = tmp_path / "elsewhere"
    for model, to in (("tiny", "project"), ("other", "legacy"), ("pr", str(elsewhere))):
        result = run(project, "download", model, "--to", to)
        assert result.returncode == 0, result.stderr
    assert_complete(project / "models" / "Tiny-Local", files_of(hub))
    assert_complete(project / "checkpoints" / "other", other.files)
    assert_complete(elsewhere / "pr", files_of(hub))
    for name in ("tiny", "Tiny-Local", "pr", "other"):
        assert not (home / name).exists(), name


def test_record_lists_every_file_of_the_commit_and_judges_only_the_selected(
    hub: HubServer, registry: Callable[..., Path], project: Path, tmp_path: Path
) -> None:
    """Route: the model record (v2, full listing, states) and the judges on a complete model with `files:`."""
    registry('models:\n  - id: tiny\n    repo_id: org/tiny\n    files: ["config.json", "*.safetensors"]\n')
    folder = user_folder(tmp_path)
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    repo = hub.repos["org/tiny"]
    data = record(folder)
    assert data["version"] == 2
    assert (data["repo_id"], data["revision"], data["commit"]) == ("org/tiny", "main", repo.commit)
    listed = {f["path"]: f for f in data["files"]}
    assert set(listed) == set(repo.files)  # every file of the commit, not only the selected ones
    for path, content in repo.files.items():
        item = listed[path]
        assert item["size"] == len(content), path
        assert item["lfs"] == (path in repo.lfs), path
        if path in repo.lfs:
            assert item["sha256"] == hashlib.sha256(content).hexdigest(), path
        else:
            assert item["blob_id"] == git_blob_sha1(content), path
    assert {p: f["state"] for p, f in listed.items()} == {
        p: "verified" if p in ("config.json", "model.safetensors") else "pending" for p in repo.files
    }
    assert not (folder / BIG).exists()
    assert_judged_complete(project, folder)
    hub.reset_counters()
    offline = run(project, "download", "tiny", env=OFFLINE)
    assert offline.returncode == 0, offline.stderr
    assert hub.requests == []


def test_absent_model_is_missing_everywhere(folder: Path, project: Path) -> None:
    """Route: judges on a model never downloaded: list missing, verify 3, path 4, offline download 4."""
    assert status(project) == "missing"
    code, _, _ = verify(project)
    assert code == 3
    assert run(project, "path", "tiny").returncode == 4
    offline = run(project, "download", "tiny", env=OFFLINE)
    assert offline.returncode == 4 and "tiny" in offline.stderr
    assert not folder.exists()


# --------------------------------------------------------------------------- incomplete downloads


def test_include_once_is_partial_until_ensure(hub: HubServer, folder: Path, project: Path) -> None:
    """Route: `download tiny --include '*.json'` once: partial, verify 3, path 3; `ensure` completes it."""
    result = run(project, "download", "tiny", "--include", "*.json")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.glob("*.json")) == ["config.json", "tokenizer.json"]
    assert set(states(folder)) == set(files_of(hub))
    assert_judged_incomplete(project, {p for p in files_of(hub) if not p.endswith(".json")})
    result = run(project, "ensure", "tiny")
    assert result.returncode == 0, result.stderr
    assert_complete(folder, files_of(hub))
    assert set(states(folder).values()) == {"verified"}
    assert_judged_complete(project, folder)


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ("download", signal.SIGINT),
        ("download", signal.SIGKILL),
        ("ensure", signal.SIGINT),
        ("ensure", signal.SIGKILL),
    ],
    ids=["download-sigint", "download-kill-9", "ensure-sigint", "ensure-kill-9"],
)
def test_interrupted_first_fetch_is_partial_until_ensure(
    hub: HubServer, folder: Path, project: Path, command: str, sig: signal.Signals
) -> None:
    """Route: Ctrl-C / kill -9 while big.bin is in flight, in `download` and in `ensure`."""
    hub.delay = 0.02
    proc = start(project, command, "tiny")
    wait_for(big_in_flight(folder))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    hub.delay = 0.0
    settle(hub)
    assert not (folder / BIG).exists()
    listed = states(folder)  # written before the first byte, whole even after kill -9
    assert set(listed) == set(files_of(hub))
    assert listed[BIG] == "pending"
    assert_judged_incomplete(project, {BIG})
    result = run(project, "ensure", "tiny")
    assert result.returncode == 0, result.stderr
    assert_complete(folder, files_of(hub))
    assert_judged_complete(project, folder)


def test_ctrl_c_during_force_keeps_every_file_recorded(hub: HubServer, folder: Path, project: Path) -> None:
    """Route: Ctrl-C during `download --force` of a complete model: the record never shrinks."""
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    hub.delay = 0.02
    proc = start(project, "download", "tiny", "--force")
    wait_for(big_in_flight(folder))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    hub.delay = 0.0
    assert set(states(folder)) == set(files_of(hub))
    _, _, findings = verify(project)
    assert [f for f in findings if f["check"] == "extra"] == []
    (folder / BIG).write_bytes(b"")  # its good copy was not touched by the interrupted run
    code, bad, _ = verify(project)
    assert code == 3 and BIG in bad


def test_failed_refetch_keeps_every_file_recorded(hub: HubServer, folder: Path, project: Path) -> None:
    """Route: a `download --force` that fails (corrupt body): the record never shrinks."""
    victim = "model.safetensors"
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    hub.faults[victim] = Fault(flip_at=100, times=None)
    result = run(project, "download", "tiny", "--force", "--retries", "1")
    assert result.returncode == 3, result.stderr
    assert set(states(folder)) == set(files_of(hub))
    _, _, findings = verify(project)
    assert [f for f in findings if f["check"] == "extra"] == []
    (folder / victim).write_bytes(b"")  # the good copy the failed run kept
    code, bad, _ = verify(project)
    assert code == 3 and victim in bad


# --------------------------------------------------------------------------- folders without a record


def test_hand_made_folder_is_unverified_until_ensure_adopts_it(
    hub: HubServer, folder: Path, project: Path
) -> None:
    """Route: a folder made by hand (no record): unverified; `ensure` adopts it, fetching only what differs."""
    put_files(folder, files_of(hub))
    (folder / "tokenizer.json").write_bytes(b'{"version": "0.9"}')  # valid JSON, wrong bytes
    assert status(project) == "unverified"
    code, _, _ = verify(project)
    assert code == 3
    assert run(project, "path", "tiny").returncode == 3
    assert run(project, "download", "tiny", env=OFFLINE).returncode == 4
    hub.reset_counters()
    result = run(project, "ensure", "tiny")
    assert result.returncode == 0, result.stderr
    assert fetched(hub) == ["tokenizer.json"]
    assert_complete(folder, files_of(hub))
    assert record(folder)["version"] == 2
    assert states(folder) == dict.fromkeys(files_of(hub), "verified")
    assert_judged_complete(project, folder)


def test_hf_download_local_dir_is_adopted_without_refetching(
    hub: HubServer, folder: Path, project: Path, tmp_path: Path
) -> None:
    """Route: a folder made by `hf download --local-dir` is unverified; `download` adopts it, fetching nothing."""
    hf = Path(sys.executable).with_name("hf")
    if not hf.exists():
        pytest.skip("huggingface_hub's `hf` command is not installed")
    made = subprocess.run(
        [str(hf), "download", "org/tiny", "--local-dir", str(folder)],
        env={**os.environ, "HF_HOME": str(tmp_path / "hf-home")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert_complete(folder, files_of(hub))
    assert status(project) == "unverified"
    code, _, _ = verify(project)
    assert code == 3
    assert run(project, "path", "tiny").returncode == 3
    hub.reset_counters()
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    assert fetched(hub) == []
    assert record(folder)["version"] == 2
    assert states(folder) == dict.fromkeys(files_of(hub), "verified")
    assert_judged_complete(project, folder)


# --------------------------------------------------------------------------- shared user root


def test_two_projects_giving_one_id_to_different_repos_never_share_a_folder(
    hub: HubServer, folder: Path, project: Path, tmp_path: Path
) -> None:
    """Route: two registries, one MODELCTL_HOME, id `tiny` = org/tiny vs org/other@v2."""
    other = Repo("org/other", model_files(big_mb=1, seed=2))
    other.revisions["v2"] = other.commit
    hub.add(other)
    project_b = tmp_path / "project-b"
    write(project_b / "models.yaml", "models:\n  - id: tiny\n    repo_id: org/other\n    revision: v2\n")
    folder_b = user_folder(tmp_path, "org/other", "v2")

    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    assert_judged_complete(project, folder)
    assert status(project_b) == "missing"  # A's complete folder is not B's model
    assert run(project_b, "path", "tiny").returncode == 4
    assert run(project_b, "download", "tiny", env=OFFLINE).returncode == 4

    result = run(project_b, "download", "tiny")
    assert result.returncode == 0, result.stderr
    assert_judged_complete(project_b, folder_b)
    assert_judged_complete(project, folder)
    assert_complete(folder, files_of(hub))
    assert_complete(folder_b, other.files)
    assert (record(folder)["repo_id"], record(folder_b)["repo_id"]) == ("org/tiny", "org/other")


def test_list_names_a_folder_holding_another_repo_or_revision(
    hub: HubServer, folder: Path, registry: Callable[..., Path], project: Path
) -> None:
    """Route: `list` status of a project-root folder whose record names another repo or revision."""
    result = run(project, "download", "tiny", "--to", "project")
    assert result.returncode == 0, result.stderr
    assert_complete(project / "models" / "tiny", files_of(hub))
    assert status(project) == "present"
    registry("models:\n  - id: tiny\n    repo_id: org/other\n")
    assert status(project) == "other repo"
    registry("models:\n  - id: tiny\n    repo_id: org/tiny\n    revision: v1\n")
    assert status(project) == "other revision"


# --------------------------------------------------------------------------- bit rot


@pytest.mark.parametrize("follow_up", ["ensure", "clean", "download"])
def test_byte_flipped_behind_the_stat_is_remembered_once_found(
    hub: HubServer, folder: Path, project: Path, follow_up: str
) -> None:
    """Route: a byte flipped with mtime restored; `verify --no-cache` finds it; plain commands then act on it."""
    victim = "model.safetensors"
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    code, _, _ = verify(project)  # cache warm
    assert code == 0
    flip_keeping_stat(folder / victim)
    verify(project)  # cached: may still say ok
    code, bad, _ = verify(project, "--no-cache")
    assert code == 3 and bad == {victim}
    hub.reset_counters()
    if follow_up == "clean":
        result = run(project, "clean", "--corrupted", "--dry-run", "--json")
        assert result.returncode == 0, result.stderr
        items = json.loads(result.stdout)["items"]
        assert [i["path"] for i in items] == [str(folder / victim)]
        assert hub.requests == []
        return
    result = run(project, follow_up, "tiny")
    assert result.returncode == 0, result.stderr
    assert fetched(hub) == [victim]
    assert_complete(folder, files_of(hub))
    code, _, _ = verify(project, "--no-cache")
    assert code == 0


def test_ensure_no_cache_catches_a_freshly_flipped_byte(hub: HubServer, folder: Path, project: Path) -> None:
    """Route: `ensure --no-cache` re-hashes by itself and repairs a byte flipped behind the stat."""
    victim = "model.safetensors"
    result = run(project, "download", "tiny")
    assert result.returncode == 0, result.stderr
    code, _, _ = verify(project)
    assert code == 0
    flip_keeping_stat(folder / victim)
    hub.reset_counters()
    result = run(project, "ensure", "tiny", "--no-cache")
    assert result.returncode == 0, result.stderr
    assert fetched(hub) == [victim]
    assert_complete(folder, files_of(hub))
    code, _, _ = verify(project, "--no-cache")
    assert code == 0
