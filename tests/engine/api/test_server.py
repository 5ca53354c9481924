"""The HTTP server on a real Unix socket, spoken to with raw bytes where framing matters."""

from __future__ import annotations

import io
import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.api.server import Router, UnixAPIServer
from herd.api.server import _HTTPSRequestHandler as HTTPSRequestHandler
from herd.errors import ConflictError, HerdError
from tests.engine.harness import ThreadMaster


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UnixAPIServer]:
    r = Router()
    r.add("GET", "/v1/echo", lambda query, body: {"query": query}, query=("a",))
    r.add("POST", "/v1/echo", lambda query, body: {"body": body}, body=True)
    r.add("GET", r"/v1/item/(\d+)", lambda raw, query, body: {"id": int(raw)})

    def boom(query: dict[str, str], body: Any) -> Any:
        raise RuntimeError("kaboom")

    def leak(query: dict[str, str], body: Any) -> Any:
        raise ValueError(f"cannot parse {KEY}")

    def conflict(query: dict[str, str], body: Any) -> Any:
        raise ConflictError("busy", thing="x")

    r.add("GET", "/v1/boom", boom)
    r.add("GET", "/v1/leak", leak)
    r.add("GET", "/v1/conflict", conflict)
    srv = UnixAPIServer(tmp_path / "api.sock", r)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def exchange(path: Path, raw: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Send raw request bytes, half-close, and parse every response that comes back."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
        out.append((status, json.loads(rest[:length])))
        data = rest[length:]
    return out


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def post(path: str, body: bytes, length: str | None = None) -> bytes:
    size = str(len(body)) if length is None else length
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode() + body


def test_socket_is_owner_only(server: UnixAPIServer) -> None:
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600


def test_keep_alive_serves_several_requests_on_one_connection(server: UnixAPIServer) -> None:
    answers = exchange(server.path, get("/v1/echo?a=1") + post("/v1/echo", b'{"k": [1]}'))
    assert answers == [(200, {"query": {"a": "1"}}), (200, {"body": {"k": [1]}})]


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (get("/v1/echo?b=2"), 400, "b"),
        (get("/v1/item/7?x=1"), 400, "x"),
        (post("/v1/echo", b"{not json"), 400, "body"),
        (post("/v1/item/7", b"{}"), 400, "method"),
        (b"GET /v1/echo HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400, "body"),
        (get("/v1/echo?=1"), 400, "query"),
        # Found in review: a deeply nested body raised RecursionError, a 500.
        (post("/v1/echo", b"[" * 100000 + b"]" * 100000), 400, "body"),
        (post("/v1/echo", b'{"a": NaN}'), 400, "body"),
        (b"TRACE /v1/echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400, "method"),
        (b"PATCH /v1/echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400, "method"),
    ],
)
def test_bad_requests_name_the_field(
    server: UnixAPIServer, raw: bytes, status: int, field: str
) -> None:
    [(code, doc)] = exchange(server.path, raw)
    assert code == status
    assert doc["error"]["type"] == "ValidationError"
    assert doc["error"]["details"]["field"] == field
    assert doc["error"]["details"]["allowed"]


def test_a_malformed_request_line_gets_a_json_error(server: UnixAPIServer) -> None:
    """http.server's own refusals must not be HTML pages an API client cannot parse."""
    huge = b"X-Filler: " + b"x" * 70000
    [(code, doc)] = exchange(server.path, b"GET /v1/echo HTTP/1.1\r\n" + huge + b"\r\n\r\n")
    assert code == 431
    assert doc["error"]["details"]["status"] == 431


def test_unknown_path_is_404(server: UnixAPIServer) -> None:
    [(code, doc)] = exchange(server.path, get("/v2/nothing"))
    assert (code, doc["error"]["type"]) == (404, "NotFoundError")


def test_bad_content_length_closes_the_connection(server: UnixAPIServer) -> None:
    answers = exchange(server.path, post("/v1/echo", b"{}", length="-5") + get("/v1/echo"))
    assert len(answers) == 1
    assert answers[0][1]["error"]["details"]["field"] == "Content-Length"


def test_errors_keep_their_class_and_status(server: UnixAPIServer) -> None:
    [(code, doc)] = exchange(server.path, get("/v1/conflict"))
    assert code == 409
    err = HerdError.from_dict(doc["error"])
    assert isinstance(err, ConflictError)
    assert err.details == {"thing": "x"}


def test_a_handler_bug_is_a_500_and_the_server_lives_on(server: UnixAPIServer) -> None:
    answers = exchange(server.path, get("/v1/boom") + get("/v1/item/3"))
    assert answers[0][0] == 500
    assert "kaboom" in answers[0][1]["error"]["message"]
    assert answers[1] == (200, {"id": 3})


KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def test_a_handler_bug_quoting_a_key_shows_it_neither_to_the_caller_nor_in_the_log(
    server: UnixAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR", logger="herd.api.server"):
        ((status, doc),) = exchange(server.path, get("/v1/leak"))
    assert status == 500 and "cannot parse" in doc["error"]["message"]
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in json.dumps(doc) + caplog.text
    assert "ValueError" in caplog.text


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    srv = UnixAPIServer(path, Router())
    srv.server_close()
    assert not path.exists()


def test_every_api_route_rejects_unknown_query_parameters(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    for path in ("/v1/info", "/v1/jobs", "/v1/queue", "/v1/locks", "/v1/query/nodes"):
        with pytest.raises(HerdError) as err:
            c.request("GET", path, query={"bogus": "1"})
        assert err.value.details["field"] == "bogus"


def test_a_nan_in_an_error_is_said_as_text(herd_master: ThreadMaster) -> None:
    """Found in review: ``timeout=nan`` was echoed as a bare NaN token (not JSON)."""
    err = herd_master.api.request  # the real client parses strictly
    with pytest.raises(HerdError) as exc:
        err("GET", "/v1/jobs/1/wait", query={"timeout": "nan"})
    assert exc.value.details["value"] == "nan"


class _Wire(io.RawIOBase):
    """The bytes a handler hands to the socket, one entry per write."""

    def __init__(self, writes: list[bytes]) -> None:
        self.writes = writes

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return len(data)


class _RecordingConnection:
    """Stands in for an accepted socket: reads ``request``, records what is written."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.writes: list[bytes] = []

    def makefile(self, mode: str, buffering: int = -1) -> Any:
        if "r" in mode:
            return io.BufferedReader(io.BytesIO(self.request))
        return io.BufferedWriter(_Wire(self.writes)) if buffering else _Wire(self.writes)

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def settimeout(self, timeout: float | None) -> None:
        pass


def test_an_answer_leaves_in_one_write(server: UnixAPIServer) -> None:
    """Head and body written apart meet Nagle and delayed ACKs over TCP: ~40 ms of stall
    on every small HTTPS answer (bench/bench_https_get.py)."""
    conn = _RecordingConnection(b"GET /v1/echo?a=1 HTTP/1.1\r\nConnection: close\r\n\r\n")
    server.RequestHandlerClass(conn, "unix", server)
    (answer,) = conn.writes
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == {"query": {"a": "1"}}


def test_https_connections_do_not_wait_for_delayed_acks() -> None:
    assert HTTPSRequestHandler.disable_nagle_algorithm is True
