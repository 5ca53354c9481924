"""Client of a master's API: what the CLI, the benches and the tests use, and what a move
between clusters uses to reach the other cluster's master. It sits below every layer
that uses it (it knows only errors and the job states), so an op can hold one without
reaching up into the API server.

The local root-only socket is the default; with an ``https://`` URL the same calls go
over TLS to a master elsewhere, authenticated by an API token or a user and password and
verifying the master against the cluster CA. One kept-alive connection per client object
(not thread-safe: give each thread its own). Errors come back as the same HerdError
subclasses the master raised.

Every CLI command that reaches a master imports this module, so what only HTTPS needs
(``ssl``, ``http.client`` and the ``email`` parser behind it, ``base64``) is imported only
when an ``https://`` URL is used: those imports alone cost more than the rest of a
command's start-up.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import quote, urlencode, urlsplit

from herd.errors import HerdError, MasterUnreachableError, ValidationError
from herd.jobs.status import FINAL

if TYPE_CHECKING:
    import ssl

DEFAULT_SOCKET = "/run/herd/master.sock"

#: Longest status or header line read from the master, as http.client allows.
_MAX_LINE = 65536
_MAX_HEADERS = 100


def default_socket() -> str:
    return os.environ.get("HERD_SOCKET", DEFAULT_SOCKET)


def https_client_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify the master (host name included) against ``ca_file``, normally the cluster CA
    from ``herd cluster ca``; without one, the system store, which will not know it."""
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _Transport(Protocol):
    """One kept-alive HTTP/1.1 connection, opened on first use and after a close."""

    timeout: float
    #: What a dead or garbled connection raises: worth a reconnect, never a wrong answer.
    lost: tuple[type[Exception], ...]

    @property
    def connected(self) -> bool: ...

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> None: ...

    def receive(self) -> tuple[int, bytes]:
        """The answer's status and body."""
        ...

    def close(self) -> None: ...


class _UnixTransport:
    """HTTP/1.1 on the master's Unix socket, written out rather than taken from http.client.

    It needs only what the master's server speaks (api/server.py): every answer has a
    Content-Length, and ``Connection: close`` announces the end of a connection. Anything
    else is treated as a lost connection, so the caller's reconnect rules apply to it.
    """

    lost: tuple[type[Exception], ...] = (ConnectionError,)

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> None:
        sock = self._sock or self._connect()
        lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body or b'')}")
        sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b""))

    def receive(self) -> tuple[int, bytes]:
        if self._reader is None:
            raise ConnectionResetError("no request was sent on this connection")
        version, status = self._status_line(self._reader)
        headers = self._headers(self._reader)
        length = headers.get("content-length", "")
        if not (length.isascii() and length.isdigit()):
            raise ConnectionAbortedError(f"an answer without a byte count: {headers}")
        payload = self._reader.read(int(length))
        if len(payload) != int(length):
            raise ConnectionResetError(f"the answer ended after {len(payload)} of {length} bytes")
        if version != "HTTP/1.1" or headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._reader = None

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self._sock, self._reader = sock, sock.makefile("rb")
        return sock

    @staticmethod
    def _line(reader: BinaryIO) -> str:
        line = reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise ConnectionAbortedError(f"an answer line longer than {_MAX_LINE} bytes")
        return line.decode("latin-1")

    @classmethod
    def _status_line(cls, reader: BinaryIO) -> tuple[str, int]:
        line = cls._line(reader)
        if not line:
            raise ConnectionResetError("the master closed the connection without an answer")
        version, _, rest = line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ConnectionAbortedError(f"not an HTTP status line: {line.strip()!r}")
        return version, int(code)

    @classmethod
    def _headers(cls, reader: BinaryIO) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = cls._line(reader)
            if not line:
                raise ConnectionResetError("the answer ended inside its headers")
            if line in ("\r\n", "\n"):
                return headers
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        raise ConnectionAbortedError(f"an answer with more than {_MAX_HEADERS} headers")


class _HTTPSTransport:
    """http.client over TLS to a remote master; TLS failures say what to do about them."""

    def __init__(
        self, endpoint: str, host: str, port: int, timeout: float, context: ssl.SSLContext
    ) -> None:
        import http.client

        self.timeout = timeout
        self.lost: tuple[type[Exception], ...] = (ConnectionError, http.client.HTTPException)
        self._endpoint = endpoint
        self._conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)

    @property
    def connected(self) -> bool:
        return self._conn.sock is not None

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> None:
        with self._tls_errors():
            self._conn.request(method, path, body=body, headers=headers)

    def receive(self) -> tuple[int, bytes]:
        with self._tls_errors():
            resp = self._conn.getresponse()
            return resp.status, resp.read()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tls_errors(self) -> Iterator[None]:
        import ssl

        try:
            yield
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise MasterUnreachableError(
                f"the master at {self._endpoint} is not trusted: {exc.verify_message}; "
                "pass the cluster CA ('herd cluster ca' on the master) as --api-ca "
                "or HERD_API_CA",
                socket=self._endpoint,
            ) from exc
        except ssl.SSLError as exc:
            self.close()
            raise MasterUnreachableError(
                f"TLS with the master at {self._endpoint} failed: {exc}", socket=self._endpoint
            ) from exc


class Client:
    """One master, over its socket (default) or ``api_url``.

    An explicit ``socket_path`` wins; otherwise ``api_url`` or env ``HERD_API_URL`` selects
    HTTPS, with credentials and CA from the arguments or env ``HERD_API_TOKEN`` (or
    ``HERD_API_USER``/``HERD_API_PASSWORD``) and ``HERD_API_CA``, the same variables the
    Ansible collection and the AWX credential type use.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        timeout: float = 90.0,
        *,
        api_url: str | None = None,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        env = os.environ.get
        url = None if socket_path else api_url or env("HERD_API_URL") or None
        self._headers: dict[str, str] = {}
        self.socket_path: str | None = None
        self._conn: _Transport
        if url is None:
            self.socket_path = socket_path or default_socket()
            self.endpoint = self.socket_path
            self._conn = _UnixTransport(self.socket_path, timeout)
            return
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
            raise ValidationError(
                "api_url", url, "https://HOST:PORT (credentials never travel in clear text)"
            )
        self.endpoint = url
        token = token or env("HERD_API_TOKEN")
        user = user or env("HERD_API_USER")
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif user:
            import base64

            pair = f"{user}:{password or env('HERD_API_PASSWORD') or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._conn = _HTTPSTransport(
            url,
            parts.hostname,
            parts.port or 443,
            timeout,
            https_client_context(ca_file or env("HERD_API_CA")),
        )

    @property
    def remote(self) -> bool:
        return self.socket_path is None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            reused = self._conn.connected
            sent = False
            try:
                self._conn.send(method, path, data, headers)
                sent = True
                status, payload = self._conn.receive()
                break
            except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
                self._conn.close()
                hint = (
                    "" if self.remote else "; start one with 'herd master' or 'herd cluster init'"
                )
                raise MasterUnreachableError(
                    f"no herd master answers at {self.endpoint} ({exc.strerror}){hint}",
                    socket=self.endpoint,
                ) from exc
            except TimeoutError as exc:
                self._conn.close()
                raise MasterUnreachableError(
                    f"the master at {self.endpoint} did not answer {method} {path} "
                    f"within {self._conn.timeout:g} s",
                    socket=self.endpoint,
                ) from exc
            except self._conn.lost as exc:
                self._conn.close()
                # Only a kept-alive connection that died before the master could act on
                # the request is worth one fresh try; a lost answer to a POST is not,
                # because the job may already exist.
                if attempt == 2 or not reused or (sent and method == "POST"):
                    raise MasterUnreachableError(
                        f"lost the connection to the master at {self.endpoint} "
                        f"during {method} {path}: {exc!r}",
                        socket=self.endpoint,
                    ) from exc
        doc = json.loads(payload) if payload else None
        if status >= 400:
            err = (doc or {}).get("error") if isinstance(doc, dict) else None
            raise HerdError.from_dict(err or {"message": f"HTTP {status}"})
        return doc

    def _object(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A request whose answer the API documents as a JSON object."""
        doc: dict[str, Any] = self.request(method, path, body, query)
        return doc

    def _items(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """A request answered with ``{"items": [object, ...]}``: the items."""
        items: list[dict[str, Any]] = self.request(method, path, body, query)["items"]
        return items

    # ---- jobs ----------------------------------------------------------------------------

    def submit(
        self,
        ops: list[dict[str, Any]],
        priority: int | None = None,
        reason: list[list[Any]] | None = None,
        depends: list[list[Any]] | None = None,
    ) -> int:
        body: dict[str, Any] = {"ops": ops}
        if priority is not None:
            body["priority"] = priority
        if reason:
            body["reason"] = reason
        if depends:
            body["depends"] = depends
        return int(self.request("POST", "/v1/jobs", body)["job_id"])

    def submit_many(self, jobs: list[dict[str, Any]]) -> list[int]:
        return [int(i) for i in self.request("POST", "/v1/jobs", {"jobs": jobs})["job_ids"]]

    def job(self, job_id: int, log_since: int = 0) -> dict[str, Any]:
        return self._object("GET", f"/v1/jobs/{job_id}", query={"log_since": log_since})

    def jobs(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self._items("GET", "/v1/jobs", query={"status": status, "limit": limit})

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._object("POST", f"/v1/jobs/{job_id}/cancel")

    def wait(
        self,
        job_id: int,
        timeout: float | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 10.0,
    ) -> dict[str, Any]:
        """Long-poll until the job is final; feeds each new log entry to ``on_log``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        since, status = 0, None
        while True:
            left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            doc = self._object(
                "GET",
                f"/v1/jobs/{job_id}/wait",
                query={"log_since": since, "timeout": f"{left:.3f}", "status": status},
            )
            for entry in doc.get("log", []):
                since = max(since, entry["serial"])
                if on_log:
                    on_log(entry)
            status = doc["status"]
            if status in FINAL:
                return doc
            if deadline is not None and time.monotonic() >= deadline:
                raise HerdError(
                    f"job {job_id} still {status} after {timeout:g} s", job_id=job_id, status=status
                )

    def run(
        self,
        ops: list[dict[str, Any]],
        timeout: float | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Submit, wait, and return the last op's result, raising the job's error."""
        job_id = self.submit(ops, **kwargs)
        doc = self.wait(job_id, timeout, on_log)
        if doc["status"] != "success":
            raise HerdError.from_dict(
                doc.get("error") or {"message": f"job {job_id} ended as {doc['status']}"}
            )
        return doc["ops"][-1]["result"]

    # ---- state ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self._object("GET", "/v1/info")

    def query(self, kind: str, names: list[str] | None = None) -> Any:
        if kind == "cluster":
            return self.request("GET", "/v1/query/cluster")
        query = {"names": ",".join(names)} if names else None
        return self.request("GET", f"/v1/query/{quote(kind)}", query=query)["items"]

    def dump(self, with_secrets: bool = False) -> dict[str, Any]:
        """The whole state; secrets redacted unless ``with_secrets`` (root, local socket)."""
        return self._object("GET", "/v1/config", query={"secrets": "1"} if with_secrets else None)

    def queue(self) -> dict[str, Any]:
        return self._object("GET", "/v1/queue")

    def set_queue(self, max_running: int) -> dict[str, Any]:
        return self._object("PUT", "/v1/queue", {"max_running": max_running})

    def locks(self) -> list[dict[str, Any]]:
        return self._items("GET", "/v1/locks")

    def ops(self) -> list[dict[str, Any]]:
        return self._items("GET", "/v1/ops")

    # ---- API credentials (root on the master, over the socket) ------------------------

    def credentials(self, kind: str) -> list[dict[str, Any]]:
        """Names and flags of ``tokens`` or ``users``; never their secrets."""
        return self._items("GET", f"/v1/auth/{quote(kind)}")

    def create_token(self, name: str, read_only: bool = False) -> str:
        """A new API token; the master keeps only its hash, so this is the one chance to
        see it."""
        doc = self.request("POST", "/v1/auth/tokens", {"name": name, "read_only": read_only})
        return str(doc["token"])

    def add_user(self, name: str, password: str, read_only: bool = False) -> None:
        body = {"name": name, "password": password, "read_only": read_only}
        self.request("POST", "/v1/auth/users", body)

    def remove_credential(self, kind: str, name: str) -> None:
        """Revoke a token or remove a user."""
        self.request("DELETE", f"/v1/auth/{quote(kind)}/{quote(name, safe='')}")
