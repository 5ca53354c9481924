"""The cluster certificate authority and the certificates it issues.

Ganeti shared one self-signed certificate between all nodes, so one stolen node key
impersonated every node for ever. Here each node gets its own certificate and every disk
transfer gets a throw-away one valid for hours, all signed by one cluster CA whose key stays
on the master. Peers trust the CA, not individual certificates, so adding a node never means
redistributing trust.

Keys are EC P-256. Python's ``ssl`` on this machine (OpenSSL 3.0) authenticates both
ends with P-256 and with Ed25519, under TLS 1.2 (ECDHE-ECDSA suites) and TLS 1.3 alike,
but browsers and older socat/curl builds do not accept Ed25519 certificates, and the
HTTPS API will be reached by those.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from herd.crypto.files import PRIVATE_MODE, PUBLIC_MODE, write_atomic
from herd.errors import AuthenticationError, ValidationError

CA_VALID_DAYS = 3650
NODE_VALID_DAYS = 1825
TRANSFER_VALID_HOURS = 6
#: A transfer certificate outliving a week is no longer "per transfer".
TRANSFER_MAX_HOURS = 168
#: Certificates start slightly in the past so a node whose clock lags accepts them at once.
CLOCK_SKEW = dt.timedelta(minutes=5)

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class CertKey:
    """A certificate with its private key: what one end of a TLS connection presents."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, cert_path: Path, key_path: Path) -> None:
        """Write both as PEM; the key root-only because whoever reads it can impersonate us."""
        write_atomic(Path(key_path), self.key_pem, PRIVATE_MODE)
        write_atomic(Path(cert_path), self.cert_pem, PUBLIC_MODE)

    @classmethod
    def from_pem(cls, cert_pem: bytes | str, key_pem: bytes | str) -> CertKey:
        """Parse a pair, refusing a key that does not belong to the certificate.

        A mismatched pair would only fail later, inside a TLS handshake, with an error that
        does not say which file is wrong.
        """
        cert = _parse_cert(cert_pem, "cert_pem")
        try:
            key = serialization.load_pem_private_key(_as_bytes(key_pem), password=None)
        except (ValueError, TypeError) as exc:
            raise ValidationError("key_pem", "<private key>", "an unencrypted PEM key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValidationError("key_pem", type(key).__name__, "an EC private key")
        if key.public_key() != cert.public_key():
            raise ValidationError("key_pem", "<private key>", "the key of the given certificate")
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertKey:
        return cls.from_pem(Path(cert_path).read_bytes(), Path(key_path).read_bytes())


class ClusterCA:
    """The cluster's signing authority; issues node and per-transfer certificates."""

    CERT_FILE = "ca.pem"
    KEY_FILE = "ca.key"

    def __init__(self, pair: CertKey) -> None:
        try:
            is_ca = pair.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ValidationError("cert_pem", _common_name(pair.cert), "a CA certificate")
        self.pair = pair

    @classmethod
    def create(
        cls,
        cluster_name: str,
        *,
        valid_days: int = CA_VALID_DAYS,
        now: dt.datetime | None = None,
    ) -> ClusterCA:
        """Make a new self-signed CA named after the cluster.

        The name shows up in verification errors, which is how an operator tells apart the
        CAs of two clusters during an inter-cluster move.
        """
        _check_dns_name("cluster_name", cluster_name)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"herd CA {cluster_name}")])
        start = _now(now) - CLOCK_SKEW
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(CertKey(cert, key))

    @classmethod
    def from_pem(cls, cert_pem: bytes | str, key_pem: bytes | str) -> ClusterCA:
        return cls(CertKey.from_pem(cert_pem, key_pem))

    @classmethod
    def load(cls, directory: Path) -> ClusterCA:
        directory = Path(directory)
        return cls(CertKey.load(directory / cls.CERT_FILE, directory / cls.KEY_FILE))

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        self.pair.save(directory / self.CERT_FILE, directory / self.KEY_FILE)

    @property
    def cert_pem(self) -> bytes:
        return self.pair.cert_pem

    def issue_node_cert(
        self,
        node_name: str,
        ips: Iterable[str],
        *,
        valid_days: int = NODE_VALID_DAYS,
        now: dt.datetime | None = None,
    ) -> CertKey:
        """Certificate for a node's agent and daemons, usable as TLS client and server.

        Both the name and every address go into the SAN, so a peer may dial the node by
        either and still have the hostname checked.
        """
        _check_dns_name("node_name", node_name)
        addresses = [_parse_ip(ip) for ip in ips]
        san = [x509.DNSName(node_name), *(x509.IPAddress(a) for a in addresses)]
        return self._issue(node_name, san, dt.timedelta(days=valid_days), now)

    def issue_transfer_cert(
        self,
        transfer_id: str,
        *,
        valid_hours: int = TRANSFER_VALID_HOURS,
        now: dt.datetime | None = None,
    ) -> CertKey:
        """Throw-away certificate for one disk transfer, expiring within hours.

        The transfer id is the CN and the only SAN entry, so the receiving end can demand
        exactly this transfer (``server_hostname=transfer_id``) and a certificate leaked
        from an earlier move is useless both because it expired and because it names
        another transfer.
        """
        _check_dns_name("transfer_id", transfer_id, single_label=True)
        if not 1 <= valid_hours <= TRANSFER_MAX_HOURS:
            raise ValidationError("valid_hours", valid_hours, f"1..{TRANSFER_MAX_HOURS}")
        return self._issue(
            transfer_id, [x509.DNSName(transfer_id)], dt.timedelta(hours=valid_hours), now
        )

    def _issue(
        self,
        common_name: str,
        san: list[x509.GeneralName],
        lifetime: dt.timedelta,
        now: dt.datetime | None,
    ) -> CertKey:
        key = ec.generate_private_key(ec.SECP256R1())
        ca_cert, ca_key = self.pair.cert, self.pair.key
        start = _now(now) - CLOCK_SKEW
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(min(start + CLOCK_SKEW + lifetime, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        return CertKey(cert, key)


def verify_cert(
    cert_pem: bytes | str, ca_pem: bytes | str, *, now: dt.datetime | None = None
) -> x509.Certificate:
    """Check that ``cert_pem`` was issued by ``ca_pem`` and is valid at ``now``.

    For checks outside a TLS handshake, such as a certificate received in an inter-cluster
    move offer before any connection exists. Uses cryptography's RFC 5280 path validation
    (signature, validity window, CA constraints, client-auth usage) rather than comparing
    issuer names by hand.
    """
    cert = _parse_cert(cert_pem, "cert_pem")
    ca = _parse_cert(ca_pem, "ca_pem")
    verifier = PolicyBuilder().store(Store([ca])).time(_now(now)).build_client_verifier()
    try:
        verifier.verify(cert, [])
    except VerificationError as exc:
        raise AuthenticationError(
            f"certificate {_common_name(cert)!r} not accepted by CA {_common_name(ca)!r}: {exc}",
            cert=_common_name(cert),
            ca=_common_name(ca),
        ) from exc
    return cert


def _key_usage(
    *, digital_signature: bool, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _check_dns_name(field: str, value: str, *, single_label: bool = False) -> None:
    """Names end up in SAN dNSName entries, which only hold valid DNS names."""
    labels = value.split(".") if isinstance(value, str) else []
    ok = (
        bool(labels)
        and len(value) <= 253
        and all(_LABEL.match(label) for label in labels)
        and (len(labels) == 1 or not single_label)
    )
    if not ok:
        shape = "a DNS label" if single_label else "a DNS name"
        raise ValidationError(field, value, f"{shape} (letters, digits, '-'; 63 per label)")


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValidationError("ips", value, "IPv4 or IPv6 addresses") from exc


def _parse_cert(data: bytes | str, field: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_as_bytes(data))
    except (ValueError, TypeError) as exc:
        raise ValidationError(field, "<certificate>", "a PEM X.509 certificate") from exc


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("ascii") if isinstance(data, str) else data


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)
