"""Actions that describe the node: liveness and the facts node add and verify check."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import herd
from herd.errors import NodeError
from herd.node.actions.registry import NodeContext, action

MEMINFO = Path("/proc/meminfo")
MIB = 1024 * 1024


@action("ping")
def ping(ctx: NodeContext) -> dict[str, Any]:
    """Cheapest proof that the agent runs, with what the master needs to sanity-check it."""
    return {
        "changed": False,
        "version": herd.__version__,
        "hostname": socket.gethostname(),
        "time": time.time(),
    }


@action("node_info")
def node_info(ctx: NodeContext) -> dict[str, Any]:
    """Capacity facts used when adding and verifying a node (memory, CPUs, storage)."""
    mem = read_meminfo()
    try:
        disk = shutil.disk_usage(ctx.root)
    except OSError as exc:
        raise NodeError(f"node storage dir {ctx.root} unusable: {exc}", path=str(ctx.root)) from exc
    return {
        "changed": False,
        "hostname": socket.gethostname(),
        "memory_total_mib": mem["MemTotal"] // 1024,
        "memory_free_mib": mem.get("MemAvailable", mem.get("MemFree", 0)) // 1024,
        "cpus": os.cpu_count() or 1,
        "storage_dir": str(ctx.root),
        "disk_total_mib": disk.total // MIB,
        "disk_free_mib": disk.free // MIB,
        "engine_version": herd.__version__,
        "python_version": platform.python_version(),
        "time": time.time(),
    }


def read_meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """``/proc/meminfo`` as {field: KiB}; MemAvailable is what a new instance can really get."""
    values: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0])
    if "MemTotal" not in values:
        raise NodeError(f"{path} has no MemTotal", path=str(path))
    return values
