"""HTTPS as the real Hub speaks it: a private CA, the trust variables, certificate errors, CONNECT proxies.

The fixture Hub serves over TLS with certificates from tests/tlsfixture.py (a throwaway CA made
with openssl); tests/proxyserver.py is the CONNECT proxy. Every run goes through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelctl.net import tls
from tests.conftest import TINY, Run, partial_of
from tests.hubserver import Fault, HubServer, Repo, model_files
from tests.process import assert_complete, run, start, wait_for
from tests.proxyserver import ConnectProxy
from tests.tlsfixture import Pki, make_pki, server_context

BIG = "weights/big.bin"
LFS = ("model.safetensors", "model-q4.gguf", BIG)
TRUST = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
PROXY = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def no_trust_or_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own CA and proxy variables must not decide a test."""
    for var in TRUST + PROXY:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def https_hub(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The fixture Hub over HTTPS (certificate for 127.0.0.1 and localhost from the test CA); HF_ENDPOINT → it."""
    with HubServer(tls=server_context(pki.good)) as server:
        server.add(Repo("org/tiny", model_files()))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def trust(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))


# --------------------------------------------------------------------------- trust settings


@pytest.mark.parametrize("variable", TRUST)
def test_download_over_https_trusting_each_variable(
    variable: str, cli: Run, https_hub: HubServer, tiny: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, str(pki.ca_dir if variable == "SSL_CERT_DIR" else pki.ca))
    data = cli.json("download", "tiny")
    files = https_hub.repos["org/tiny"].files
    assert_complete(tiny, files)
    assert {f["endpoint"] for f in data["models"][0]["files"]} == {f"127.0.0.1:{https_hub.port}"}
    assert https_hub.body_bytes() == sum(len(d) for d in files.values())
    assert any(r.path.startswith("/api/models/org/tiny/tree/") for r in https_hub.requests)  # metadata too


def test_the_first_variable_set_wins(
    cli: Run, https_hub: HubServer, tiny: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.other_ca))  # would fail: REQUESTS_CA_BUNDLE comes first
    cli.json("download", "tiny")
    assert_complete(tiny, https_hub.repos["org/tiny"].files)

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))  # would work: REQUESTS_CA_BUNDLE still comes first
    error = cli.json("download", "tiny", "--force", code=1)["error"]
    assert error["type"] == "CertificateError"
    assert f"checked against REQUESTS_CA_BUNDLE={pki.other_ca}" in error["message"]

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(pki.ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.other_ca))
    assert cli("download", "tiny", "--force").exit_code == 0


def test_the_context_is_built_once_per_setting(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    first = tls.ssl_context()
    assert tls.ssl_context() is first
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.ca_dir))  # both OpenSSL variables count together
    assert tls.trust_settings() == (("SSL_CERT_FILE", str(pki.ca)), ("SSL_CERT_DIR", str(pki.ca_dir)))
    assert tls.ssl_context() is not first
    monkeypatch.setenv("CURL_CA_BUNDLE", "")  # empty is unset, never "no verification"
    assert tls.trust_settings()[0][0] == "SSL_CERT_FILE"
    assert tls.ssl_context().verify_mode.name == "CERT_REQUIRED" and tls.ssl_context().check_hostname


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_DIR"])
def test_a_ca_setting_that_holds_no_certificate_is_a_configuration_error(
    variable: str, cli: Run, https_hub: HubServer, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-ca"
    monkeypatch.setenv(variable, str(missing))
    result = cli("download", "tiny")
    assert result.exit_code == 1
    assert f"{variable}={missing}" in result.stderr
    error = cli.json("download", "tiny", code=1)["error"]
    assert error["type"] == "ConfigurationError" and variable in error["message"]
    assert https_hub.requests == []


# --------------------------------------------------------------------------- certificate errors


def test_no_ca_configured_is_a_clear_certificate_error(
    cli: Run, https_hub: HubServer, tiny: Path, pki: Pki
) -> None:
    result = cli("download", "tiny", "--retries", "3")
    assert result.exit_code == 1
    assert f"Cannot connect securely to 127.0.0.1:{https_hub.port}: certificate not trusted" in result.stderr
    assert "Traceback" not in result.stderr
    hint = result.stderr[result.stderr.index("Hint:") :]
    for variable in TRUST:
        assert variable in hint
    assert "offline" not in result.stderr.lower()
    assert https_hub.requests == [] and not tiny.exists()  # no HTTP request got through

    error = cli.json("download", "tiny", code=1)["error"]
    assert error["type"] == "CertificateError" and error["exit_code"] == 1
    assert "certificate not trusted" in error["message"] and "127.0.0.1" in error["message"]
    assert "REQUESTS_CA_BUNDLE" in error["hint"] and "offline" not in error["hint"].lower()


def test_expired_certificate(
    cli: Run, pki: Pki, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    trust(monkeypatch, pki)
    with HubServer(tls=server_context(pki.expired)) as server:
        server.add(Repo("org/tiny", model_files()))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        registry(TINY)
        error = cli.json("download", "tiny", code=1)["error"]
    assert error["type"] == "CertificateError"
    assert f"127.0.0.1:{server.port}: certificate expired" in error["message"]
    assert "clock" in error["hint"] and "offline" not in error["hint"].lower()


def test_wrong_name_certificate(
    cli: Run, pki: Pki, registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    trust(monkeypatch, pki)
    with HubServer(tls=server_context(pki.wrong_name)) as server:
        server.add(Repo("org/tiny", model_files()))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        registry(TINY)
        result = cli("download", "tiny")
    assert result.exit_code == 1
    assert f"127.0.0.1:{server.port}: its certificate has the wrong name (hostname mismatch" in result.stderr
    assert "offline" not in result.stderr.lower()


def test_a_certificate_error_during_a_transfer_is_not_retried(
    cli: Run, pki: Pki, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metadata from 127.0.0.1 works; LFS files redirect to localhost, which the certificate does not name."""
    trust(monkeypatch, pki)
    with HubServer(tls=server_context(pki.ip_only), redirect_lfs=True) as server:
        server.add(Repo("org/tiny", model_files()))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        result = cli("download", "tiny", "--retries", "4")
    assert result.exit_code == 1
    assert f"Cannot connect securely to localhost:{server.port}" in result.stderr
    assert "wrong name (hostname mismatch" in result.stderr
    assert "request failed" not in result.stderr and "offline" not in result.stderr.lower()
    for name in LFS:  # one redirect each, then no retry of a certificate that will not change
        resolves = [r for r in server.file_gets(name) if "/resolve/" in r.path]
        assert len(resolves) == 1, name
        assert not (tiny / name).exists()
    assert (tiny / "config.json").read_bytes() == server.repos["org/tiny"].files["config.json"]
    assert not [r for r in server.requests if r.path.startswith("/cdn/")]


# --------------------------------------------------------------------------- the reliability scenarios over TLS


def test_resume_over_tls(
    cli: Run, https_hub: HubServer, tiny: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust(monkeypatch, pki)
    data = https_hub.repos["org/tiny"].files[BIG]
    https_hub.faults[BIG] = Fault(cut_after=1_500_000)
    first = cli("download", "tiny", "--retries", "1")
    assert first.exit_code == 1 and BIG in first.stderr
    kept = partial_of(tiny, BIG).stat().st_size
    assert 0 < kept <= 1_500_000 and not (tiny / BIG).exists()
    https_hub.reset_counters()

    cli.json("download", "tiny")
    gets = https_hub.file_gets(BIG)
    assert len(gets) == 1 and (gets[0].range or "").startswith(f"bytes={kept}-") and gets[0].status == 206
    assert https_hub.body_bytes(BIG) == len(data) - kept
    assert (tiny / BIG).read_bytes() == data
    assert https_hub.body_bytes() == len(data) - kept  # the other files were complete already


def test_redirect_to_another_host_over_tls_never_sends_the_token(
    cli: Run, pki: Pki, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_tls_secret_token"
    trust(monkeypatch, pki)
    with HubServer(tls=server_context(pki.good), redirect_lfs=True) as server:
        server.add(Repo("org/tiny", model_files(), token=secret))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", secret)
        cli.json("download", "tiny")
    assert_complete(tiny, server.repos["org/tiny"].files)
    cdn = [r for r in server.requests if r.path.startswith("/cdn/")]
    assert len(cdn) == len(LFS) and all(r.host == f"localhost:{server.port}" for r in cdn)
    assert all(r.authorization is None for r in cdn)
    hub_side = [r for r in server.requests if not r.path.startswith("/cdn/")]
    assert hub_side and all(r.authorization == f"Bearer {secret}" for r in hub_side)


def test_failover_between_https_endpoints(
    cli: Run, pki: Pki, registry: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust(monkeypatch, pki)
    context = server_context(pki.good)
    with HubServer(tls=context) as first, HubServer(tls=context) as second:
        for server in (first, second):
            server.add(Repo("org/tiny", model_files()))
        dead = "https://127.0.0.1:9"  # connection refused
        registry(f"endpoints: [{dead}, {first.url}, {second.url}]\n" + TINY)
        first.faults[BIG] = Fault(status=503, times=None)  # the first live mirror cannot serve one file
        data = cli.json("download", "tiny")
    served = {f["path"]: f["endpoint"] for f in data["models"][0]["files"]}
    assert served[BIG] == f"127.0.0.1:{second.port}"
    assert served["config.json"] == f"127.0.0.1:{first.port}"
    assert_complete(tmp_path / "home" / "org--tiny", first.repos["org/tiny"].files)
    assert second.file_gets(BIG) and not second.file_gets("config.json")


# --------------------------------------------------------------------------- proxies


def test_https_through_a_connect_proxy(
    cli: Run, https_hub: HubServer, tiny: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust(monkeypatch, pki)
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        cli.json("download", "tiny")
    assert_complete(tiny, https_hub.repos["org/tiny"].files)
    assert {t.target for t in proxy.connects} == {f"127.0.0.1:{https_hub.port}"}
    assert len(proxy.tunnels) >= 2  # metadata and file bytes both went through it
    assert len(https_hub.file_gets()) == len(https_hub.repos["org/tiny"].files)


def test_https_through_a_proxy_that_wants_credentials(
    cli: Run, https_hub: HubServer, tiny: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust(monkeypatch, pki)
    with ConnectProxy(user="alice", password="p@ss:word") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # none given
        missing = cli.json("download", "tiny", "--retries", "3", code=1)["error"]
        assert f"The proxy 127.0.0.1:{proxy.port} refused" in missing["message"]
        assert "407" in missing["message"] and "rejected" not in missing["message"]
        assert "HTTPS_PROXY=http://USER:PASSWORD@" in missing["hint"]

        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with("alice", "wrong"))
        wrong = cli("download", "tiny", "--retries", "3")
        assert wrong.exit_code == 1 and "rejected the ones given" in wrong.stderr
        assert "wrong" not in wrong.stderr.replace("wrong name", "")  # the password is not shown
        assert https_hub.requests == [] and len(proxy.connects) == 2  # each refused once, no retry

        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with("alice", "p@ss:word"))
        cli.json("download", "tiny")
    assert_complete(tiny, https_hub.repos["org/tiny"].files)
    assert len(proxy.tunnels) >= 2 and all(proxy.is_allowed(t.authorization) for t in proxy.tunnels)


def test_proxy_credentials_for_file_transfers_and_no_proxy(
    cli: Run, pki: Pki, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY=127.0.0.1 keeps the Hub direct; the LFS redirects to localhost go through the proxy."""
    trust(monkeypatch, pki)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with (
        HubServer(tls=server_context(pki.good), redirect_lfs=True) as server,
        ConnectProxy(user="bob", password="secret") as proxy,
    ):
        server.add(Repo("org/tiny", model_files()))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with("bob", "nope"))
        result = cli("download", "tiny", "--retries", "3")
        assert result.exit_code == 1 and "rejected the ones given" in result.stderr
        assert f"localhost:{server.port}" in result.stderr
        assert len(proxy.connects) == len(LFS)  # one refused CONNECT per LFS file: not retried

        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with("bob", "secret"))
        cli.json("download", "tiny")
    assert_complete(tiny, server.repos["org/tiny"].files)
    assert {t.target for t in proxy.connects} == {f"localhost:{server.port}"}
    assert len(proxy.tunnels) == len(LFS)


def test_no_proxy_bypasses_the_proxy(
    cli: Run, https_hub: HubServer, tiny: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust(monkeypatch, pki)
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        cli.json("download", "tiny")
    assert proxy.connects == []
    assert_complete(tiny, https_hub.repos["org/tiny"].files)


def test_the_real_executable_over_https(
    https_hub: HubServer, tiny: Path, pki: Pki, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed entry point, not only the in-process runner: same trust, same bytes."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SSL_CERT_DIR": str(pki.ca_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "modelctl", "download", "tiny", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["models"][0]["files"]
    digests = {f["path"]: f["sha256"] for f in files}
    assert digests[BIG] == hashlib.sha256(https_hub.repos["org/tiny"].files[BIG]).hexdigest()
    assert_complete(tiny, https_hub.repos["org/tiny"].files)


def test_files_share_kept_alive_tls_connections(
    cli: Run, https_hub: HubServer, tiny: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model of many small files pays one TLS handshake per connection, not one per file."""
    trust(monkeypatch, pki)
    result = cli("download", "tiny", "--connections", "1")
    assert result.exit_code == 0, result.stderr
    assert_complete(tiny, https_hub.repos["org/tiny"].files)
    gets = https_hub.file_gets()
    assert len(gets) == len(https_hub.repos["org/tiny"].files) >= 7
    assert len({g.client_port for g in gets}) == 1  # one connection, so one handshake, for 7 files

    https_hub.reset_counters()
    for name in https_hub.repos["org/tiny"].files:
        (tiny / name).unlink()
    again = cli("download", "tiny", "--connections", "3")
    assert again.exit_code == 0, again.stderr
    assert len({g.client_port for g in https_hub.file_gets()}) <= 3


def test_kill_9_over_tls_then_rerun_fetches_only_the_missing_ranges(
    https_hub: HubServer, tiny: Path, pki: Pki, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real executable over HTTPS, 4 connections splitting the 3 MiB file, killed mid-way."""
    from modelctl.store.storage import ranges_path, read_ranges

    trust(monkeypatch, pki)
    monkeypatch.setenv("MODELCTL_SPLIT_SIZE", "1M")
    monkeypatch.setenv("MODELCTL_CONNECTIONS", "4")
    data = https_hub.repos["org/tiny"].files[BIG]
    https_hub.delay = 0.01
    proc = start(project, "download", "tiny")
    log = ranges_path(tiny, BIG)
    wait_for(lambda: log.exists() and sum(b - a for a, b in read_ranges(log, len(data))) > 1_000_000)
    proc.kill()
    proc.communicate()
    held = read_ranges(log, len(data))
    missing = len(data) - sum(b - a for a, b in held)
    assert missing > 0 and not (tiny / BIG).exists()

    https_hub.delay = 0.0
    time.sleep(0.5)  # the killed client's connections end on the server side
    https_hub.reset_counters()
    rerun = run(project, "download", "tiny", "--connections", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert https_hub.body_bytes(BIG) == missing  # over TLS too, only the spans the log lacks
    assert (tiny / BIG).read_bytes() == data


def test_plain_http_through_a_proxy_that_wants_credentials(
    cli: Run, hub: HubServer, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = hub.repos["org/tiny"].files
    with ConnectProxy(user="alice", password="p@ss:word") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url_with("alice", "p@ss:word"))
        cli.json("download", "tiny")
        assert_complete(tiny, files)
        through = [t for t in proxy.connects if "/resolve/" in t.target]
        assert len(through) >= len(files)  # every file GET went through the proxy, with its credentials
        assert all(t.status == 200 and proxy.is_allowed(t.authorization) for t in proxy.connects)

        monkeypatch.setenv("HTTP_PROXY", proxy.url_with("alice", "wrong"))
        wrong = cli("download", "tiny", "--force", "--retries", "3")
        assert wrong.exit_code == 1, wrong.stderr
        assert "407" in wrong.stderr and "HTTP_PROXY=http://USER:PASSWORD@" in wrong.stderr
        assert "wrong" not in wrong.stderr
