"""The master's JSON API over HTTP/1.1, on a root-only Unix socket and over HTTPS.

HTTP rather than a home-made framing so that the same handlers serve local root (the
socket, where the file mode is the authentication) and remote clients such as AWX
execution environments (HTTPS, a token or a password on every request), and so curl can
talk to it. Connections are kept alive: a client that submits and polls pays no reconnect.
"""

from __future__ import annotations

import abc
import contextlib
import io
import json
import logging
import os
import re
import socket
import socketserver
import ssl
import stat
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from herd.auth import FailureLimiter, Principal
from herd.crypto.tls import TLS12_SUITES
from herd.errors import (
    AuthenticationError,
    ForbiddenError,
    HerdError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from herd.redact import cut_key_material

log = logging.getLogger(__name__)

Handler = Callable[..., Any]
MAX_BODY = 64 * 1024 * 1024
#: Over HTTPS: what reaches the master there are op lists, never whole-state restores
#: (socket only), so a caller gets far less room to make the master buffer and parse.
MAX_REMOTE_BODY = 4 * 1024 * 1024
BODY_METHODS = frozenset({"POST", "PUT"})
#: A new HTTPS connection gets this long, in all, for its TLS handshake and the head of its
#: first request (request line and headers): a client that sends nothing, or drips a byte
#: at a time (slowloris), is cut off before it has authenticated, so it frees its thread.
PREAUTH_TIMEOUT = 10.0
#: An idle kept-alive HTTPS connection is closed after this; longer than any long-poll.
IDLE_TIMEOUT = 120.0
#: HTTPS connections served at once (one thread each); more are closed as soon as accepted
#: rather than queued, so a flood of connections cannot grow the master without bound.
MAX_HTTPS_CONNECTIONS = 64
#: Of those, what one source address may hold, so no one address can fill them all.
MAX_CONNECTIONS_PER_ADDRESS = 16


@dataclass(frozen=True)
class Caller:
    """Who sent a request and how: handlers that care (job submission, credential
    management) decide with this what a remote caller may do that local root may."""

    transport: str
    principal: Principal | None = None
    address: str = "unix"

    @property
    def remote(self) -> bool:
        return self.transport == "https"


#: Root on the master, over the Unix socket: trusted by the socket's file mode.
LOCAL = Caller("unix")


class Authenticator(Protocol):
    """What checks an ``Authorization`` header: the API's credential store, or the RAPI
    listener's users file beside it."""

    def authenticate(self, authorization: str | None) -> Principal: ...


@dataclass(frozen=True)
class Route:
    """One endpoint and the request shape it accepts, checked before the handler runs so
    that a misspelt query parameter or a stray body is refused instead of ignored."""

    method: str
    pattern: re.Pattern[str]
    fn: Handler
    query: tuple[str, ...]
    body: bool
    caller: bool


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
        caller: bool = False,
    ) -> None:
        """``caller=True`` hands the handler a ``caller`` keyword (a :class:`Caller`)."""
        self._routes.append(Route(method, re.compile("^" + pattern + "$"), fn, query, body, caller))

    @property
    def routes(self) -> tuple[Route, ...]:
        """The table as registered; the OpenAPI document is generated from it."""
        return tuple(self._routes)

    def dispatch(
        self, method: str, path: str, query: dict[str, str], body: Any, caller: Caller = LOCAL
    ) -> Any:
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
                    key or "query",
                    query[key],
                    "query parameters " + ", ".join(route.query)
                    if route.query
                    else "no query parameters",
                )
            if body is not None and not route.body:
                raise ValidationError("body", body, f"no request body for {method} {path}")
            if route.caller:
                return route.fn(*match.groups(), query=query, body=body, caller=caller)
            return route.fn(*match.groups(), query=query, body=body)
        if allowed:
            raise ValidationError("method", method, " or ".join(allowed) + f" on {path}")
        raise NotFoundError(f"no such API path: {path}", path=path)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Buffered: an answer's head and body leave in one write when the request is done
    #: (http.server flushes then). Written apart, the body of every answer waited for the
    #: client's delayed ACK of the head (Nagle), ~40 ms a request (bench/bench_https_get.py).
    wbufsize = -1
    server: _APIServer

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
            caller = self.server.admit(self, method)
        except HerdError as exc:
            # Refused before the body was read: the connection cannot carry another request.
            self.close_connection = True
            self._send(exc.http_status, self.server.error_body(exc), self.server.challenge(exc))
            return
        self.admitted()
        try:
            body = self._read_body()
            result = self.server.router.dispatch(method, parts.path, query, body, caller)
            self._send(HTTPStatus.OK, result)
        except HerdError as exc:
            self._send(exc.http_status, self.server.error_body(exc))
        except Exception as exc:  # noqa: BLE001 - a handler bug is a 500, logged scrubbed
            # No job to scrub against here: at least no key material quoted in the error
            # (a handler that failed on a dump, say) reaches the log or the caller.
            trace = cut_key_material(traceback.format_exc())
            log.error("API %s %s failed\n%s", method, parts.path, trace)
            message = cut_key_material(f"internal error: {exc!r}")
            self._send(500, self.server.error_body(HerdError(message)))

    def _read_body(self) -> Any:
        raw_length = self.headers.get("Content-Length") or "0"
        if "Transfer-Encoding" in self.headers or not raw_length.isdigit():
            # The body's end is unknown: the connection cannot carry another request.
            self.close_connection = True
            raise ValidationError(
                "Content-Length", raw_length, "a byte count (chunked bodies are not accepted)"
            )
        length = int(raw_length)
        if length and self.command not in self.server.body_methods:
            # Refused unread: parsing a body nobody reads would let a reader fill memory.
            self.close_connection = True
            raise ValidationError("body", f"{length} bytes", f"no body on {self.command}")
        limit = self.server.max_body
        if length > limit:
            self.close_connection = True
            raise ValidationError("body", f"{length} bytes", f"at most {limit} bytes")
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ValidationError(
                "body",
                raw[:80].decode(errors="replace"),
                f"a JSON document, nested at most a few hundred levels ({exc})",
            ) from None

    def _send(self, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        # Strict JSON out: a NaN that slipped in must not reach a client as ``NaN``.
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            # Said out loud, so a keep-alive client reconnects for its next request instead
            # of sending it down a connection that is about to close.
            self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server refuses by itself (a method with no handler, a malformed request
        line, oversized headers) is answered in the API's own JSON error shape, so a client
        never has to parse an HTML page; the connection's state is unknown, so it closes."""
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED and self.command:
            error: HerdError = ValidationError("method", self.command, "GET, POST, PUT or DELETE")
        else:
            error = HerdError(message or HTTPStatus(code).phrase, status=code)
            error.http_status = code
        self._send(error.http_status, self.server.error_body(error))

    def admitted(self) -> None:
        """Called once a request has been let in (authenticated, where that applies)."""

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)


class _HTTPSRequestHandler(_RequestHandler):
    timeout = IDLE_TIMEOUT
    #: TCP_NODELAY (socketserver sets it in setup): the first answer on a connection would
    #: otherwise wait for the client to ACK the TLS session tickets sent after the handshake.
    disable_nagle_algorithm = True
    server: HTTPSAPIServer

    def setup(self) -> None:
        """Handshake here, in the connection's own thread, not in the accept loop, so one
        slow or silent client cannot hold up everybody else's connections.

        Until a request is let in, every read shares one deadline (``preauth_timeout``
        from the accept); a per-read timeout alone would let a client that sends a byte
        now and then keep its connection, and its thread, for ever.
        """
        super().setup()
        self.deadline: float | None = time.monotonic() + self.server.preauth_timeout
        self.connection.settimeout(self.read_timeout())
        self.connection.do_handshake()
        self.rfile = io.BufferedReader(_DeadlineReader(self))

    def read_timeout(self) -> float:
        """The timeout for the next read: what is left before the deadline, or the idle
        timeout once a request has been let in; past the deadline the read times out."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no authenticated request before the deadline")
        return left

    def admitted(self) -> None:
        self.deadline = None

    def address_string(self) -> str:
        return str(self.client_address[0])


class _DeadlineReader(io.RawIOBase):
    """The TLS connection as a raw stream whose every read is bounded by the handler's
    :meth:`~_HTTPSRequestHandler.read_timeout`."""

    def __init__(self, handler: _HTTPSRequestHandler) -> None:
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        conn = self._handler.connection
        conn.settimeout(self._handler.read_timeout())
        return int(conn.recv_into(buffer))


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python would take them and later serve
    them back as tokens strict clients cannot parse."""
    raise ValueError(f"{name} is not a JSON value")


def _challenge(exc: HerdError) -> tuple[tuple[str, str], ...]:
    """Headers telling an HTTP client how to get in (RFC 9110 11.6.1) or when to retry."""
    if isinstance(exc, RateLimitedError):
        return (("Retry-After", str(exc.details["retry_after"])),)
    if isinstance(exc, AuthenticationError):
        return (
            ("WWW-Authenticate", 'Bearer realm="herd"'),
            ("WWW-Authenticate", 'Basic realm="herd", charset="UTF-8"'),
        )
    return ()


class _APIServer(socketserver.ThreadingMixIn, socketserver.BaseServer, metaclass=abc.ABCMeta):
    """What both listeners share: the router, admission, and ending kept-alive connections
    on close (their handler threads would otherwise go on answering for a master whose
    queue and databases are already closed)."""

    daemon_threads = True
    #: socketserver's default backlog of 5 makes the 6th client connecting at the same
    #: instant fail with EAGAIN (a Unix socket does not retry the way TCP SYNs do), which
    #: playbooks creating many instances side by side hit at once.
    request_queue_size = 128
    #: Connections served at once, in all and from one source address; ``None`` is no
    #: cap (the root-only socket needs none).
    max_connections: int | None = None
    max_connections_per_address: int | None = None
    #: The largest request body this listener reads.
    max_body = MAX_BODY
    #: Methods whose requests may carry a body (RAPI's job wait sends one on GET).
    body_methods = BODY_METHODS
    router: Router

    def _track(self, router: Router) -> None:
        self.router = router
        #: Each connection being served, with its source address.
        self._open: dict[socket.socket, str] = {}
        self._open_lock = threading.Lock()

    def error_body(self, exc: HerdError) -> Any:
        """How this listener's clients expect an error: Herd's shape, unless overridden."""
        return {"error": exc.to_dict()}

    def challenge(self, exc: HerdError) -> tuple[tuple[str, str], ...]:
        """Headers sent with a refused admission."""
        return _challenge(exc)

    @abc.abstractmethod
    def admit(self, handler: _RequestHandler, method: str) -> Caller:
        """Decide whether a request may proceed and who made it; raise to refuse it."""

    def process_request(self, request: Any, client_address: Any) -> None:
        source = str(client_address[0]) if isinstance(client_address, tuple) else "unix"
        with self._open_lock:
            full = self._full(source)
            if full is None:
                self._open[request] = source
        if full is not None:
            log.warning("refused a connection from %s: %s", source, full)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _full(self, source: str) -> str | None:
        """Why a new connection from ``source`` is refused, or None; the lock is held."""
        if self.max_connections is not None and len(self._open) >= self.max_connections:
            return f"{len(self._open)} connections open"
        cap = self.max_connections_per_address
        mine = sum(1 for open_from in self._open.values() if open_from == source)
        if cap is not None and mine >= cap:
            return f"{mine} connections open from this address"
        return None

    def connections(self) -> int:
        """Connections being served now (each holds a thread)."""
        with self._open_lock:
            return len(self._open)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def _close_open(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)


class UnixAPIServer(_APIServer, socketserver.UnixStreamServer):
    """Threaded HTTP server on a Unix socket that only root (the owner) may open."""

    def __init__(self, path: str | Path, router: Router) -> None:
        self._track(router)
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

    def admit(self, handler: _RequestHandler, method: str) -> Caller:
        return LOCAL

    def server_close(self) -> None:
        super().server_close()
        self.path.unlink(missing_ok=True)
        self._close_open()


class HTTPSAPIServer(_APIServer, socketserver.TCPServer):
    """The same API over TLS for remote clients; every request must authenticate.

    Credentials are checked before the body is read, read-only principals may only GET,
    and an address that keeps failing is refused for a while (``limiter``). At most
    ``max_connections`` connections are served at once, ``max_connections_per_address``
    of them from one address, and one that has not sent an authenticated request within
    ``preauth_timeout`` is closed.
    """

    allow_reuse_address = True
    max_body = MAX_REMOTE_BODY
    max_connections = MAX_HTTPS_CONNECTIONS
    max_connections_per_address = MAX_CONNECTIONS_PER_ADDRESS
    preauth_timeout = PREAUTH_TIMEOUT

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        context: ssl.SSLContext,
        auth: Authenticator,
        limiter: FailureLimiter | None = None,
    ) -> None:
        self._track(router)
        self.context = context
        self.auth = auth
        self.limiter = limiter or FailureLimiter()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _HTTPSRequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def admit(self, handler: _RequestHandler, method: str) -> Caller:
        address = str(handler.client_address[0])
        principal = self._authenticate(address, handler.headers.get("Authorization"))
        if principal.read_only and method != "GET":
            raise ForbiddenError(
                f"{principal.describe()} is read-only: only GET requests are allowed",
                principal=principal.name,
                method=method,
            )
        return Caller("https", principal, address)

    def _authenticate(self, address: str, header: str | None) -> Principal:
        """Every attempt that carries credentials holds one of its address's failure
        slots while it is checked, so parallel guesses beyond the budget are refused before
        any of them runs scrypt. A request without credentials costs nothing to refuse."""
        if not header:
            return self.auth.authenticate(header)
        slot = self.limiter.reserve(address)
        try:
            principal = self.auth.authenticate(header)
        except RateLimitedError:
            self.limiter.release(address, slot)  # never checked: not a failure
            raise
        self.limiter.release(address, slot)
        return principal

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Failed handshakes and dropped connections are the network's normal noise."""
        log.debug("https connection from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self._close_open()


def https_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Server side TLS 1.2+ with forward-secret AEAD suites only (TLS 1.3 suites all are)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(":".join(TLS12_SUITES))
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


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
