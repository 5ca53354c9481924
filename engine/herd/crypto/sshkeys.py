"""The cluster's SSH identity and host-key fingerprints.

The master reaches nodes over SSH with one cluster key pair. It is Ed25519 because its
keys are small, fast and have no parameter choices to get wrong, and it is stored in
OpenSSH's own format so the operator's ``ssh -i`` and paramiko read the same file.

Host keys are pinned by fingerprint when a node is added; the fingerprint is computed the
way ``ssh-keygen -l`` prints it so an operator can compare it with what the node shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from herd.crypto.files import PRIVATE_MODE, PUBLIC_MODE, write_atomic
from herd.errors import ValidationError


def generate_ssh_key(private_path: Path, *, comment: str = "herd-cluster") -> str:
    """Create the key pair: ``private_path`` (0600) and ``<private_path>.pub``.

    Returns the public key line, ready for ``authorized_keys``.
    """
    if not comment or any(ch.isspace() for ch in comment):
        raise ValidationError("comment", comment, "a non-empty word without whitespace")
    private_path = Path(private_path)
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode('ascii')} {comment}"
    write_atomic(private_path, private, PRIVATE_MODE)
    write_atomic(_public_path(private_path), f"{line}\n".encode("ascii"), PUBLIC_MODE)
    return line


def load_ssh_key(private_path: Path) -> paramiko.Ed25519Key:
    """The private key as paramiko wants it for ``SSHClient.connect(pkey=...)``."""
    try:
        return paramiko.Ed25519Key(filename=str(private_path))
    except paramiko.SSHException as exc:
        raise ValidationError(
            "private_path", str(private_path), "an unencrypted OpenSSH Ed25519 private key"
        ) from exc


def fingerprint(public_line: str) -> str:
    """``SHA256:<base64>`` of a ``"<type> <base64> [comment]"`` public key line.

    The key blob must start with its own type name, as every SSH public key blob does;
    checking it catches a line whose type and key were pasted from different keys, which
    would otherwise pin a fingerprint no host will ever present.
    """
    parts = public_line.split() if isinstance(public_line, str) else []
    if len(parts) < 2:
        raise ValidationError("public_key", public_line, "'<type> <base64> [comment]'")
    key_type, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValidationError("public_key", public_line, "base64 key data") from exc
    if _blob_type(blob) != key_type:
        raise ValidationError(
            "public_key", public_line, f"key data whose embedded type is {key_type!r}"
        )
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return f"SHA256:{digest.rstrip('=')}"


def _blob_type(blob: bytes) -> str | None:
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    name = blob[4 : 4 + length]
    return name.decode("ascii", "replace") if len(name) == length else None


def _public_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")
