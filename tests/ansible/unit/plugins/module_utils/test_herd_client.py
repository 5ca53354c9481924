"""herd_client against the real master in a thread, through a recording relay.

The relay (a Unix-socket or TLS server in-process) logs the bytes the client sends and
passes each request to the real master's API on its Unix socket, so routes, answers and
errors are the engine's own. A fake answers only what a healthy master never does: a 5xx
with a plain-text body.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    CONNECTION_ARGSPEC,
    HerdApiError,
    HerdClient,
    HerdJobFailed,
    HerdJobTimeout,
    not_found,
    validation_error,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from herd import __version__
from tests.engine.api.https_master import seed_cluster
from tests.engine.harness import PATIENCE, ThreadMaster, start_thread_master

#: What a master in trouble answers; a healthy master never sends a plain-text 5xx.
BROKEN = "/v1/broken"


class Relay:
    """A log of every request the client made, forwarded to the real master."""

    def __init__(self, master: ThreadMaster) -> None:
        self.master = master
        self.requests: list[dict[str, Any]] = []

    def forward(self, method: str, target: str, raw: bytes) -> tuple[int, bytes]:
        if urlsplit(target).path == BROKEN:
            return 500, b"plain text failure"
        conn = _MasterConnection(str(self.master.socket))
        try:
            headers = {"Content-Type": "application/json"} if raw else {}
            conn.request(method, target, body=raw or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


class _MasterConnection(http.client.HTTPConnection):
    """HTTP over the master's Unix socket (the relay's upstream)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=PATIENCE * 2)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _handler(relay: Relay) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            relay.requests.append(
                {
                    "method": self.command,
                    "path": parts.path,
                    "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                    "headers": dict(self.headers),
                    "body": json.loads(raw) if raw else None,
                }
            )
            status, data = relay.forward(self.command, self.path, raw)
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Keep pytest output clean."""

    return Handler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        sock, _ = super().get_request()
        return sock, ("local", 0)


class _TLSHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def _serve(server: socketserver.BaseServer) -> Iterator[None]:
    # A short poll interval keeps each test's shutdown quick.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ThreadMaster]:
    """A real master with cluster c1 (nodes m1 and n2) in its store."""
    seed_cluster(tmp_path / "state", "c1")
    master = start_thread_master(tmp_path)
    yield master
    master.stop()


@pytest.fixture
def relay(running: ThreadMaster) -> Relay:
    return Relay(running)


@pytest.fixture
def unix_client(tmp_path: Path, relay: Relay) -> Iterator[HerdClient]:
    path = str(tmp_path / "relay.sock")
    server = _UnixHTTPServer(path, _handler(relay))
    yield from (HerdClient(socket_path=path) for _ in _serve(server))


def test_submit_posts_ops_reason_and_priority_as_json(
    unix_client: HerdClient, relay: Relay
) -> None:
    ops = [{"op": "debug.delay"}]
    reason = [["ansible:herd.cluster.node", "add n2", 1700000000.0]]
    job_id = unix_client.submit(ops, reason)
    assert job_id == 1
    sent = relay.requests[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/v1/jobs")
    assert sent["body"] == {"ops": ops, "priority": 0, "reason": reason}
    assert sent["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in sent["headers"]
    assert unix_client.job(job_id)["ops"][0]["op"] == "debug.delay"


def test_wait_reports_each_log_entry_once_and_returns_final_job(
    unix_client: HerdClient, relay: Relay
) -> None:
    job_id = unix_client.submit([{"op": "debug.delay", "log_messages": 3}], [])
    seen: list[int] = []
    job = unix_client.wait(job_id, timeout=PATIENCE * 2, on_log=lambda e: seen.append(e["serial"]))
    assert job["status"] == "success"
    assert seen == sorted(set(seen))
    log = unix_client.job(job_id)["log"]
    assert seen == [e["serial"] for e in log]
    assert [e["message"] for e in log][-3:] == [f"delay step {i}/3" for i in (1, 2, 3)]
    polls = [int(r["query"]["log_since"]) for r in relay.requests if r["path"].endswith("/wait")]
    # Each poll asks only for what it has not seen yet: from 0, then from the last serial.
    assert polls[0] == 0
    assert polls == sorted(polls)
    assert set(polls) <= {0, *seen}


def test_failed_job_raises_with_the_jobs_error(unix_client: HerdClient) -> None:
    job_id = unix_client.submit([{"op": "debug.delay", "fail": True}], [])
    with pytest.raises(HerdJobFailed) as caught:
        unix_client.wait(job_id, timeout=PATIENCE * 2)
    assert caught.value.kind == "HerdError"
    assert isinstance(caught.value.details, dict)
    assert f"job {job_id} error: debug.delay failed on request" in str(caught.value)
    assert caught.value.job["status"] == "error"


def test_wait_timeout_says_the_job_goes_on(unix_client: HerdClient) -> None:
    job_id = unix_client.submit([{"op": "debug.delay", "duration": PATIENCE * 4}], [])
    with pytest.raises(HerdJobTimeout, match="keeps running on the master"):
        unix_client.wait(job_id, timeout=0)


def test_api_error_body_becomes_typed_error(unix_client: HerdClient) -> None:
    with pytest.raises(HerdApiError) as caught:
        unix_client.request("GET", "/v1/jobs", params={"status": "x"})
    assert (caught.value.kind, caught.value.status) == ("ValidationError", 400)
    assert caught.value.details["field"] == "status"
    assert str(caught.value).startswith("ValidationError: invalid value 'x'")


def test_a_socket_refusal_names_no_http_status(unix_client: HerdClient) -> None:
    """The socket's status codes are transport, not news: the error's type says it all."""
    with pytest.raises(HerdApiError) as caught:
        unix_client.request("GET", "/v1/jobs", params={"status": "x"})
    assert "HTTP" not in str(caught.value)
    assert "http_status" not in caught.value.to_dict()


def test_non_json_error_is_still_reported(unix_client: HerdClient) -> None:
    with pytest.raises(HerdApiError) as caught:
        unix_client.request("GET", BROKEN)
    assert (caught.value.kind, caught.value.status) == ("HTTPError", 500)
    assert "plain text failure" in caught.value.message
    assert str(caught.value).endswith("(HTTP 500)")


def test_queries(unix_client: HerdClient, relay: Relay) -> None:
    assert unix_client.cluster()["name"] == "c1"
    n2 = unix_client.query_one("nodes", "n2")
    assert (n2 or {})["primary_ip"] == "192.0.2.2"
    assert relay.requests[-1]["query"] == {"names": "n2"}
    assert unix_client.query_one("nodes", "n9") is None
    assert unix_client.query_one("nodegroups", "x") is None
    assert unix_client.info()["version"] == __version__


def test_no_cluster_yet_is_none(tmp_path: Path) -> None:
    master = start_thread_master(tmp_path)
    try:
        assert HerdClient(socket_path=str(master.socket)).cluster() is None
    finally:
        master.stop()


def test_missing_socket_explains_itself(tmp_path: Path) -> None:
    client = HerdClient(socket_path=str(tmp_path / "nothing.sock"))
    with pytest.raises(HerdApiError, match="is `herd master` running") as caught:
        client.info()
    assert caught.value.kind == "ConnectionError"


def test_plain_http_url_is_refused() -> None:
    with pytest.raises(HerdApiError, match="https://"):
        HerdClient(api_url="http://master:5080", api_token="secret")


def test_module_refusals_are_shaped_like_the_masters_errors() -> None:
    refused = validation_error("disks", ["1G"], "disks never shrink")
    assert refused.to_dict() == {
        "type": "ValidationError",
        "message": "disks never shrink",
        "details": {"field": "disks", "value": ["1G"]},
    }
    missing = not_found("instance", "web1")
    assert str(missing) == "NotFoundError: instance web1 not found"
    assert missing.details == {"field": "name"}


def test_secrets_are_no_log_and_env_fallbacks_exist() -> None:
    assert CONNECTION_ARGSPEC["api_password"]["no_log"] is True
    assert CONNECTION_ARGSPEC["api_token"]["no_log"] is True
    assert CONNECTION_ARGSPEC["socket"]["fallback"][1] == ["HERD_SOCKET"]


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herd test master")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "master.crt", tmp_path / "master.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_url(tmp_path: Path, relay: Relay) -> Iterator[tuple[str, Path]]:
    cert_path, key_path = _certificate(tmp_path)
    server = _TLSHTTPServer(("127.0.0.1", 0), _handler(relay))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    yield from ((url, cert_path) for _ in _serve(server))


def test_https_with_cluster_ca_sends_bearer_token(
    https_url: tuple[str, Path], relay: Relay
) -> None:
    url, ca = https_url
    client = HerdClient(api_url=url, api_token="tok-123", ca_path=str(ca))
    assert client.info()["version"] == __version__
    assert relay.requests[-1]["headers"]["Authorization"] == "Bearer tok-123"


def test_https_basic_auth(https_url: tuple[str, Path], relay: Relay) -> None:
    url, ca = https_url
    client = HerdClient(api_url=url + "/", api_user="admin", api_password="pw", ca_path=str(ca))
    client.query("nodes")
    sent = relay.requests[-1]
    assert sent["path"] == "/v1/query/nodes"
    assert sent["headers"]["Authorization"] == "Basic " + base64.b64encode(b"admin:pw").decode()


def test_https_untrusted_certificate_is_refused_unless_validation_is_off(
    https_url: tuple[str, Path],
) -> None:
    url, _ca = https_url
    with pytest.raises(HerdApiError, match="set ca_path to the cluster CA"):
        HerdClient(api_url=url).info()
    assert HerdClient(api_url=url, validate_certs=False).info()["version"] == __version__


def test_an_https_refusal_keeps_its_status_in_the_error_only(
    https_url: tuple[str, Path],
) -> None:
    """Over HTTPS a proxy may answer too, so the code stays in the result, not the message."""
    url, ca = https_url
    client = HerdClient(api_url=url, api_token="tok-123", ca_path=str(ca))
    with pytest.raises(HerdApiError) as caught:
        client.request("GET", "/v1/jobs", params={"status": "x"})
    assert "HTTP" not in str(caught.value)
    assert caught.value.to_dict()["http_status"] == 400
