"""Hostile Hubs and failure paths of the metadata calls: where the token goes, retries, messages.

Each test drives the CLI against fixture Hubs on 127.0.0.1 (a second HubServer on another port is
"another host"); what each server received is read from its request log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelctl.core.errors import ConfigurationError
from modelctl.core.registry import Endpoint, load_registry
from tests.conftest import TINY, Run, write
from tests.hubserver import Fault, HubServer, Repo, Request, model_files

BIG = "weights/big.bin"
TOKEN = "hf_secret_token_123"
BEARER = f"Bearer {TOKEN}"


def api_requests(hub: HubServer, kind: str = "") -> list[Request]:
    """Metadata requests the server received (kind: "/tree/" or "/revision/" for one of them)."""
    return [r for r in hub.requests if r.path.startswith("/api/") and kind in r.path]


# --------------------------------------------------------------------------- 1: pagination


@pytest.mark.parametrize(
    ("args", "env"),
    [(("download", "tiny"), {"HF_TOKEN": TOKEN}), (("lock", "--token", TOKEN), {})],
    ids=["download-HF_TOKEN", "lock---token"],
)
def test_a_tree_page_on_another_host_never_gets_the_token(
    cli: Run,
    hub: HubServer,
    registry: Callable[..., Path],
    args: tuple[str, ...],
    env: dict[str, str],
) -> None:
    registry(TINY)
    tree = f"/api/models/org/tiny/tree/{hub.repos['org/tiny'].commit}?recursive=true"
    with HubServer() as other:
        other.add(Repo("org/tiny", model_files()))
        # page 2 is on the endpoint's own host; page 3 is on another host (another port)
        hub.tree_links = [f"{hub.url}{tree}&cursor=1", f"{other.url}{tree}&cursor=2"]
        result = cli(*args, env=env)
        assert [r.authorization for r in other.requests if r.authorization] == []
    assert result.exit_code == 1, result.stderr
    assert f"another host ({other.url})" in result.stderr
    assert "org/tiny" in result.stderr and hub.url in result.stderr
    own_pages = api_requests(hub, "/tree/")
    assert len(own_pages) == 2 and {r.authorization for r in own_pages} == {BEARER}
    assert hub.file_gets() == []


def test_tree_pages_on_the_endpoints_own_host_are_all_followed(
    cli: Run, hub: HubServer, registry: Callable[..., Path], tmp_path: Path
) -> None:
    registry(TINY)
    tree = f"/api/models/org/tiny/tree/{hub.repos['org/tiny'].commit}?recursive=true"
    hub.tree_links = [f"{hub.url}{tree}&cursor=1", f"{tree}&cursor=2"]  # absolute, then relative
    data = cli.json("download", "tiny", env={"HF_TOKEN": TOKEN})
    assert {f["path"] for f in data["models"][0]["files"]} == set(hub.repos["org/tiny"].files)
    assert [r.authorization for r in api_requests(hub, "/tree/")] == [BEARER] * 3
    folder = tmp_path / "home" / "org--tiny"
    assert (folder / BIG).read_bytes() == hub.repos["org/tiny"].files[BIG]


# --------------------------------------------------------------------------- 2: which endpoint gets the token


def test_each_registry_endpoint_says_whether_it_gets_the_token(
    cli: Run, hub: HubServer, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with HubServer() as mirror:
        mirror.add(Repo("org/tiny", model_files()))
        mirror.faults[BIG] = Fault(status=503, times=None)  # so the second endpoint serves one file

        # a plain URL that is not huggingface.co: a mirror, no token; the Hub says token: true
        registry(f"endpoints:\n  - {mirror.url}\n  - {{url: {hub.url}, token: true}}\n" + TINY)
        data = cli.json("download", "tiny")
        served = {f["path"]: f["endpoint"] for f in data["models"][0]["files"]}
        assert served[BIG] == f"127.0.0.1:{hub.port}" and served["config.json"] == f"127.0.0.1:{mirror.port}"
        assert api_requests(mirror, "/revision/") and api_requests(mirror, "/tree/")
        assert {r.authorization for r in mirror.requests} == {None}
        assert {r.authorization for r in hub.file_gets(BIG)} == {BEARER}

        # the other way round: the mirror is trusted with the token, the second endpoint is not
        mirror.reset_counters()
        hub.reset_counters()
        registry(
            f"endpoints:\n  - url: {mirror.url}\n    token: true\n  - url: {hub.url}\n    token: false\n"
            + TINY
        )
        data = cli.json("download", "tiny", "--force")
        served = {f["path"]: f["endpoint"] for f in data["models"][0]["files"]}
        assert served[BIG] == f"127.0.0.1:{hub.port}"
        assert api_requests(mirror, "/revision/") and api_requests(mirror, "/tree/")
        assert {r.authorization for r in mirror.requests} == {BEARER}
        assert hub.file_gets(BIG) and {r.authorization for r in hub.requests} == {None}


def test_endpoints_entries_are_validated_and_default_by_host(project: Path) -> None:
    write(
        project / "models.yaml",
        "endpoints:\n"
        "  - https://huggingface.co\n"
        "  - https://hub.eu.huggingface.co/\n"
        "  - http://mirror.internal:8090\n"
        "  - {url: 'http://proxy.internal', token: true}\n"
        "  - {url: 'https://huggingface.co.evil.example', token: false}\n"
        "  - https://nothuggingface.co\n" + TINY,
    )
    assert load_registry().endpoints == (
        Endpoint("https://huggingface.co", True),
        Endpoint("https://hub.eu.huggingface.co", True),
        Endpoint("http://mirror.internal:8090", False),
        Endpoint("http://proxy.internal", True),
        Endpoint("https://huggingface.co.evil.example", False),
        Endpoint("https://nothuggingface.co", False),
    )
    write(
        project / "models.yaml",
        "endpoints:\n"
        "  - {url: 'http://a:1', tokn: true}\n"
        "  - {url: 'http://b:1', token: 'yes'}\n"
        "  - {token: false}\n"
        "  - 42\n"
        "  - {url: 'ftp://c'}\n" + TINY,
    )
    with pytest.raises(ConfigurationError) as info:
        load_registry()
    lines = info.value.message.splitlines()
    assert lines == [
        f"{project / 'models.yaml'}:2: endpoints[0].tokn: unknown key (did you mean 'token'?)",
        f"{project / 'models.yaml'}:3: endpoints[1].token: expected true or false, got a string",
        f"{project / 'models.yaml'}:4: endpoints[2]: missing required key 'url'",
        f"{project / 'models.yaml'}:5: endpoints[3]: expected a URL or a mapping {{url: ..., token: true|false}}, got int 42",
        f"{project / 'models.yaml'}:6: endpoints[4].url: 'ftp://c' is not an http(s) URL, e.g. http://mirror:8090",
    ]


# --------------------------------------------------------------------------- 3: one retry policy


@pytest.mark.parametrize(
    ("args", "env"),
    [(("download", "tiny", "--retries", "2"), {}), (("lock",), {"MODELCTL_RETRIES": "2"})],
    ids=["download", "lock"],
)
def test_a_failing_listing_is_asked_exactly_as_often_as_the_retries_say(
    cli: Run, hub: HubServer, registry: Callable[..., Path], args: tuple[str, ...], env: dict[str, str]
) -> None:
    registry(TINY)
    hub.tree_status = 500
    result = cli(*args, env=env)
    assert result.exit_code == 1
    assert f"The Hub at {hub.url} answered HTTP 500 for org/tiny@" in result.stderr
    assert len(api_requests(hub, "/tree/")) == 2  # our two attempts; huggingface_hub adds none
    assert len(api_requests(hub, "/revision/")) == 2


def test_the_timeout_reaches_the_listing(cli: Run, hub: HubServer, registry: Callable[..., Path]) -> None:
    registry(TINY)
    hub.tree_stall = 1.5  # longer than --timeout: every listing attempt must give up
    result = cli("download", "tiny", "--timeout", "0.3", "--retries", "2")
    assert result.exit_code == 1
    assert f"Cannot reach the Hub at {hub.url} for org/tiny" in result.stderr
    assert "timed out" in result.stderr.lower()
    time.sleep(hub.tree_stall + 0.5)  # the server logs a request when its (stalled) answer is done
    assert len(api_requests(hub, "/tree/")) == 2
    assert hub.file_gets() == []


# --------------------------------------------------------------------------- 4: messages


@pytest.mark.parametrize(
    ("models", "what"),
    [
        ("  - {id: gone, repo_id: org/gone}\n", "org/gone@main"),
        ("  - {id: tiny, repo_id: org/tiny, revision: v9}\n", "org/tiny@v9"),
        ("  - {id: tiny, repo_id: org/tiny}\n", "org/tiny@main"),  # the tree of its commit
    ],
    ids=["repo", "revision", "tree"],
)
def test_a_plain_404_from_a_simple_mirror_is_not_found(
    cli: Run, hub: HubServer, registry: Callable[..., Path], models: str, what: str
) -> None:
    registry("models:\n" + models)
    hub.plain_errors = True  # 404 without X-Error-Code
    if what == "org/tiny@main":
        hub.tree_status = 404
    result = cli("download", "--all", "--retries", "3")
    assert result.exit_code == 4, result.stderr
    assert what in result.stderr and f"not found at {hub.url} (HTTP 404)" in result.stderr
    assert "repo_id:" in result.stderr and "revision:" in result.stderr
    assert "Try again later" not in result.stderr
    assert len(api_requests(hub)) <= 2  # not retried: info (+ tree)


def test_a_host_that_does_not_resolve_fails_at_once(
    cli: Run, hub: HubServer, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_ENDPOINT")
    registry(TINY)
    dead = "http://nonexistent.invalid"  # .invalid never resolves
    result = cli("download", "tiny", "--endpoint", dead, "--retries", "3")
    assert result.exit_code == 1
    assert "nonexistent.invalid" in result.stderr and "does not resolve" in result.stderr
    assert "retry" not in result.stderr  # no metadata retry was announced
    # with another endpoint after it, the download fails over to that one
    data = cli.json("download", "tiny", "--endpoint", dead, "--endpoint", hub.url, "--retries", "3")
    assert {f["endpoint"] for f in data["models"][0]["files"]} == {f"127.0.0.1:{hub.port}"}
    assert len(api_requests(hub, "/revision/")) == 1
