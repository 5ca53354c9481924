"""Shared by the OS and os-action tests: our own OS definition, fake ones, specs, disks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
HERD_IMAGE = REPO / "os" / "herd-image"
NOOP = Path("/usr/share/ganeti/os/noop")


def make_os(
    parent: Path,
    name: str,
    api: str = "20\n",
    scripts: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """An OS directory whose scripts are the given shell bodies (default: succeed)."""
    d = parent / name
    d.mkdir(parents=True)
    (d / "ganeti_api_version").write_text(api)
    bodies = {s: "exit 0" for s in ("create", "import", "export", "rename", "verify")}
    bodies.update(scripts or {})
    for script, body in bodies.items():
        (d / script).write_text(f"#!/bin/sh\n{body}\n")
        os.chmod(d / script, 0o755)
    for fname, text in {"parameters.list": "", **(files or {})}.items():
        (d / fname).write_text(text)
    return d


def sparse(path: Path, mib: int = 32) -> str:
    with open(path, "wb") as f:
        f.truncate(mib * 1024 * 1024)
    return str(path)


def spec(os_name: str = "herd-image+tiny", disks: int = 1, **extra: object) -> dict[str, object]:
    return {
        "name": "web1",
        "uuid": "inst-uuid-1",
        "hypervisor": "kvm",
        "hvparams": {"disk_type": "virtio", "nic_type": "e1000", "acpi": True},
        "beparams": {"memory": 512, "vcpus": 2},
        "disks": [
            {"uuid": f"disk-{i}", "index": i, "template": "file", "size_mib": 32, "mode": "rw"}
            for i in range(disks)
        ],
        "nics": [
            {
                "uuid": "nic-0",
                "index": 0,
                "mac": "aa:00:00:00:00:01",
                "ip": "192.0.2.10",
                "mode": "bridged",
                "link": "br0",
            },
            {
                "uuid": "nic-1",
                "index": 1,
                "mac": "aa:00:00:00:00:02",
                "mode": "routed",
                "link": "rt100",
            },
        ],
        "os": os_name,
        "osparams": {},
        **extra,
    }


@pytest.fixture
def noop() -> Path:
    if not (NOOP / "create").exists():
        pytest.skip("Debian package ganeti-os-noop is not installed")
    return NOOP
