"""Helpers for node tests: fake-hypervisor instance specs as the master would send them."""

from __future__ import annotations

from typing import Any


def instance_spec(name: str = "web1", disks: int = 1, **hvparams: Any) -> dict[str, Any]:
    """A fake-hypervisor spec as the master would send it, with a fast heartbeat."""
    uuid = f"{name}-uuid"
    return {
        "name": name,
        "uuid": uuid,
        "hypervisor": "fake",
        "hvparams": {"heartbeat_interval": 0.05, **hvparams},
        "beparams": {"memory": 128, "vcpus": 1},
        "disks": [
            {"uuid": f"{name}-d{i}", "index": i, "template": "file", "size_mib": 4, "params": {}}
            for i in range(disks)
        ],
        "nics": [],
        "os": "noop+default",
        "osparams": {},
    }
