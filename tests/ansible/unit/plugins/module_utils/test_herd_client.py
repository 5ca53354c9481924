"""herd_client against real HTTP servers: a Unix-socket server and a TLS server in-process.

The server is a scripted test double of the master's API (the real master is another
layer); what is under test is the client's own HTTP handling: the bytes it sends, how it
reads answers and errors, the long poll, and the transport failures it explains.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
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
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class FakeMaster:
    """API state plus a log of every request the client made."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[int, dict[str, Any]] = {}
        #: per job: the documents successive wait calls return (the last one repeats).
        self.script: dict[int, list[dict[str, Any]]] = {}
        self.nodes = [{"name": "n1", "primary_ip": "192.0.2.1"}]
        self.cluster: dict[str, Any] | None = None

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path == "/v1/info":
            return 200, {"version": "0.1.0", "cluster": None}
        if path == "/v1/jobs" and method == "POST":
            job_id = len(self.jobs) + 1
            self.jobs[job_id] = body
            return 200, {"job_id": job_id}
        if path.startswith("/v1/jobs/") and path.endswith("/wait"):
            steps = self.script[int(path.split("/")[3])]
            return 200, steps.pop(0) if len(steps) > 1 else steps[0]
        if path == "/v1/query/cluster":
            if self.cluster is None:
                return 404, {"error": {"type": "NotFoundError", "message": "no cluster"}}
            return 200, self.cluster
        if path == "/v1/query/nodes":
            names = query.get("names", "").split(",") if query.get("names") else None
            return 200, {"items": [n for n in self.nodes if names is None or n["name"] in names]}
        if path == "/v1/query/nodegroups":
            return 404, {"error": {"type": "NotFoundError", "message": "group x not found"}}
        if path == "/v1/broken":
            return 500, "plain text failure"
        if path == "/v1/invalid":
            return 400, {
                "error": {
                    "type": "ValidationError",
                    "message": "invalid value 'x' for field 'alloc_policy'",
                    "details": {"field": "alloc_policy", "value": "x"},
                }
            }
        return 404, {"error": {"type": "NotFoundError", "message": f"no route {path}"}}


def _handler(master: FakeMaster) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            body = json.loads(raw) if raw else None
            master.requests.append(
                {
                    "method": self.command,
                    "path": parts.path,
                    "query": query,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            status, answer = master.handle(self.command, parts.path, query, body)
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def master() -> FakeMaster:
    return FakeMaster()


@pytest.fixture
def unix_client(tmp_path: Path, master: FakeMaster) -> Iterator[HerdClient]:
    path = str(tmp_path / "master.sock")
    server = _UnixHTTPServer(path, _handler(master))
    yield from (HerdClient(socket_path=path) for _ in _serve(server))


def _job(status: str, log: list[int], error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": 1,
        "status": status,
        "ops": [],
        "log": [{"serial": s, "time": 1.0, "type": "message", "message": f"m{s}"} for s in log],
        "error": error,
    }


def test_submit_posts_ops_reason_and_priority_as_json(
    unix_client: HerdClient, master: FakeMaster
) -> None:
    ops = [{"op": "node.add", "name": "n2"}]
    reason = [["ansible:herd.cluster.node", "add n2", 1700000000.0]]
    assert unix_client.submit(ops, reason) == 1
    sent = master.requests[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/v1/jobs")
    assert sent["body"] == {"ops": ops, "priority": 0, "reason": reason}
    assert sent["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in sent["headers"]


def test_wait_reports_each_log_entry_once_and_returns_final_job(
    unix_client: HerdClient, master: FakeMaster
) -> None:
    master.script[1] = [_job("queued", []), _job("running", [1, 2]), _job("success", [1, 2, 3])]
    seen: list[int] = []
    job = unix_client.wait(1, timeout=60, on_log=lambda e: seen.append(e["serial"]))
    assert job["status"] == "success"
    assert seen == [1, 2, 3]
    polls = [r["query"]["log_since"] for r in master.requests if r["path"].endswith("/wait")]
    assert polls == ["0", "0", "2"]


def test_failed_job_raises_with_the_jobs_error(unix_client: HerdClient, master: FakeMaster) -> None:
    error = {"type": "ConflictError", "message": "IP in use", "details": {"ip": "192.0.2.9"}}
    master.script[1] = [_job("error", [1], error)]
    with pytest.raises(HerdJobFailed) as caught:
        unix_client.wait(1, timeout=60)
    assert caught.value.kind == "ConflictError"
    assert caught.value.details == {"ip": "192.0.2.9"}
    assert "job 1 error: IP in use" in str(caught.value)
    assert caught.value.job["status"] == "error"


def test_wait_timeout_says_the_job_goes_on(unix_client: HerdClient, master: FakeMaster) -> None:
    master.script[1] = [_job("running", [])]
    with pytest.raises(HerdJobTimeout, match="keeps running on the master"):
        unix_client.wait(1, timeout=0)


def test_api_error_body_becomes_typed_error(unix_client: HerdClient) -> None:
    with pytest.raises(HerdApiError) as caught:
        unix_client.request("GET", "/v1/invalid")
    assert (caught.value.kind, caught.value.status) == ("ValidationError", 400)
    assert caught.value.details["field"] == "alloc_policy"
    assert str(caught.value).startswith("ValidationError: invalid value 'x'")


def test_non_json_error_is_still_reported(unix_client: HerdClient) -> None:
    with pytest.raises(HerdApiError) as caught:
        unix_client.request("GET", "/v1/broken")
    assert (caught.value.kind, caught.value.status) == ("HTTPError", 500)
    assert "plain text failure" in caught.value.message


def test_queries(unix_client: HerdClient, master: FakeMaster) -> None:
    assert unix_client.cluster() is None
    master.cluster = {"name": "c1"}
    assert unix_client.cluster() == {"name": "c1"}
    assert unix_client.query_one("nodes", "n1") == master.nodes[0]
    assert master.requests[-1]["query"] == {"names": "n1"}
    assert unix_client.query_one("nodes", "n9") is None
    assert unix_client.query_one("nodegroups", "x") is None
    assert unix_client.info()["version"] == "0.1.0"


def test_missing_socket_explains_itself(tmp_path: Path) -> None:
    client = HerdClient(socket_path=str(tmp_path / "nothing.sock"))
    with pytest.raises(HerdApiError, match="is `herd master` running") as caught:
        client.info()
    assert caught.value.kind == "ConnectionError"


def test_plain_http_url_is_refused() -> None:
    with pytest.raises(HerdApiError, match="https://"):
        HerdClient(api_url="http://master:5080", api_token="secret")


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
def https_url(tmp_path: Path, master: FakeMaster) -> Iterator[tuple[str, Path]]:
    cert_path, key_path = _certificate(tmp_path)
    server = _TLSHTTPServer(("127.0.0.1", 0), _handler(master))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    yield from ((url, cert_path) for _ in _serve(server))


def test_https_with_cluster_ca_sends_bearer_token(
    https_url: tuple[str, Path], master: FakeMaster
) -> None:
    url, ca = https_url
    client = HerdClient(api_url=url, api_token="tok-123", ca_path=str(ca))
    assert client.info()["version"] == "0.1.0"
    assert master.requests[-1]["headers"]["Authorization"] == "Bearer tok-123"


def test_https_basic_auth(https_url: tuple[str, Path], master: FakeMaster) -> None:
    url, ca = https_url
    client = HerdClient(api_url=url + "/", api_user="admin", api_password="pw", ca_path=str(ca))
    client.query("nodes")
    sent = master.requests[-1]
    assert sent["path"] == "/v1/query/nodes"
    assert sent["headers"]["Authorization"] == "Basic " + base64.b64encode(b"admin:pw").decode()


def test_https_untrusted_certificate_is_refused_unless_validation_is_off(
    https_url: tuple[str, Path],
) -> None:
    url, _ca = https_url
    with pytest.raises(HerdApiError, match="set ca_path to the cluster CA"):
        HerdClient(api_url=url).info()
    assert HerdClient(api_url=url, validate_certs=False).info()["version"] == "0.1.0"
