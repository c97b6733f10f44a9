"""HTTPS trust: which CA certificates modelctl trusts, and what a certificate failure means.

Metadata (hub.py, through huggingface_hub's HTTP client) and file bytes (transfer.py, on
http.client) verify servers against the same CAs, chosen from the environment variables users
already set for other tools, the first one set (non-empty) winning:

  1. REQUESTS_CA_BUNDLE   a PEM bundle (or a hashed directory), as requests reads it
  2. CURL_CA_BUNDLE       the same, as curl and requests read it
  3. SSL_CERT_FILE and/or SSL_CERT_DIR   OpenSSL's own variables: a PEM bundle and/or a hashed
                                         directory (`openssl rehash`); both are used when both are set
  4. none set: the system's CA store (file transfers: OpenSSL's default paths; metadata:
     huggingface_hub's own session, unchanged, which uses the same paths on Linux and the
     operating system's store through truststore on macOS and Windows)

requests reads REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE, and ignores the SSL_CERT_* pair; httpx
and huggingface_hub's HTTP client read SSL_CERT_FILE, then SSL_CERT_DIR, and ignore the other
two; curl reads CURL_CA_BUNDLE before SSL_CERT_DIR and SSL_CERT_FILE. The order above keeps
each variable's meaning and puts the most specific (named after one tool) first. A named CA
replaces the system store rather than adding to it, as in all three. An empty value counts as
unset: there is no variable or option that turns verification off.

The environment is read at each call (tests set it per test); the context is built once per
distinct set of values, since loading a system bundle costs milliseconds per connection.
"""

from __future__ import annotations

import functools
import http.client
import os
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from modelctl.core.errors import CertificateError, ConfigurationError, DownloadError, in_chain, option

TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
HTTPS_DOCS = "docs/https.md (HTTPS, company CAs and proxies)"

# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) that have a clearer name
_EXPIRED = {9: "certificate not valid yet", 10: "certificate expired"}
_WRONG_NAME = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def trust_settings() -> tuple[tuple[str, str], ...]:
    """The (variable, value) pairs that decide trust now, in effect order; () for the system store."""
    for name in TRUST_VARIABLES[:2]:
        value = os.environ.get(name, "")
        if value:
            return ((name, value),)
    return tuple((name, value) for name in TRUST_VARIABLES[2:] if (value := os.environ.get(name, "")))


def ssl_context() -> ssl.SSLContext:
    """A client context verifying certificates and host names against the CAs `trust_settings` names.

    ConfigurationError when a variable names a path that holds no usable certificate.
    """
    return _context(trust_settings())


def is_configured() -> bool:
    """Whether a trust variable is set (otherwise the system store applies)."""
    return bool(trust_settings())


def describe_trust() -> str:
    """Where the trusted CAs come from, for messages."""
    settings = trust_settings()
    if not settings:
        return "the system's CA store (none of " + ", ".join(TRUST_VARIABLES) + " is set)"
    return _named(settings)


@functools.lru_cache(maxsize=8)
def _context(settings: tuple[tuple[str, str], ...]) -> ssl.SSLContext:
    if not settings:
        return ssl.create_default_context()
    cafile = capath = None
    for name, value in settings:
        # requests accepts a directory in its two variables too (as ca_cert_dir)
        if name == "SSL_CERT_DIR" or os.path.isdir(value):
            capath = value
        else:
            cafile = value
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
    except OSError as err:  # a missing file; ssl.SSLError (an OSError) for one with no certificate
        reason = err.strerror if not isinstance(err, ssl.SSLError) and err.strerror else str(err)
        raise ConfigurationError(
            f"Cannot load the CA certificates of {_named(settings)}: {reason}.",
            hint="Point it at a PEM file of CA certificates (or, for SSL_CERT_DIR, a directory "
            f"prepared with `openssl rehash`), or unset it to use the system's CA store; see {HTTPS_DOCS}.",
        ) from err
    if capath and not cafile and not context.get_ca_certs() and not _has_hashed_names(capath):
        raise ConfigurationError(
            f"{_named(settings)}: the directory holds no hashed CA certificates (files named like 1a2b3c4d.0).",
            hint=f"Run `openssl rehash {capath}` (or c_rehash) after copying the PEM files there.",
        )
    return context


def _named(settings: tuple[tuple[str, str], ...]) -> str:
    return " and ".join(f"{name}={value}" for name, value in settings)


def _has_hashed_names(folders: str) -> bool:
    """Whether a CA directory (or an os.pathsep list of them, as OpenSSL takes) holds `openssl rehash` names."""
    for folder in folders.split(os.pathsep):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        if any(len(n) >= 10 and n[8] == "." and n[9:].isdigit() for n in names):
            return True
    return False


# --------------------------------------------------------------------------- failures


def find_certificate_error(err: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure in an exception's chain (httpx and huggingface_hub wrap it)."""
    return in_chain(err, ssl.SSLCertVerificationError)


def certificate_error(err: BaseException, url: str) -> CertificateError:
    """A certificate that failed verification, as ours: the host, what is wrong with it, what to set.

    `err` is the ssl.SSLCertVerificationError or an exception wrapping it; `url` where we connected.
    Raise the result `from err`. Not retryable: the next attempt meets the same certificate.
    """
    cause = find_certificate_error(err) or err
    code = getattr(cause, "verify_code", None)
    detail = getattr(cause, "verify_message", None) or str(cause)
    host = _host(url)
    variables = ", ".join(TRUST_VARIABLES)
    if code in _EXPIRED:
        return CertificateError(
            f"Cannot connect securely to {host}: {_EXPIRED[code]} ({detail}).",
            hint="Check this machine's clock (`date -u`); if it is right, the server's certificate needs "
            "renewing: tell its operator, or use another endpoint. A CA in "
            f"{variables} does not change this.",
            host=host,
            reason="expired" if code == 10 else "not_yet_valid",
        )
    if code in _WRONG_NAME:
        return CertificateError(
            f"Cannot connect securely to {host}: its certificate has the wrong name (hostname mismatch: {detail}).",
            hint="Check the host in the URL ({0}, HF_ENDPOINT, `endpoints:` or `url:` in the registry, "
            "or where the server redirected): use the name the certificate was issued for. A CA in "
            f"{variables} does not change this.",
            steps=(option("endpoint"),),
            host=host,
            reason="wrong_name",
        )
    return CertificateError(
        f"Cannot connect securely to {host}: certificate not trusted ({detail}); "
        f"checked against {describe_trust()}.",
        hint="If a company proxy or a private CA signs it, point REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE, "
        "SSL_CERT_FILE, SSL_CERT_DIR) at that CA's PEM file, e.g. "
        f"`REQUESTS_CA_BUNDLE=/path/to/company-ca.pem modelctl ...`; see {HTTPS_DOCS}. "
        "modelctl never skips the check.",
        host=host,
        reason="not_trusted",
    )


def _host(url: str) -> str:
    """host[:port] of a URL, or the argument itself if it is no URL."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or url
    return f"{host}:{port}" if port and port != 443 else host


# --------------------------------------------------------------------------- connections


def proxy_auth_error(proxy: str, target: str, *, has_credentials: bool) -> DownloadError:
    """A proxy that answered CONNECT with 407: credentials missing or wrong. Not worth retrying."""
    given = ", and rejected the ones given" if has_credentials else ""
    return DownloadError(
        f"The proxy {proxy} refused to open a tunnel to {target}: it wants credentials "
        f"(HTTP 407 Proxy Authentication Required){given}.",
        hint="Put the proxy's user and password in its URL: HTTPS_PROXY=http://USER:PASSWORD@host:port "
        "(percent-encode special characters), or add the host to NO_PROXY if it needs no proxy.",
    )


class VerifiedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPSConnection whose certificate and proxy-tunnel failures come out as ModelctlErrors.

    Both happen in `connect()`, which http.client calls from `request()`: a caller that retries
    OSError (every transfer does) would otherwise retry a certificate that will not change, or
    proxy credentials that will not become right.
    """

    _tunnel_to: tuple[str, int | None] | None = None
    _has_proxy_credentials = False

    def set_tunnel(
        self, host: str, port: int | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        self._tunnel_to = (host, port)
        self._has_proxy_credentials = any(k.lower() == "proxy-authorization" for k in headers or {})
        super().set_tunnel(host, port, dict(headers or {}))

    def connect(self) -> None:
        try:
            super().connect()
        except ssl.SSLCertVerificationError as err:
            raise certificate_error(err, f"https://{self._target()}") from err
        except OSError as err:
            # http.client's only sign of a refused CONNECT is this message (3.10 to 3.13)
            if self._tunnel_to and str(err).startswith("Tunnel connection failed: 407"):
                proxy = f"{self.host}:{self.port}"
                raise proxy_auth_error(
                    proxy, self._target(), has_credentials=self._has_proxy_credentials
                ) from err
            raise

    def _target(self) -> str:
        """host[:port] the connection is for: the tunnel's far end when going through a proxy."""
        host, port = self._tunnel_to or (self.host, self.port)
        return host if port in (None, 443) else f"{host}:{port}"
