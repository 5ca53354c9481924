"""Cluster CA: persistence, what issued certificates contain, and verification."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from herd.crypto.ca import CertKey, ClusterCA, verify_cert
from herd.errors import AuthenticationError, ValidationError


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("alpha")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_ca_loads_back_with_private_key_root_only(ca: ClusterCA, tmp_path: Path) -> None:
    ca.save(tmp_path)
    assert _mode(tmp_path / "ca.key") == 0o600
    assert _mode(tmp_path / "ca.pem") == 0o644
    loaded = ClusterCA.load(tmp_path)
    assert loaded.cert_pem == ca.cert_pem
    # The loaded key really is the CA key: what it issues verifies against the original.
    issued = loaded.issue_node_cert("n1", [])
    verify_cert(issued.cert_pem, ca.cert_pem)


def test_from_pem_refuses_a_key_of_another_certificate(ca: ClusterCA) -> None:
    other = ClusterCA.create("beta")
    with pytest.raises(ValidationError) as err:
        ClusterCA.from_pem(ca.cert_pem, other.pair.key_pem)
    assert err.value.details["field"] == "key_pem"


def test_a_node_certificate_cannot_act_as_ca(ca: ClusterCA) -> None:
    node = ca.issue_node_cert("n1", [])
    with pytest.raises(ValidationError) as err:
        ClusterCA(node)
    assert err.value.details["allowed"] == "a CA certificate"


def test_node_cert_names_node_and_ips_for_both_tls_roles(ca: ClusterCA, tmp_path: Path) -> None:
    pair = ca.issue_node_cert("node1.example.com", ["192.0.2.10", "2001:db8::10"])
    pair.save(tmp_path / "n.pem", tmp_path / "n.key")
    assert _mode(tmp_path / "n.key") == 0o600
    reloaded = CertKey.load(tmp_path / "n.pem", tmp_path / "n.key")
    assert reloaded.cert == pair.cert

    cert = verify_cert(pair.cert_pem, ca.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.10"),
        ipaddress.ip_address("2001:db8::10"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_transfer_cert_names_transfer_and_lives_hours(ca: ClusterCA) -> None:
    now = dt.datetime.now(dt.UTC)
    pair = ca.issue_transfer_cert("job-17-disk0", valid_hours=3, now=now)
    cert = pair.cert
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "job-17-disk0"
    assert cert.not_valid_after_utc.replace(microsecond=0) == (now + dt.timedelta(hours=3)).replace(
        microsecond=0
    )
    verify_cert(pair.cert_pem, ca.cert_pem, now=now + dt.timedelta(hours=2, minutes=59))
    with pytest.raises(AuthenticationError):
        verify_cert(pair.cert_pem, ca.cert_pem, now=now + dt.timedelta(hours=3, minutes=1))


def test_certificate_of_another_cluster_is_refused(ca: ClusterCA) -> None:
    foreign = ClusterCA.create("beta").issue_node_cert("n1", ["192.0.2.1"])
    with pytest.raises(AuthenticationError) as err:
        verify_cert(foreign.cert_pem, ca.cert_pem)
    assert err.value.details == {"cert": "n1", "ca": "herd CA alpha"}


def test_verify_cert_rejects_garbage_as_bad_input(ca: ClusterCA) -> None:
    with pytest.raises(ValidationError) as err:
        verify_cert(b"not a certificate", ca.cert_pem)
    assert err.value.details["field"] == "cert_pem"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda ca: ca.issue_node_cert("bad_name", []), "node_name"),
        (lambda ca: ca.issue_node_cert("-n1", []), "node_name"),
        (lambda ca: ca.issue_node_cert("n1", ["10.0.0.300"]), "ips"),
        (lambda ca: ca.issue_transfer_cert("a.b"), "transfer_id"),
        (lambda ca: ca.issue_transfer_cert(""), "transfer_id"),
        (lambda ca: ca.issue_transfer_cert("t1", valid_hours=0), "valid_hours"),
        (lambda ca: ca.issue_transfer_cert("t1", valid_hours=24 * 30), "valid_hours"),
        (lambda ca: ClusterCA.create("x" * 64), "cluster_name"),
    ],
)
def test_bad_input_names_the_field(
    ca: ClusterCA, call: Callable[[ClusterCA], object], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        call(ca)
    assert err.value.details["field"] == field
