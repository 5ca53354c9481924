"""Transfer fixtures: a cluster CA with per-transfer credentials, and disk images."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from herd.crypto.ca import CertKey, ClusterCA

MIB = 1024 * 1024


@dataclass(frozen=True)
class Creds:
    """One end's credentials as files (for contexts) and as PEM text (for actions)."""

    transfer_id: str
    ca_pem: str
    cert_file: Path
    key_file: Path
    pair: CertKey

    @property
    def args(self) -> dict[str, str]:
        return {
            "cert_pem": self.pair.cert_pem.decode(),
            "key_pem": self.pair.key_pem.decode(),
            "ca_pem": self.ca_pem,
        }


@pytest.fixture(scope="session")
def cluster_ca() -> ClusterCA:
    return ClusterCA.create("test.example")


@pytest.fixture
def issue(cluster_ca: ClusterCA, tmp_path: Path) -> Callable[..., Creds]:
    def make(transfer_id: str, end: str = "end") -> Creds:
        pair = cluster_ca.issue_transfer_cert(transfer_id)
        cert, key = tmp_path / f"{transfer_id}-{end}.pem", tmp_path / f"{transfer_id}-{end}.key"
        pair.save(cert, key)
        return Creds(transfer_id, cluster_ca.cert_pem.decode(), cert, key, pair)

    return make


def write_image(path: Path, size: int, pieces: dict[int, bytes]) -> bytes:
    """A sparse file of ``size`` bytes holding ``pieces`` at their offsets; its content."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
    return path.read_bytes()


def mixed(n: int, seed: int = 1) -> bytes:
    """Half random, half repetitive text: compressible, but not trivially."""
    rnd = os.urandom(n // 2)
    text = (f"line {seed} of some log file with a counter\n" * (n // 40 + 1)).encode()
    return (rnd + text)[:n]
