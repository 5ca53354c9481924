"""Atomic, mode-preserving writes of key material."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from herd.crypto.files import PRIVATE_MODE, PUBLIC_MODE, write_atomic


def test_replacing_a_readable_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_atomic(path, b"secret", PRIVATE_MODE)
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == PRIVATE_MODE
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_public_files_are_world_readable(tmp_path: Path) -> None:
    write_atomic(tmp_path / "cert.pem", b"cert", PUBLIC_MODE)
    assert stat.S_IMODE((tmp_path / "cert.pem").stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes", PRIVATE_MODE)  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]
