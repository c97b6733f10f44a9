"""A small HTTP proxy on 127.0.0.1 for tests (CONNECT, and plain-HTTP absolute URLs): optional Basic
credentials, counted tunnels and requests.

`with ConnectProxy(user="u", password="p") as proxy:` then HTTPS_PROXY=proxy.url (or
proxy.url_with("u", "p")). It opens tunnels only to 127.0.0.1 / localhost (a test never reaches
past loopback), answers 407 with `Proxy-Authenticate: Basic` when credentials are required and
missing or wrong, and records every CONNECT: its target, whether it was allowed, and what
Proxy-Authorization it carried.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import socketserver
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost"}


@dataclass
class Tunnel:
    target: str  # host:port of the CONNECT line
    status: int  # what the proxy answered: 200, 407, 403 or 502
    authorization: str | None


class ConnectProxy:
    def __init__(self, *, user: str | None = None, password: str | None = None) -> None:
        self.user = user
        self.password = password
        self.connects: list[Tunnel] = []
        self._lock = threading.Lock()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url_with(self, user: str, password: str) -> str:
        from urllib.parse import quote

        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    @property
    def tunnels(self) -> list[Tunnel]:
        """The CONNECTs that were let through."""
        return [t for t in self.connects if t.status == 200]

    def is_allowed(self, authorization: str | None) -> bool:
        if self.user is None:
            return True
        expected = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
        return authorization is not None and authorization.strip() == f"Basic {expected}"

    def record(self, tunnel: Tunnel) -> None:
        with self._lock:
            self.connects.append(tunnel)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(proxy: ConnectProxy) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        rbufsize = 0  # unbuffered: no byte after the CONNECT head may hide in a buffer

        def handle(self) -> None:
            request_line = self.rfile.readline(8192).decode("latin-1").strip()
            headers: dict[str, str] = {}
            while (line := self.rfile.readline(8192).decode("latin-1")) not in ("\r\n", "\n", ""):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            method, _, rest = request_line.partition(" ")
            target = rest.split(" ")[0]
            auth = headers.get("proxy-authorization")
            if method.upper() != "CONNECT":
                self._forward(method, target, request_line, headers, auth)
                return
            host, _, port = target.rpartition(":")
            if self._refused(target, auth, host.strip("[]") in LOOPBACK and port.isdigit()):
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
            except OSError:
                proxy.record(Tunnel(target, 502, auth))
                self._answer(502, "Bad Gateway")
                return
            proxy.record(Tunnel(target, 200, auth))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            upstream.settimeout(None)
            self.connection.settimeout(None)
            back = threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True)
            back.start()
            _pipe(self.connection, upstream)
            back.join(timeout=30)
            upstream.close()

        def _forward(
            self, method: str, target: str, request_line: str, headers: dict[str, str], auth: str | None
        ) -> None:
            """A plain-HTTP proxy request (absolute URL): credentials checked, one request per connection."""
            parts = urlsplit(target)
            if self._refused(target, auth, parts.scheme == "http" and parts.hostname in LOOPBACK):
                return
            proxy.record(Tunnel(target, 200, auth))
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            head = f"{method} {path} {request_line.rsplit(' ', 1)[-1]}\r\n"
            for name, value in headers.items():
                if name not in ("proxy-authorization", "proxy-connection", "connection"):
                    head += f"{name}: {value}\r\n"
            head += "connection: close\r\n\r\n"
            with socket.create_connection(("127.0.0.1", parts.port or 80), timeout=30) as upstream:
                upstream.sendall(head.encode("latin-1"))
                with contextlib.suppress(OSError):
                    while data := upstream.recv(65536):
                        self.connection.sendall(data)

        def _refused(self, target: str, auth: str | None, is_loopback: bool) -> bool:
            """Answer 403 beyond loopback (tests never leave it), 407 without the credentials."""
            if not is_loopback:
                proxy.record(Tunnel(target, 403, auth))
                self._answer(403, "Forbidden")
                return True
            if not proxy.is_allowed(auth):
                proxy.record(Tunnel(target, 407, auth))
                self._answer(
                    407, "Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="test"\r\n'
                )
                return True
            return False

        def _answer(self, status: int, reason: str, extra: str = "") -> None:
            self.wfile.write(
                f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            self.wfile.flush()

    return Handler


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until source ends, then end sink's sending side (half-close carries through)."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
