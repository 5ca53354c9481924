"""TLS contexts for mutually authenticated connections between cluster members.

Both ends present a certificate from the cluster CA and demand one from the peer, so a
disk stream can be neither read nor injected by anything without a CA-signed key.

Cipher choice matters for moves (AES-128-GCM is the fastest suite here, see the lab
notes), so callers may narrow the suites, but only within an allow-list of AEAD suites with
forward secrecy: Ganeti's lesson was that a free-form OpenSSL cipher string reachable from
the API lets an attacker downgrade a move to something readable.

Python 3.11's ``SSLContext.set_ciphers`` only governs TLS 1.2 and below; TLS 1.3 suites
are set by OpenSSL's ``SSL_CTX_set_ciphersuites``, which the ``ssl`` module exposes only
from Python 3.15 on. Until then we call it through ctypes on the context's own ``SSL_CTX``
and confirm the effect through the public ``get_ciphers()`` before trusting it.
"""

from __future__ import annotations

import _ssl
import ctypes
import functools
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from herd.errors import AuthenticationError, HerdError, ValidationError

TLS13_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
TLS12_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
ALLOWED_CIPHERS = TLS13_SUITES + TLS12_SUITES

CipherSpec = str | Sequence[str] | None


def parse_ciphers(ciphers: CipherSpec) -> tuple[str, ...]:
    """Validate a cipher selection: a ``:``-separated string or a list of suite names.

    ``None`` means every allowed suite. Order is kept (it is the preference order) and
    duplicates dropped. Anything outside the allow-list, including OpenSSL cipher-string
    syntax such as ``ALL`` or ``!aNULL``, is refused rather than filtered, so a typo cannot
    silently widen or empty the selection.
    """
    if ciphers is None:
        return ALLOWED_CIPHERS
    if isinstance(ciphers, str):
        names = ciphers.split(":")
    elif isinstance(ciphers, Sequence):
        names = list(ciphers)
    else:
        names = []
    if not names or any(name not in ALLOWED_CIPHERS for name in names):
        raise ValidationError("ciphers", ciphers, ", ".join(ALLOWED_CIPHERS))
    return tuple(dict.fromkeys(names))


def server_context(
    ca_pem: bytes | str, cert_file: Path, key_file: Path, *, ciphers: CipherSpec = None
) -> ssl.SSLContext:
    """Context for the accepting end; it refuses clients without a CA-signed certificate."""
    return _context(ssl.PROTOCOL_TLS_SERVER, ca_pem, cert_file, key_file, ciphers)


def client_context(
    ca_pem: bytes | str, cert_file: Path, key_file: Path, *, ciphers: CipherSpec = None
) -> ssl.SSLContext:
    """Context for the connecting end.

    Hostname checking stays on: wrap with ``server_hostname`` set to the node name or IP,
    or to the transfer id for a transfer, so a valid certificate of the wrong peer fails.
    """
    return _context(ssl.PROTOCOL_TLS_CLIENT, ca_pem, cert_file, key_file, ciphers)


def require_peer(sock: ssl.SSLSocket, name: str) -> None:
    """Insist that the peer's certificate names ``name`` (a SAN DNS name or IP address).

    The server side of a handshake only learns that the client holds *some* CA-signed
    certificate; a transfer receiver uses this to accept only the certificate issued for
    its own transfer.
    """
    cert = sock.getpeercert() or {}
    # typeshed types the decoded certificate as one union over all of its keys; the
    # subjectAltName entry is always (type, value) pairs.
    sans = cast("tuple[tuple[str, str], ...]", cert.get("subjectAltName", ()))
    names = {_canonical(value) for _kind, value in sans}
    if _canonical(name) not in names:
        raise AuthenticationError(
            f"peer certificate is for {sorted(names)}, expected {name!r}",
            expected=name,
            presented=sorted(names),
        )


def _canonical(name: str) -> str:
    """IPs compared by value (OpenSSL reports IPv6 SANs uncompressed, upper case) and DNS
    names without regard to case, as DNS itself does."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _context(
    protocol: ssl._SSLMethod,
    ca_pem: bytes | str,
    cert_file: Path,
    key_file: Path,
    ciphers: CipherSpec,
) -> ssl.SSLContext:
    suites = parse_ciphers(ciphers)
    tls12 = [s for s in suites if s in TLS12_SUITES]
    tls13 = [s for s in suites if s in TLS13_SUITES]
    context = ssl.SSLContext(protocol)
    # Only the versions that have a requested suite are enabled; otherwise TLS 1.3 would
    # negotiate its default suites and bypass a TLS 1.2-only selection (and vice versa).
    context.minimum_version = ssl.TLSVersion.TLSv1_2 if tls12 else ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    if tls12:
        context.set_ciphers(":".join(tls12))
    if tls13:
        _set_tls13_suites(context, tls13)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    # cadata takes bytes as DER, so PEM must be handed over as text.
    pem = ca_pem.decode("ascii") if isinstance(ca_pem, bytes) else ca_pem
    context.load_verify_locations(cadata=pem)
    context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    return context


@functools.cache
def _libssl() -> ctypes.CDLL:
    """libssl as linked into ``_ssl``, so we touch the same OpenSSL the contexts live in."""
    lib = ctypes.CDLL(getattr(_ssl, "__file__", None))
    lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    return lib


def _set_tls13_suites(context: ssl.SSLContext, suites: Sequence[str]) -> None:
    """Apply ``SSL_CTX_set_ciphersuites`` to the ``SSL_CTX`` behind ``context``.

    CPython's context object holds its ``SSL_CTX *`` right after the object header. The
    pointer is only used once it answers ``SSL_CTX_get_options`` with the same options as
    ``context.options``, and the result is confirmed through ``get_ciphers()``, so a
    different interpreter layout fails loudly instead of leaving the defaults in place.
    """
    lib = _libssl()
    ctx_ptr = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ctx_ptr or lib.SSL_CTX_get_options(ctx_ptr) != int(context.options):
        raise HerdError("cannot reach the OpenSSL context to restrict TLS 1.3 suites")
    if lib.SSL_CTX_set_ciphersuites(ctx_ptr, ":".join(suites).encode("ascii")) != 1:
        raise HerdError("OpenSSL refused the TLS 1.3 suites", suites=list(suites))
    active = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.3"]
    if active != list(suites):
        raise HerdError(
            "TLS 1.3 suite restriction did not take effect", wanted=list(suites), active=active
        )
