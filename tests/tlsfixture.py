"""Throwaway certificates for TLS tests, made with the openssl CLI (no Python dependency).

`make_pki(folder)` writes a private CA and server certificates signed by it:
  good       127.0.0.1 and localhost, valid now
  ip_only    127.0.0.1 only (a redirect to "localhost" meets a wrong name)
  expired    127.0.0.1 and localhost, valid for one day in 2020
  wrong_name wrong-name.invalid only (a connection to 127.0.0.1 meets a wrong name)
plus `ca_dir`, a directory holding the CA under its `openssl rehash` name (for SSL_CERT_DIR), and
`other_ca`, a second CA that signed nothing the servers use. `server_context(cert)` is what
`HubServer(tls=...)` takes.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (PEM): what REQUESTS_CA_BUNDLE & co. point at
    ca_dir: Path  # a hashed directory holding it: what SSL_CERT_DIR points at
    other_ca: Path  # a CA that signed none of the server certificates
    good: ServerCert
    ip_only: ServerCert
    expired: ServerCert
    wrong_name: ServerCert


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, text=True)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "3", "-subj", f"/CN=modelctl test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    return cert, key


def _sign(folder: Path, name: str, ca: tuple[Path, Path], names: str, start: str, end: str) -> ServerCert:
    """A server certificate for `names` (subjectAltName syntax) valid from start to end (YYYYMMDDHHMMSSZ).

    `openssl ca` rather than `x509 -req`: only it takes explicit dates in OpenSSL 3.0.
    """
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    db = folder / "ca-db"
    db.mkdir(exist_ok=True)
    (db / "index.txt").touch()
    config = folder / f"{name}.cnf"
    config.write_text(
        textwrap.dedent(f"""\
            [ca]
            default_ca = test_ca
            [test_ca]
            database = {db}/index.txt
            new_certs_dir = {db}
            rand_serial = yes
            default_md = sha256
            policy = any_name
            unique_subject = no
            x509_extensions = server
            [any_name]
            commonName = supplied
            [server]
            basicConstraints = critical,CA:FALSE
            keyUsage = critical,digitalSignature,keyEncipherment
            extendedKeyUsage = serverAuth
            subjectKeyIdentifier = hash
            authorityKeyIdentifier = keyid,issuer
            subjectAltName = {names}
            """)
    )
    _openssl(
        "ca", "-batch", "-notext", "-config", str(config), "-cert", str(ca[0]), "-keyfile", str(ca[1]),
        "-startdate", start, "-enddate", end, "-in", str(csr), "-out", str(cert),
        cwd=folder,
    )  # fmt: skip
    return ServerCert(cert, key)


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(folder, "ca")
    other_ca, _ = _make_ca(folder, "other-ca")
    now, later = "20200101000000Z", "20991231000000Z"
    both = "IP:127.0.0.1,DNS:localhost"
    ca_dir = folder / "ca-dir"
    ca_dir.mkdir()
    shutil.copy(ca[0], ca_dir / "ca.pem")
    _openssl("rehash", str(ca_dir), cwd=folder)
    return Pki(
        ca=ca[0],
        ca_dir=ca_dir,
        other_ca=other_ca,
        good=_sign(folder, "good", ca, both, now, later),
        ip_only=_sign(folder, "ip-only", ca, "IP:127.0.0.1", now, later),
        expired=_sign(folder, "expired", ca, both, "20200101000000Z", "20200102000000Z"),
        wrong_name=_sign(folder, "wrong-name", ca, "DNS:wrong-name.invalid", now, later),
    )


def server_context(cert: ServerCert) -> ssl.SSLContext:
    """A server-side context presenting `cert`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert, cert.key)
    return context
