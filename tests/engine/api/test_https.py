"""The API over HTTPS against a real master: TLS under the cluster CA, tokens and users,
read-only principals, management kept off the network, and the brake on failed logins
(local-only ops and fields: test_https_exposure.py)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import ssl
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from herd.api.server import IDLE_TIMEOUT
from herd.auth import AuthStore, FailureLimiter
from herd.auth.ratelimit import MAX_FAILURES
from herd.auth.store import MAX_PASSWORD_CHECKS
from herd.cli.main import main as herd_main
from herd.client import Client, https_client_context
from herd.config import SQLiteStore
from herd.crypto.ca import ClusterCA
from herd.crypto.tls import TLS12_SUITES
from herd.errors import (
    AuthenticationError,
    ForbiddenError,
    MasterUnreachableError,
    RateLimitedError,
    ValidationError,
)
from herd.master.daemon import API_CERT_FILE, parse_bind
from tests.engine.api.https_master import (
    MASTER_NODE,
    HTTPSMaster,
    https_url,
    seed_cluster,
    start_https_master,
)
from tests.engine.auth import scrypt_gate
from tests.engine.harness import poll


@pytest.fixture
def https(tmp_path: Path) -> Iterator[HTTPSMaster]:
    started = start_https_master(tmp_path)
    yield started
    started.running.stop()


def raw(
    https: HTTPSMaster,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    source: str = "127.0.0.1",
) -> tuple[int, http.client.HTTPResponse, dict[str, Any]]:
    """One request with exactly the headers given, from ``source`` (any 127/8 address)."""
    port = int(https.url.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection(
        "127.0.0.1",
        port,
        timeout=30,
        context=https_client_context(str(https.ca_file)),
        source_address=(source, 0),
    )
    data = json.dumps(body).encode() if body is not None else None
    try:
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp, json.loads(resp.read())
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---- who gets in -------------------------------------------------------------------


def test_token_runs_jobs_and_the_job_records_who_sent_it(https: HTTPSMaster) -> None:
    token = https.running.api.create_token("awx")
    with https.client(token=token) as remote:
        assert remote.info()["cluster"] == "alpha"
        assert [n["name"] for n in remote.query("nodes")] == [MASTER_NODE, "n2"]
        result = remote.run([{"op": "group.add", "name": "rack2"}], timeout=30)
        assert result["changed"] is True
        job = remote.jobs(limit=1)[0]
    assert [g.name for g in https.running.master.store.list("nodegroup")] == ["default", "rack2"]
    reason = https.running.api.job(job["id"])["reason"]
    assert reason[-1][:2] == ["api:https", "token awx from 127.0.0.1"]


def test_user_and_password_authenticate_and_wrong_ones_do_not(https: HTTPSMaster) -> None:
    https.running.api.add_user("alice", "correct horse")
    with https.client(user="alice", password="correct horse") as remote:
        assert remote.queue()["max_running"] >= 1
    for user, password in (("alice", "wrong"), ("mallory", "correct horse")):
        with (
            https.client(user=user, password=password) as remote,
            pytest.raises(AuthenticationError) as err,
        ):
            remote.info()
        assert err.value.message == "invalid credentials"


def test_missing_or_wrong_credentials_get_401_with_a_challenge(https: HTTPSMaster) -> None:
    https.running.api.create_token("ok")
    for headers in (
        {},
        bearer("herd_not-a-token"),
        basic("nobody", "x"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Digest username=x"},
    ):
        status, resp, doc = raw(https, "GET", "/v1/info", headers)
        assert status == 401, headers
        assert doc["error"]["type"] == "AuthenticationError"
        challenges = resp.headers.get_all("WWW-Authenticate")
        assert challenges == ['Bearer realm="herd"', 'Basic realm="herd", charset="UTF-8"']
        # Refused before the body was read, so the connection closes, and says so.
        assert resp.headers["Connection"] == "close"


def test_a_revoked_token_stops_working_at_once(https: HTTPSMaster) -> None:
    token = https.running.api.create_token("temp")
    assert raw(https, "GET", "/v1/info", bearer(token))[0] == 200
    https.running.api.remove_credential("tokens", "temp")
    assert raw(https, "GET", "/v1/info", bearer(token))[0] == 401


def test_read_only_token_reads_but_may_not_write(https: HTTPSMaster) -> None:
    token = https.running.api.create_token("viewer", read_only=True)
    with https.client(token=token) as remote:
        assert remote.query("nodes")
        with pytest.raises(ForbiddenError, match="read-only"):
            remote.submit([{"op": "group.add", "name": "rack3"}])
        with pytest.raises(ForbiddenError):
            remote.set_queue(3)
    assert https.running.api.jobs() == []
    assert https.running.api.queue()["max_running"] != 3


# ---- what a remote caller may not do -------------------------------------------------


def test_credentials_and_the_secret_dump_stay_off_the_network(https: HTTPSMaster) -> None:
    token = https.running.api.create_token("admin")
    for method, path, body in (
        ("GET", "/v1/auth/tokens", None),
        ("POST", "/v1/auth/tokens", {"name": "sneaky"}),
        ("POST", "/v1/auth/users", {"name": "sneaky", "password": "pw"}),
        ("DELETE", "/v1/auth/tokens/admin", None),
        ("GET", "/v1/config", None),
    ):
        status, _, doc = raw(https, method, path, bearer(token), body)
        assert (status, doc["error"]["type"]) == (403, "ForbiddenError"), path
    assert [t["name"] for t in https.running.api.credentials("tokens")] == ["admin"]
    assert https.running.api.credentials("users") == []


def test_credentials_are_stored_hashed_and_root_only(https: HTTPSMaster) -> None:
    token = https.running.api.create_token("ci")
    https.running.api.add_user("bob", "s3cret-pass")
    path = https.running.state_dir / AuthStore.FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and token.removeprefix("herd_") not in text
    assert "s3cret-pass" not in text and "scrypt$" in text
    listed = https.running.api.credentials("tokens")
    assert listed[0]["name"] == "ci" and "sha256" not in listed[0]


# ---- TLS ----------------------------------------------------------------------------


def test_master_certificate_is_issued_by_the_cluster_ca(https: HTTPSMaster) -> None:
    port = int(https.url.rsplit(":", 1)[1])
    context = https_client_context(str(https.ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as tcp,
        context.wrap_socket(tcp, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1.3"
        cert = tls.getpeercert()
    assert dict(x[0] for x in cert["subject"])["commonName"] == MASTER_NODE
    assert ("DNS", MASTER_NODE) in cert["subjectAltName"]
    assert ("IP Address", "192.0.2.1") in cert["subjectAltName"]
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as tcp,
        context.wrap_socket(tcp, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0] in TLS12_SUITES


def test_client_refuses_a_master_it_cannot_verify(https: HTTPSMaster, tmp_path: Path) -> None:
    token = https.running.api.create_token("t")
    other = tmp_path / "other-ca.pem"
    other.write_bytes(ClusterCA.create("beta").cert_pem)
    for ca_file in (None, str(other)):
        with (
            Client(api_url=https.url, token=token, ca_file=ca_file) as remote,
            pytest.raises(MasterUnreachableError, match="not trusted"),
        ):
            remote.info()


def test_plain_http_urls_are_refused_by_the_client() -> None:
    with pytest.raises(ValidationError) as err:
        Client(api_url="http://127.0.0.1:8443", token="x")
    assert err.value.details["field"] == "api_url"


def test_plain_http_to_the_tls_port_gets_no_answer(https: HTTPSMaster) -> None:
    port = int(https.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IDLE_TIMEOUT)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.request("GET", "/v1/info")
        conn.getresponse()
    conn.close()


# ---- guessing --------------------------------------------------------------------


def test_failed_logins_are_rate_limited_per_address(https: HTTPSMaster) -> None:
    token = https.running.api.create_token("good")
    for _ in range(MAX_FAILURES):
        assert raw(https, "GET", "/v1/info", bearer("herd_guess"))[0] == 401
    status, resp, doc = raw(https, "GET", "/v1/info", bearer(token))
    assert (status, doc["error"]["type"]) == (429, "RateLimitedError")
    assert int(resp.headers["Retry-After"]) >= 1
    # Another address still gets in; asking without credentials never counts as a failure.
    for _ in range(MAX_FAILURES + 1):
        assert raw(https, "GET", "/v1/info", {}, source="127.0.0.2")[0] == 401
    assert raw(https, "GET", "/v1/info", bearer(token), source="127.0.0.2")[0] == 200
    with https.client(token=token) as remote, pytest.raises(RateLimitedError):
        remote.info()


def test_parallel_wrong_passwords_past_the_budget_are_refused_before_scrypt(
    https: HTTPSMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 guesses at once: every password check is held at a gate, so none has failed
    yet when the rest arrive; only the budget's worth may reach scrypt, the others get
    429 while those checks are still running, and no more than the bound run at once."""
    server = https.running.master.https
    assert server is not None
    server.limiter = FailureLimiter(window=3600)
    # All 40 come from one address: the per-address connection cap (tested on its own)
    # would close most of them before the login limiter under test saw them.
    server.max_connections_per_address = None
    https.running.api.add_user("alice", "correct horse")
    gate = scrypt_gate.install(monkeypatch)
    answers: list[tuple[int, str | None]] = []

    def guess(n: int) -> None:
        status, resp, _ = raw(https, "GET", "/v1/info", basic("alice", f"guess{n}"))
        answers.append((status, resp.headers.get("Retry-After")))

    guesses = 40
    with ThreadPoolExecutor(guesses) as pool:
        try:
            for n in range(guesses):
                pool.submit(guess, n)
            poll(
                "the guesses past the budget to be refused",
                lambda: len(answers) >= guesses - MAX_FAILURES,
            )
            assert gate.calls <= MAX_FAILURES
        finally:
            gate.open()
    statuses = [status for status, _ in answers]
    assert len(statuses) == guesses and set(statuses) <= {401, 429}, statuses
    assert statuses.count(429) >= guesses - MAX_FAILURES
    assert all(int(after or 0) >= 1 for status, after in answers if status == 429)
    assert gate.calls <= MAX_FAILURES
    assert gate.peak <= MAX_PASSWORD_CHECKS


def test_connections_past_the_cap_are_closed_at_once(https: HTTPSMaster) -> None:
    server = https.running.master.https
    assert server is not None
    server.max_connections = 3
    port = int(https.url.rsplit(":", 1)[1])
    context = https_client_context(str(https.ca_file))
    held = [
        context.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
        )
        for _ in range(3)
    ]
    try:
        poll("the server to hold three connections", lambda: server.connections() == 3)
        with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
            raw(https, "GET", "/v1/info")
        assert server.connections() == 3
        held.pop().close()
        poll("a closed connection to free its place", lambda: server.connections() == 2)
        assert raw(https, "GET", "/v1/info")[0] == 401
    finally:
        for sock in held:
            sock.close()


def tls_socket(https: HTTPSMaster, source: str = "127.0.0.1") -> ssl.SSLSocket:
    """A connection with its handshake done and nothing sent yet."""
    port = int(https.url.rsplit(":", 1)[1])
    context = https_client_context(str(https.ca_file))
    plain = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    return context.wrap_socket(plain, server_side=False, server_hostname="127.0.0.1")


def closed_by_server(sock: ssl.SSLSocket) -> bool:
    """Whether the server has ended the connection (the read waits up to the socket's
    timeout, a safety net: a live connection answers it with TimeoutError)."""
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except (ssl.SSLError, OSError):
        return True


def test_one_address_cannot_take_every_connection(https: HTTPSMaster) -> None:
    server = https.running.master.https
    assert server is not None
    server.max_connections_per_address = 2
    held = [tls_socket(https, "127.0.0.2") for _ in range(2)]
    try:
        poll("the server to hold two connections", lambda: server.connections() == 2)
        with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
            raw(https, "GET", "/v1/info", source="127.0.0.2")
        assert raw(https, "GET", "/v1/info", source="127.0.0.3")[0] == 401
        # The other address's connection is let go by its handler thread just after the
        # answer is read: wait for that, rather than catch it half-way (it read 3 once).
        poll("the answered connection to free its place", lambda: server.connections() == 2)
    finally:
        for sock in held:
            sock.close()


def test_a_silent_connection_is_closed_before_it_authenticates(https: HTTPSMaster) -> None:
    server = https.running.master.https
    assert server is not None
    server.preauth_timeout = 0.5
    with tls_socket(https) as sock:
        assert closed_by_server(sock)
    poll("the closed connection to free its place", lambda: server.connections() == 0)


def test_a_request_head_sent_a_byte_at_a_time_is_cut_off(https: HTTPSMaster) -> None:
    """Slowloris: each byte arrives well within any per-read timeout, the whole head
    never does. The client keeps dripping until the server hangs up (60s safety net)."""
    server = https.running.master.https
    assert server is not None
    server.preauth_timeout = 1.0
    head = b"GET /v1/info HTTP/1.1\r\n" + b"X-Slow: y\r\n" * 1000
    with tls_socket(https) as sock:
        sock.settimeout(0.1)
        closed = False
        for byte in head[:600]:
            try:
                sock.sendall(bytes([byte]))
            except (ssl.SSLError, OSError):
                closed = True
                break
            if closed_by_server(sock):
                closed = True
                break
        assert closed, "the server kept a connection that never finished its request head"
    token = https.running.api.create_token("after")
    assert raw(https, "GET", "/v1/info", bearer(token))[0] == 200


# ---- start-up and the command line -------------------------------------------------


def test_https_waits_for_the_cluster_then_starts(tmp_path: Path) -> None:
    https = start_https_master(tmp_path / "m", seed=False)
    try:
        master = https.running.master
        assert master.https is None
        seeded = tmp_path / "seed"
        ca = seed_cluster(seeded)
        store = SQLiteStore(seeded / "config.db")
        dump = store.dump()
        store.close()
        (https.running.state_dir / "crypto").mkdir(mode=0o700)
        ca.save(https.running.state_dir / "crypto")
        https.running.api.run([{"op": "config.restore", "data": dump}], timeout=30)
        url = poll("HTTPS to start after the cluster appears", lambda: https_url(master))
        assert (https.running.state_dir / "crypto" / API_CERT_FILE).exists()
        ca_file = tmp_path / "ca.pem"
        ca_file.write_bytes(ca.cert_pem)
        token = https.running.api.create_token("late")
        with Client(api_url=url, token=token, ca_file=str(ca_file)) as remote:
            assert remote.info()["cluster"] == "alpha"
    finally:
        https.running.stop()


@pytest.mark.parametrize("bad", ["8443", ":8443", "host:", "host:99999", "[::1]8443"])
def test_bad_bind_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_bind(bad)
    assert err.value.details["field"] == "https_bind"


def test_parse_bind_accepts_ipv4_and_ipv6() -> None:
    assert parse_bind("0.0.0.0:8443") == ("0.0.0.0", 8443)
    assert parse_bind("[::]:8443") == ("::", 8443)


def test_cli_manages_credentials_and_works_remotely(
    https: HTTPSMaster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = str(https.running.socket)
    assert herd_main(["--socket", sock, "cluster", "ca"]) == 0
    assert capsys.readouterr().out.encode() == https.ca_file.read_bytes()
    assert herd_main(["--socket", sock, "token", "create", "cli", "--read-only"]) == 0
    token = capsys.readouterr().out.strip()
    monkeypatch.setattr("sys.stdin", io.StringIO("pw from stdin\n"))
    assert herd_main(["--socket", sock, "user", "add", "carol"]) == 0
    assert herd_main(["--socket", sock, "-o", "json", "token", "list"]) == 0
    assert [t["name"] for t in json.loads(capsys.readouterr().out)] == ["cli"]

    remote = ["--api-url", https.url, "--api-ca", str(https.ca_file), "-o", "json"]
    token_file = https.ca_file.with_name("token")
    token_file.write_text(token + "\n")
    assert herd_main([*remote, "--api-token-file", str(token_file), "node", "list"]) == 0
    assert [n["name"] for n in json.loads(capsys.readouterr().out)] == [MASTER_NODE, "n2"]
    monkeypatch.setattr("sys.stdin", io.StringIO(token))
    assert herd_main([*remote, "--api-token-file", "-", "group", "add", "g2"]) == 1
    assert "read-only" in capsys.readouterr().err

    monkeypatch.setenv("HERD_API_URL", https.url)
    monkeypatch.setenv("HERD_API_CA", str(https.ca_file))
    monkeypatch.setenv("HERD_API_PASSWORD", "pw from stdin")
    assert herd_main(["--api-user", "carol", "group", "add", "g2"]) == 0
    assert herd_main(["--socket", sock, "user", "remove", "carol"]) == 0
    assert herd_main(["--api-user", "carol", "group", "list"]) == 1
    assert "invalid credentials" in capsys.readouterr().err
