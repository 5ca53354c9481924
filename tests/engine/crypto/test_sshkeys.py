"""Cluster SSH key pair and host-key fingerprints, checked against OpenSSH's own tools."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import paramiko
import pytest

from herd.crypto.sshkeys import fingerprint, generate_ssh_key, load_ssh_key
from herd.errors import ValidationError

needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh) not installed"
)


def _ssh_keygen(*args: str) -> str:
    return subprocess.run(["ssh-keygen", *args], check=True, capture_output=True, text=True).stdout


def test_generated_pair_is_stored_like_ssh_keygen_does(tmp_path: Path) -> None:
    key_path = tmp_path / "id_ed25519"
    line = generate_ssh_key(key_path, comment="herd@alpha")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (tmp_path / "id_ed25519.pub").read_text() == line + "\n"
    assert line.startswith("ssh-ed25519 ") and line.endswith(" herd@alpha")


def test_loaded_key_signs_what_the_public_line_verifies(tmp_path: Path) -> None:
    line = generate_ssh_key(tmp_path / "id")
    key = load_ssh_key(tmp_path / "id")
    assert isinstance(key, paramiko.Ed25519Key)
    key_type, encoded = line.split()[:2]
    assert (key.get_name(), key.get_base64()) == (key_type, encoded)
    public = paramiko.PKey.from_type_string(key_type, key.asbytes())
    signature = paramiko.Message(key.sign_ssh_data(b"challenge").asbytes())
    assert public.verify_ssh_sig(b"challenge", signature)


@needs_ssh_keygen
def test_openssh_reads_the_private_key(tmp_path: Path) -> None:
    line = generate_ssh_key(tmp_path / "id")
    derived = _ssh_keygen("-y", "-f", str(tmp_path / "id")).split()
    assert derived[:2] == line.split()[:2]


@needs_ssh_keygen
@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_matches_ssh_keygen(tmp_path: Path, key_type: str) -> None:
    if key_type == "ed25519":
        generate_ssh_key(tmp_path / "key")
    else:
        _ssh_keygen("-q", "-t", key_type, "-N", "", "-f", str(tmp_path / "key"))
    line = (tmp_path / "key.pub").read_text()
    expected = _ssh_keygen("-l", "-E", "sha256", "-f", str(tmp_path / "key.pub")).split()[1]
    assert fingerprint(line) == expected


def test_fingerprint_ignores_the_comment(tmp_path: Path) -> None:
    line = generate_ssh_key(tmp_path / "key", comment="one")
    key_type, encoded = line.split()[:2]
    assert fingerprint(f"{key_type} {encoded}") == fingerprint(line)


@pytest.mark.parametrize(
    "line",
    [
        "ssh-ed25519",
        "ssh-ed25519 not*base64",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        "",
    ],
)
def test_malformed_public_key_lines_are_refused(line: str) -> None:
    with pytest.raises(ValidationError) as err:
        fingerprint(line)
    assert err.value.details["field"] == "public_key"


def test_loading_something_else_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("not a key\n")
    with pytest.raises(ValidationError) as err:
        load_ssh_key(tmp_path / "junk")
    assert err.value.details["field"] == "private_path"
