"""Mutually authenticated TLS over real loopback sockets with CA-issued certificates."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from herd.crypto.ca import CertKey, ClusterCA
from herd.crypto.tls import (
    ALLOWED_CIPHERS,
    CipherSpec,
    client_context,
    parse_ciphers,
    require_peer,
    server_context,
)
from herd.errors import AuthenticationError, ValidationError


@dataclass
class Party:
    """A CA's certificate plus files for one end, as a node would have on disk."""

    ca_pem: bytes
    cert: Path
    key: Path

    def server(self, ciphers: CipherSpec = None) -> ssl.SSLContext:
        return server_context(self.ca_pem, self.cert, self.key, ciphers=ciphers)

    def client(self, ciphers: CipherSpec = None) -> ssl.SSLContext:
        return client_context(self.ca_pem, self.cert, self.key, ciphers=ciphers)


@dataclass
class Outcome:
    client_cipher: tuple[str, str, int] | None = None
    server_cipher: tuple[str, str, int] | None = None
    echoed: bytes = b""
    client_error: Exception | None = None
    server_error: Exception | None = None
    server_checks: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("alpha")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


def _party(ca: ClusterCA, pair: CertKey, directory: Path, name: str) -> Party:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    pair.save(cert, key)
    return Party(ca.cert_pem, cert, key)


@pytest.fixture(scope="module")
def node1(ca: ClusterCA, files: Path) -> Party:
    return _party(ca, ca.issue_node_cert("node1", ["127.0.0.1"]), files, "node1")


@pytest.fixture(scope="module")
def node2(ca: ClusterCA, files: Path) -> Party:
    return _party(ca, ca.issue_node_cert("node2", ["127.0.0.2"]), files, "node2")


@pytest.fixture(scope="module")
def stranger(files: Path) -> Party:
    other = ClusterCA.create("beta")
    return _party(other, other.issue_node_cert("node1", ["127.0.0.1"]), files, "stranger")


def handshake(
    server: ssl.SSLContext,
    client: ssl.SSLContext,
    server_hostname: str,
    server_check: Callable[[ssl.SSLSocket], None] | None = None,
) -> Outcome:
    """One TLS connection over loopback TCP: the client sends a line, the server echoes it."""
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                outcome.server_cipher = tls.cipher()
                if server_check is not None:
                    server_check(tls)
                    outcome.server_checks.append("passed")
                tls.sendall(tls.recv(100))
                tls.unwrap()
        except (OSError, AuthenticationError) as exc:
            outcome.server_error = exc
        finally:
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            outcome.client_cipher = tls.cipher()
            tls.sendall(b"hello herd\n")
            outcome.echoed = tls.recv(100)
            tls.unwrap()
    except OSError as exc:
        outcome.client_error = exc
    finally:
        thread.join(10)
        listener.close()
    return outcome


def test_mutual_auth_between_nodes_of_one_cluster(node1: Party, node2: Party) -> None:
    result = handshake(
        node1.server(), node2.client(), "node1", lambda tls: require_peer(tls, "node2")
    )
    assert result.server_error is None and result.client_error is None
    assert result.echoed == b"hello herd\n"
    assert result.server_checks == ["passed"]
    assert result.client_cipher is not None and result.client_cipher[1] == "TLSv1.3"


def test_client_may_dial_the_node_by_ip(node1: Party, node2: Party) -> None:
    assert handshake(node1.server(), node2.client(), "127.0.0.1").echoed == b"hello herd\n"


def test_server_refuses_client_of_another_ca(node1: Party, stranger: Party) -> None:
    # The stranger knows our (public) CA certificate, so it accepts the server; only its
    # own certificate, signed by another CA, is wrong.
    impostor = Party(node1.ca_pem, stranger.cert, stranger.key)
    result = handshake(node1.server(), impostor.client(), "node1")
    assert isinstance(result.server_error, ssl.SSLError)
    assert "certificate verify failed" in str(result.server_error)
    assert result.echoed == b""


def test_client_refuses_server_of_another_ca(node2: Party, stranger: Party) -> None:
    result = handshake(stranger.server(), node2.client(), "node1")
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)
    assert result.echoed == b""


def test_server_refuses_client_without_certificate(node1: Party) -> None:
    anonymous = ssl.create_default_context(cadata=node1.ca_pem.decode())
    result = handshake(node1.server(), anonymous, "node1")
    assert isinstance(result.server_error, ssl.SSLError)
    assert "peer did not return a certificate" in str(result.server_error)
    assert result.echoed == b""


def test_client_refuses_valid_certificate_of_the_wrong_peer(node1: Party, node2: Party) -> None:
    result = handshake(node1.server(), node2.client(), "node2")
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)
    assert "mismatch" in result.client_error.verify_message.lower()


def test_require_peer_rejects_another_cluster_member(node1: Party, node2: Party) -> None:
    result = handshake(
        node1.server(), node2.client(), "node1", lambda tls: require_peer(tls, "node3")
    )
    assert isinstance(result.server_error, AuthenticationError)
    assert result.server_error.details["presented"] == ["127.0.0.2", "node2"]


def test_require_peer_matches_ipv6_addresses_by_value(ca: ClusterCA, files: Path) -> None:
    v6 = _party(ca, ca.issue_node_cert("node6", ["2001:db8::10"]), files, "node6")
    node1 = _party(ca, ca.issue_node_cert("node1", ["127.0.0.1"]), files, "node1v6")
    result = handshake(
        node1.server(), v6.client(), "node1", lambda tls: require_peer(tls, "2001:db8:0::10")
    )
    assert result.server_error is None
    assert result.server_checks == ["passed"]


def test_transfer_certificates_connect_for_their_transfer(ca: ClusterCA, files: Path) -> None:
    sender = _party(ca, ca.issue_transfer_cert("move-42"), files, "send42")
    receiver = _party(ca, ca.issue_transfer_cert("move-42"), files, "recv42")
    result = handshake(
        receiver.server(), sender.client(), "move-42", lambda tls: require_peer(tls, "Move-42")
    )
    assert result.echoed == b"hello herd\n"
    assert result.server_checks == ["passed"]


def test_expired_transfer_certificate_is_refused(ca: ClusterCA, files: Path) -> None:
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    expired = _party(
        ca, ca.issue_transfer_cert("move-7", valid_hours=1, now=yesterday), files, "old"
    )
    fresh = _party(ca, ca.issue_transfer_cert("move-7"), files, "fresh")

    as_server = handshake(expired.server(), fresh.client(), "move-7")
    assert isinstance(as_server.client_error, ssl.SSLCertVerificationError)
    assert "expired" in as_server.client_error.verify_message

    as_client = handshake(fresh.server(), expired.client(), "move-7")
    assert isinstance(as_client.server_error, ssl.SSLError)
    assert "expired" in str(as_client.server_error)
    assert as_client.echoed == b""


@pytest.mark.parametrize(
    ("suite", "version"),
    [
        ("TLS_AES_128_GCM_SHA256", "TLSv1.3"),
        ("TLS_AES_256_GCM_SHA384", "TLSv1.3"),
        ("TLS_CHACHA20_POLY1305_SHA256", "TLSv1.3"),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLSv1.2"),
        ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLSv1.2"),
        ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLSv1.2"),
    ],
)
def test_server_side_restriction_decides_the_negotiated_suite(
    node1: Party, node2: Party, suite: str, version: str
) -> None:
    # The client offers everything allowed, so only the server's restriction can explain
    # getting exactly this suite and version.
    result = handshake(node1.server(ciphers=suite), node2.client(), "node1")
    assert result.client_cipher is not None and result.server_cipher is not None
    assert result.client_cipher[:2] == (suite, version)
    assert result.server_cipher[:2] == (suite, version)
    assert result.echoed == b"hello herd\n"


@pytest.mark.parametrize(
    ("server_suite", "client_suite"),
    [
        ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ("TLS_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ],
)
def test_disjoint_restrictions_cannot_connect(
    node1: Party, node2: Party, server_suite: str, client_suite: str
) -> None:
    result = handshake(
        node1.server(ciphers=server_suite), node2.client(ciphers=client_suite), "node1"
    )
    assert isinstance(result.client_error, ssl.SSLError)
    assert result.echoed == b""


def test_cipher_selection_keeps_order_and_drops_duplicates() -> None:
    chosen = "ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_128_GCM_SHA256"
    assert parse_ciphers(chosen) == ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256")
    assert parse_ciphers(None) == ALLOWED_CIPHERS


@pytest.mark.parametrize(
    "ciphers",
    ["ALL", "AES128-SHA", "TLS_AES_128_GCM_SHA256:!aNULL", "", [], ["ECDHE-RSA-AES128-SHA"], 7],
)
def test_ciphers_outside_the_allow_list_are_refused(node1: Party, ciphers: object) -> None:
    with pytest.raises(ValidationError) as err:
        node1.server(ciphers=ciphers)  # type: ignore[arg-type]
    assert err.value.details["field"] == "ciphers"
    assert "TLS_CHACHA20_POLY1305_SHA256" in err.value.details["allowed"]
    assert "ECDHE-RSA-AES256-GCM-SHA384" in err.value.details["allowed"]
