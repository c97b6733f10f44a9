"""`modelctl download` against the fixture Hub on loopback: bytes, resumes, retries, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY, Run, partial_of, put_partial, sidecar_of
from tests.hubserver import Fault, HubServer, Repo, model_files
from tests.process import BIG, assert_complete, files_of, start


def test_fresh_download_is_byte_identical_and_recorded(cli: Run, hub: HubServer, tiny: Path) -> None:
    data = cli.json("download", "tiny")
    assert_complete(tiny, files_of(hub))
    (model,) = data["models"]
    assert model["root"] == "user" and model["path"] == str(tiny)
    assert model["commit"] == hub.repos["org/tiny"].commit
    assert data["bytes_fetched"] == sum(len(d) for d in files_of(hub).values()) == hub.body_bytes()
    assert {f["action"] for f in model["files"]} == {"download"}
    manifest = json.loads((tiny / ".modelctl" / "manifest.json").read_text())
    assert manifest["commit"] == hub.repos["org/tiny"].commit
    recorded = {f["path"]: f for f in manifest["files"]}
    assert set(recorded) == set(files_of(hub))
    assert recorded["model.safetensors"]["lfs"] is True
    assert recorded["config.json"]["blob_id"] == hub.repos["org/tiny"].entry("config.json")["oid"]
    listed = cli.json("list")["models"][0]
    assert (listed["status"], listed["root"]) == ("present", "user")
    info = cli.json("info", "tiny")["models"][0]
    assert info["manifest"]["commit"] == hub.repos["org/tiny"].commit


def test_second_run_fetches_nothing(cli: Run, hub: HubServer, tiny: Path) -> None:
    cli.json("download", "tiny")
    hub.reset_counters()
    data = cli.json("download", "tiny")
    assert hub.file_gets() == []
    assert data["bytes_fetched"] == 0
    assert {f["action"] for f in data["models"][0]["files"]} == {"keep"}
    assert all(f["sha256"] for f in data["models"][0]["files"])


def test_a_corrupted_local_file_is_fetched_again(cli: Run, hub: HubServer, tiny: Path) -> None:
    cli.json("download", "tiny")
    blob = bytearray((tiny / "model.safetensors").read_bytes())
    blob[100] ^= 1
    (tiny / "model.safetensors").write_bytes(bytes(blob))
    hub.reset_counters()
    data = cli.json("download", "tiny")
    actions = {f["path"]: f["action"] for f in data["models"][0]["files"]}
    assert actions["model.safetensors"] == "download"
    assert [r.path.split("/")[-1] for r in hub.file_gets()] == ["model.safetensors"]
    assert_complete(tiny, files_of(hub))


def test_dry_run_prints_the_plan_and_touches_nothing(cli: Run, hub: HubServer, tiny: Path) -> None:
    data = cli.json("download", "tiny", "--dry-run")
    assert data["dry_run"] is True
    plan = {f["path"]: f for f in data["models"][0]["files"]}
    assert plan[BIG]["action"] == "download" and plan[BIG]["bytes_needed"] == len(files_of(hub)[BIG])
    assert data["bytes_needed"] == sum(len(d) for d in files_of(hub).values())
    assert hub.file_gets() == []
    assert not tiny.exists()
    table = cli("download", "tiny", "--dry-run")
    assert table.exit_code == 0
    assert "Dry run:" in table.stdout and "nothing was changed" in table.stdout


def test_force_fetches_every_file_again(cli: Run, hub: HubServer, tiny: Path) -> None:
    cli.json("download", "tiny")
    hub.reset_counters()
    data = cli.json("download", "tiny", "--force")
    assert hub.body_bytes() == sum(len(d) for d in files_of(hub).values())
    assert {f["action"] for f in data["models"][0]["files"]} == {"download"}


def test_include_exclude_and_registry_globs(cli: Run, hub: HubServer, registry: Callable[..., Path]) -> None:
    registry("models:\n  - id: tiny\n    repo_id: org/tiny\n    files: ['*.json']\n")
    data = cli.json("download", "tiny", "--include", "*.safetensors", "--exclude", "tokenizer.json")
    assert sorted(f["path"] for f in data["models"][0]["files"]) == ["config.json", "model.safetensors"]


def test_usage_error_without_models_lists_the_choices(cli: Run, hub: HubServer, tiny: Path) -> None:
    result = cli("download")
    assert result.exit_code == 2
    assert "Name the models to download: MODEL ..., --size S or --all." in result.stderr
    assert "Models in" in result.stderr and "tiny. Sizes: 0.5b, or 'all'." in result.stderr


def test_size_selects_models(cli: Run, hub: HubServer, tiny: Path) -> None:
    assert [m["id"] for m in cli.json("download", "--size", "0.5b")["models"]] == ["tiny"]


# --------------------------------------------------------------------------- faults


def test_cut_connection_is_resumed_not_restarted(cli: Run, hub: HubServer, tiny: Path) -> None:
    size = len(files_of(hub)[BIG])
    hub.faults[BIG] = Fault(cut_after=500_000, times=2)
    result = cli("download", "tiny", "--max-workers", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert_complete(tiny, files_of(hub))
    big = next(f for f in json.loads(result.stdout)["models"][0]["files"] if f["path"] == BIG)
    assert big["bytes_fetched"] == size  # every attempt's bytes count, as the server saw them
    gets = hub.file_gets(BIG)
    last = size - 1
    assert [g.range for g in gets] == [f"bytes=0-{last}", f"bytes=500000-{last}", f"bytes=1000000-{last}"]
    assert hub.body_bytes(BIG) == size  # no byte fetched twice
    assert result.stderr.count(f"retry {BIG} (attempt") == 2
    assert "connection" in result.stderr


def test_flipped_byte_is_never_published(cli: Run, hub: HubServer, tiny: Path) -> None:
    hub.faults["model.safetensors"] = Fault(flip_at=200, times=None)
    result = cli("download", "tiny")
    assert result.exit_code == 3
    assert (
        "model.safetensors: the downloaded bytes do not match the Hub's hash twice in a row" in result.stderr
    )
    expected = hub.repos["org/tiny"].etag("model.safetensors")
    assert f"expected sha256:{expected}" in result.stderr
    assert not (tiny / "model.safetensors").exists()
    assert not partial_of(tiny, "model.safetensors").exists()
    assert len(hub.file_gets("model.safetensors")) == 2  # one retry from zero, then give up
    assert (tiny / "config.json").read_bytes() == files_of(hub)["config.json"]  # the good ones stay
    record = json.loads((tiny / ".modelctl" / "manifest.json").read_text())
    states = {f["path"]: f["state"] for f in record["files"]}
    assert states["model.safetensors"] == "pending"  # still expected: the model is incomplete
    assert states["config.json"] == "verified"
    assert cli("verify", "tiny").exit_code == 3


def test_flipped_byte_once_is_repaired_by_one_refetch(cli: Run, hub: HubServer, tiny: Path) -> None:
    hub.faults["config.json"] = Fault(flip_at=3, times=1)
    result = cli("download", "tiny")
    assert result.exit_code == 0, result.stderr
    assert "hash mismatch" in result.stderr
    assert_complete(tiny, files_of(hub))


@pytest.mark.parametrize(
    "fault",
    [
        Fault(extra=b"tail", times=None),
        Fault(length_delta=-10, times=None),
        Fault(length_delta=+10, times=None),
    ],
    ids=["extra-bytes", "short-length", "long-length"],
)
def test_wrong_length_is_never_published(cli: Run, hub: HubServer, tiny: Path, fault: Fault) -> None:
    hub.faults["model-q4.gguf"] = fault
    result = cli("download", "tiny", "--retries", "2")
    assert result.exit_code in (1, 3), result.stderr
    assert "model-q4.gguf" in result.stderr
    assert not (tiny / "model-q4.gguf").exists()
    assert (tiny / "model.safetensors").read_bytes() == files_of(hub)["model.safetensors"]


def test_429_retry_after_is_waited_for(cli: Run, hub: HubServer, tiny: Path) -> None:
    hub.faults["config.json"] = Fault(status=429, retry_after="1", times=1)
    hub.faults["README.md"] = Fault(status=503, times=1)
    result = cli("download", "tiny")
    assert result.exit_code == 0, result.stderr
    assert "retry config.json (attempt 2) in 1.0 s: HTTP 429" in result.stderr
    assert "retry README.md (attempt 2) in" in result.stderr and "HTTP 503" in result.stderr
    first, second = hub.file_gets("config.json")
    assert second.at - first.at >= 0.95
    assert_complete(tiny, files_of(hub))


def test_stall_past_the_read_timeout_is_retried(cli: Run, hub: HubServer, tiny: Path) -> None:
    hub.faults[BIG] = Fault(stall_after=200_000, stall=3.0, times=1)
    result = cli("download", "tiny", "--timeout", "0.5")
    assert result.exit_code == 0, result.stderr
    assert "stalled" in result.stderr
    assert_complete(tiny, files_of(hub))


def test_server_that_ignores_range_restarts_the_file_cleanly(cli: Run, hub: HubServer, tiny: Path) -> None:
    hub.faults[BIG] = Fault(cut_after=1_000_000, times=1)
    hub.support_range = False  # as olah does
    result = cli("download", "tiny")
    assert result.exit_code == 0, result.stderr
    _first, second = hub.file_gets(BIG)
    assert second.range == f"bytes=1000000-{len(files_of(hub)[BIG]) - 1}" and second.status == 200
    assert_complete(tiny, files_of(hub))


def test_gives_up_after_the_configured_attempts(cli: Run, hub: HubServer, tiny: Path) -> None:
    hub.faults[BIG] = Fault(status=500, times=None)
    result = cli("download", "tiny", "--retries", "2")
    assert result.exit_code == 1
    assert f"{BIG}: HTTP 500; gave up after 2 attempts" in result.stderr
    assert "Hint: Run the same command again to resume" in result.stderr
    assert len(hub.file_gets(BIG)) == 2
    assert not (tiny / BIG).exists()
    assert (tiny / "config.json").exists()


def test_disk_space_refusal_before_any_byte(cli: Run, hub: HubServer, tiny: Path) -> None:
    hub.repos["org/tiny"].listed_sizes[BIG] = 2**50
    result = cli("download", "tiny")
    assert result.exit_code == 5
    assert "Not enough disk space for the download plan" in result.stderr
    assert "needed bytes" in result.stderr and f"{2**50 + 0:,}"[:5] in result.stderr
    assert hub.file_gets() == []
    assert not tiny.exists()


def test_hostile_file_names_are_refused(cli: Run, hub: HubServer, tiny: Path, tmp_path: Path) -> None:
    hub.repos["org/tiny"].extra_listing.append(
        {"type": "file", "path": "../../escape.txt", "size": 4, "oid": "0" * 40}
    )
    result = cli("download", "tiny")
    assert result.exit_code == 1
    assert "lists a file named '../../escape.txt', which would land outside the model folder" in result.stderr
    assert hub.file_gets() == []
    assert not (tmp_path / "escape.txt").exists()


# --------------------------------------------------------------------------- Hub errors


def test_hub_errors_are_translated(cli: Run, hub: HubServer, registry: Callable[..., Path]) -> None:
    hub.add(Repo("org/gated", {"config.json": b"{}"}, token="hf_secret_token_123"))
    registry(
        "models:\n"
        "  - {id: nope, repo_id: org/nope}\n"
        "  - {id: gated, repo_id: org/gated}\n"
        "  - {id: badrev, repo_id: org/tiny, revision: v9}\n"
    )
    missing = cli("download", "nope")
    assert missing.exit_code == 4
    assert "Repository org/nope was not found at" in missing.stderr
    assert "modelctl download nope --token hf_..." in missing.stderr
    gated = cli("download", "gated")
    assert gated.exit_code == 1
    assert "org/gated is gated: your token has no access to it (HTTP 401)." in gated.stderr
    assert (
        "Hint: Accept the terms on the repo's page, then run `modelctl download gated --token hf_...`"
        in gated.stderr
    )
    rev = cli("download", "badrev")
    assert rev.exit_code == 4
    assert "Revision 'v9' of org/tiny was not found" in rev.stderr
    ok = cli("download", "gated", "--token", "hf_secret_token_123", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert "hf_secret_token_123" not in ok.stdout + ok.stderr


def test_token_is_not_sent_to_another_host_after_a_redirect(
    cli: Run, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with HubServer(redirect_lfs=True) as server:
        server.add(Repo("org/tiny", model_files(), token="hf_redirect_secret"))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hf_redirect_secret")
        registry(TINY)
        result = cli("download", "tiny", "--json")
        assert result.exit_code == 0, result.stderr
        cdn = [r for r in server.requests if r.path.startswith("/cdn/")]
        resolve = [r for r in server.file_gets() if "/resolve/" in r.path]
        assert cdn and all(r.host.startswith("localhost:") and r.authorization is None for r in cdn)
        assert resolve and all(r.authorization == "Bearer hf_redirect_secret" for r in resolve)
        assert "hf_redirect_secret" not in result.stdout + result.stderr
        assert_complete(tmp_path / "home" / "org--tiny", server.repos["org/tiny"].files)
        written = b"".join(p.read_bytes() for p in (tmp_path / "home").rglob("*") if p.is_file())
        assert b"hf_redirect_secret" not in written and b"sig=secret" not in written


def test_unreachable_endpoint(cli: Run, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    result = cli("download", "tiny", "--retries", "1")
    assert result.exit_code == 1
    assert "Cannot reach the Hub at http://127.0.0.1:9" in result.stderr
    assert "--offline" in result.stderr


def test_offline_without_the_model_names_roots_and_the_command(
    cli: Run, hub: HubServer, tiny: Path, project: Path
) -> None:
    result = cli("download", "tiny", "--offline")
    assert result.exit_code == 4
    assert "tiny is not complete on disk and offline mode is on" in result.stderr
    assert f"project {project / 'models'}" in result.stderr
    assert "HF_HUB_OFFLINE=0 modelctl download tiny" in result.stderr
    assert hub.requests == []


def test_offline_with_the_model_on_disk_succeeds_without_network(
    cli: Run, hub: HubServer, tiny: Path
) -> None:
    cli.json("download", "tiny")
    hub.reset_counters()
    data = cli.json("download", "tiny", env={"HF_HUB_OFFLINE": "1"})
    assert {f["action"] for f in data["models"][0]["files"]} == {"keep"}
    assert hub.requests == []


def test_model_in_a_read_only_root_is_downloaded_to_a_writable_one(
    cli: Run, hub: HubServer, tiny: Path, project: Path
) -> None:
    data = cli.json("download", "tiny", "--to", "project")
    assert data["models"][0]["path"] == str(project / "models" / "tiny")
    assert_complete(project / "models" / "tiny", files_of(hub))
    hub.reset_counters()
    assert cli.json("download", "tiny")["models"][0]["root"] == "project"  # found there: kept there
    assert hub.file_gets() == []


# --------------------------------------------------------------------------- processes


def test_resume_after_kill_9_fetches_only_the_rest(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.delay = 0.01  # 64 KiB per 10 ms: the 3 MiB file takes ~0.5 s
    proc = start(project, "download", "tiny")
    partial = partial_of(tiny, BIG)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 1_000_000):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (tiny / BIG).exists()
    kept = partial.stat().st_size
    assert 0 < kept < len(files_of(hub)[BIG])
    assert json.loads(sidecar_of(tiny, BIG).read_text())["size"] == len(files_of(hub)[BIG])
    hub.delay = 0.0
    deadline = time.monotonic() + 10  # the server records the killed request once its write fails
    while time.monotonic() < deadline and not hub.file_gets(BIG):
        time.sleep(0.01)
    hub.reset_counters()
    rerun = start(project, "download", "tiny", "--json")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    gets = hub.file_gets(BIG)
    assert [(g.range, g.status) for g in gets] == [(f"bytes={kept}-{len(files_of(hub)[BIG]) - 1}", 206)]
    assert hub.body_bytes(BIG) == len(files_of(hub)[BIG]) - kept
    assert_complete(tiny, files_of(hub))
    big = next(f for f in json.loads(out)["models"][0]["files"] if f["path"] == BIG)
    assert (big["action"], big["resumed_from"]) == ("resume", kept)


def test_lock_wait_is_bounded_and_names_the_holder(hub: HubServer, tiny: Path, project: Path) -> None:
    hub.delay = 0.05
    first = start(project, "download", "tiny")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (tiny / ".modelctl" / "lock.owner").exists():
        time.sleep(0.01)
    second = start(project, "download", "tiny", "--lock-timeout", "0.3")
    _, err2 = second.communicate(timeout=60)
    first.kill()
    first.communicate()
    assert second.returncode == 1
    assert f"{tiny} is locked by pid {first.pid}, still busy after waiting 0.3 s" in err2
    hub.delay = 0.0
    third = start(project, "download", "tiny")  # the killed holder's lock is taken over
    _, err3 = third.communicate(timeout=60)
    assert third.returncode == 0, err3
    assert_complete(tiny, files_of(hub))


def test_ctrl_c_exits_130_and_keeps_the_partial_for_a_resume(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    hub.delay = 0.02
    proc = start(project, "download", "tiny")
    partial = partial_of(tiny, BIG)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 300_000):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Interrupted. Finished files are in place; partial downloads were kept." in err
    assert "Traceback" not in err
    assert not (tiny / BIG).exists()
    kept = partial.stat().st_size
    assert kept > 0 and sidecar_of(tiny, BIG).exists()
    hub.delay = 0.0
    rerun = start(project, "download", "tiny", "--json")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    big = next(f for f in json.loads(out)["models"][0]["files"] if f["path"] == BIG)
    assert (big["action"], big["resumed_from"]) == ("resume", kept)
    assert_complete(tiny, files_of(hub))


class _Proxy:
    """A plain-HTTP forwarding proxy on 127.0.0.1 that remembers the URLs it forwarded."""

    def __init__(self) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen.append(self.path)
                parts = urlsplit(self.path)
                upstream = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-connection", "connection")
                }
                upstream.request(
                    "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers
                )
                resp = upstream.getresponse()
                body = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                upstream.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        import threading

        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_proxy_from_the_environment_carries_the_transfers(
    hub: HubServer, tiny: Path, project: Path
) -> None:
    proxy = _Proxy()
    try:
        env = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}
        proc = start(project, "download", "tiny", env=env)
        _, err = proc.communicate(timeout=60)
    finally:
        proxy.close()
    assert proc.returncode == 0, err
    assert_complete(tiny, files_of(hub))
    assert any(f"/org/tiny/resolve/{hub.repos['org/tiny'].commit}/{BIG}" in url for url in proxy.seen)
    assert all(url.startswith(hub.url) for url in proxy.seen)


def test_files_placed_by_another_tool_are_hashed_once_and_adopted(
    cli: Run, hub: HubServer, tiny: Path, project: Path
) -> None:
    folder = project / "models" / "tiny"
    for name, data in files_of(hub).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    data = cli.json("download", "tiny")
    assert hub.file_gets() == []
    assert data["models"][0]["path"] == str(folder)
    assert {f["action"] for f in data["models"][0]["files"]} == {"keep"}
    manifest = json.loads((folder / ".modelctl" / "manifest.json").read_text())
    assert all(f["state"] == "verified" and f["checked"]["at"] for f in manifest["files"])
    recorded = {f["path"]: f["checked"]["digests"]["sha256"] for f in manifest["files"]}
    assert recorded["config.json"] == hashlib.sha256(files_of(hub)["config.json"]).hexdigest()


def test_endpoints_fail_over_and_say_who_served_each_file(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    with HubServer() as second:
        second.add(Repo("org/tiny", model_files()))
        dead = "http://127.0.0.1:9"  # connection refused
        registry(f"endpoints: [{dead}, {hub.url}, {second.url}]\n" + TINY)
        hub.faults[BIG] = Fault(status=503, times=None)  # the first live mirror cannot serve one file
        data = cli.json("download", "tiny")
        served = {f["path"]: f["endpoint"] for f in data["models"][0]["files"]}
        assert served[BIG] == f"127.0.0.1:{second.port}"
        assert served["config.json"] == f"127.0.0.1:{hub.port}"
        assert_complete(tmp_path / "home" / "org--tiny", files_of(hub))
        assert second.file_gets(BIG) and not second.file_gets("config.json")
    hub.faults.clear()
    flags = cli.json(
        "download", "tiny", "--force", "--endpoint", dead, "--endpoint", hub.url, "--retries", "2"
    )
    assert {f["endpoint"] for f in flags["models"][0]["files"] if f["path"] != BIG} == {
        f"127.0.0.1:{hub.port}"
    }


def test_all_endpoints_down_names_each(
    cli: Run, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    registry("endpoints: [http://127.0.0.1:9, http://127.0.0.1:7]\n" + TINY)
    result = cli("download", "tiny", "--retries", "1")
    assert result.exit_code == 1
    assert "Cannot reach the Hub at http://127.0.0.1:7" in result.stderr
    assert "Earlier endpoints failed too: http://127.0.0.1:9" in result.stderr


def test_quiet_prints_only_the_folder_and_env_sets_the_retries(
    cli: Run, hub: HubServer, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet = cli("download", "tiny", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == f"{tiny}\n" and quiet.stderr == ""
    hub.faults["config.json"] = Fault(status=500, times=None)
    monkeypatch.setenv("MODELCTL_RETRIES", "2")
    result = cli("download", "tiny", "--force")
    assert result.exit_code == 1 and "config.json: HTTP 500; gave up after 2 attempts" in result.stderr
    assert len(hub.file_gets("config.json")) == 1 + 2  # the first run, then two attempts


def test_rich_progress_on_a_terminal(hub: HubServer, tiny: Path, project: Path) -> None:
    script = shutil.which("script")
    if script is None:
        pytest.skip("util-linux script is needed to give modelctl a terminal")
    hub.faults[BIG] = Fault(cut_after=1_000_000, times=1)
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    command = f"{sys.executable} -m modelctl download tiny"
    result = subprocess.run(
        [script, "-qec", command, "/dev/null"], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
    screen = result.stdout
    assert "tiny (total)" in screen and "━" in screen  # the overall bar, drawn by Rich
    assert f"retry {BIG} (attempt 2)" in screen  # retries are printed above the bars
    assert_complete(tiny, files_of(hub))


def test_a_partial_the_server_will_not_resume_is_reported_as_downloaded_whole(
    cli: Run, hub: HubServer, tiny: Path
) -> None:
    size = len(files_of(hub)[BIG])
    put_partial(tiny, BIG, files_of(hub)[BIG][:1000])
    sidecar = {
        "version": 1,
        "path": BIG,
        "size": size,
        "etag": "x",
        "blob_id": hub.repos["org/tiny"].entry(BIG)["oid"],
    }
    sidecar["sha256"] = hub.repos["org/tiny"].entry(BIG)["lfs"]["oid"]
    sidecar_of(tiny, BIG).write_text(json.dumps(sidecar))
    hub.support_range = False  # answers 200 with the whole file, as olah does
    planned = cli.json("download", "tiny", "--dry-run")["models"][0]["files"]
    assert next(f["action"] for f in planned if f["path"] == BIG) == "resume"
    data = cli.json("download", "tiny")
    big = next(f for f in data["models"][0]["files"] if f["path"] == BIG)
    assert (big["action"], big["resumed_from"], big["bytes_fetched"]) == ("download", 0, size)
    assert_complete(tiny, files_of(hub))


def _interrupted_big(hub: HubServer, tiny: Path, kept: int) -> int:
    """A resumable partial of BIG, as an interrupted run leaves it; the file's size."""
    entry = hub.repos["org/tiny"].entry(BIG)
    put_partial(tiny, BIG, files_of(hub)[BIG][:kept])
    etag = f'"{hub.repos["org/tiny"].etag(BIG)}"'
    sidecar = {"version": 1, "path": BIG, "size": entry["size"], "etag": etag}
    sidecar.update(blob_id=entry["oid"], sha256=entry["lfs"]["oid"])
    sidecar_of(tiny, BIG).write_text(json.dumps(sidecar))
    return int(entry["size"])


def test_a_206_from_the_wrong_offset_is_retried_and_says_which_offset_was_asked(
    cli: Run, hub: HubServer, tiny: Path
) -> None:
    _interrupted_big(hub, tiny, 1000)
    hub.faults[BIG] = Fault(range_shift=-1000, times=1)  # asked 1000-, sent 0-
    result = cli("download", "tiny")
    assert result.exit_code == 0, result.stderr
    size = len(files_of(hub)[BIG])
    assert f"server sent bytes 0-{size - 1} of {size}, not 1000-" in result.stderr
    assert_complete(tiny, files_of(hub))


def test_a_wrong_content_range_total_is_reported_as_a_wrong_size(
    cli: Run, hub: HubServer, tiny: Path
) -> None:
    _interrupted_big(hub, tiny, 1000)
    hub.faults[BIG] = Fault(total_delta=7, times=1)
    result = cli("download", "tiny")
    assert result.exit_code == 0, result.stderr
    size = len(files_of(hub)[BIG])
    assert f"server says the file is {size + 7} bytes (Content-Range), the Hub listed {size}" in result.stderr
    assert "not 1000-" not in result.stderr
    assert_complete(tiny, files_of(hub))
