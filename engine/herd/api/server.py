"""The master's JSON API over HTTP/1.1, on a root-only Unix socket.

HTTP rather than a home-made framing so that the same handlers can later be served over
HTTPS to remote clients (AWX execution environments) and so curl can talk to it.
Connections are kept alive: a client that submits and polls pays no reconnect.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from herd.errors import HerdError, NotFoundError, ValidationError

log = logging.getLogger(__name__)

Handler = Callable[..., Any]
MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    """One endpoint and the request shape it accepts, checked before the handler runs so
    that a misspelt query parameter or a stray body is refused instead of ignored."""

    method: str
    pattern: re.Pattern[str]
    fn: Handler
    query: tuple[str, ...]
    body: bool


class Router:
    """Maps (method, path pattern) to a function taking path groups, query and body."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(
        self,
        method: str,
        pattern: str,
        fn: Handler,
        query: tuple[str, ...] = (),
        body: bool = False,
    ) -> None:
        self._routes.append(Route(method, re.compile("^" + pattern + "$"), fn, query, body))

    def dispatch(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        allowed = []
        for route in self._routes:
            match = route.pattern.match(path)
            if not match:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            for key in sorted(set(query) - set(route.query)):
                raise ValidationError(
                    key,
                    query[key],
                    "query parameters " + ", ".join(route.query)
                    if route.query
                    else "no query parameters",
                )
            if body is not None and not route.body:
                raise ValidationError("body", body, f"no request body for {method} {path}")
            return route.fn(*match.groups(), query=query, body=body)
        if allowed:
            raise ValidationError("method", method, " or ".join(allowed) + f" on {path}")
        raise NotFoundError(f"no such API path: {path}", path=path)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UnixAPIServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = self._read_body()
            result = self.server.router.dispatch(method, parts.path, query, body)
            self._send(HTTPStatus.OK, result)
        except HerdError as exc:
            self._send(exc.http_status, {"error": exc.to_dict()})
        except Exception as exc:
            log.exception("API %s %s failed", method, self.path)
            self._send(500, {"error": HerdError(f"internal error: {exc!r}").to_dict()})

    def _read_body(self) -> Any:
        raw_length = self.headers.get("Content-Length") or "0"
        if "Transfer-Encoding" in self.headers or not raw_length.isdigit():
            # The body's end is unknown: the connection cannot carry another request.
            self.close_connection = True
            raise ValidationError(
                "Content-Length", raw_length, "a byte count (chunked bodies are not accepted)"
            )
        length = int(raw_length)
        if length > MAX_BODY:
            self.close_connection = True
            raise ValidationError("body", f"{length} bytes", f"at most {MAX_BODY} bytes")
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValidationError(
                "body", raw[:80].decode(errors="replace"), f"a JSON document ({exc})"
            ) from None

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)


class UnixAPIServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threaded HTTP server on a Unix socket that only root (the owner) may open."""

    daemon_threads = True

    def __init__(self, path: str | Path, router: Router) -> None:
        self.router = router
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            _refuse_if_live(self.path)
            self.path.unlink()
        old = os.umask(0o077)
        try:
            super().__init__(str(self.path), _RequestHandler)
        finally:
            os.umask(old)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Also end kept-alive connections: their handler threads would otherwise go on
        answering for a master whose queue and databases are already closed."""
        super().server_close()
        self.path.unlink(missing_ok=True)
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)


def _refuse_if_live(path: Path) -> None:
    """Two masters on one state would corrupt it: refuse to steal a socket that answers."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return
    finally:
        probe.close()
    raise HerdError(f"another master is already listening on {path}", socket=str(path))
