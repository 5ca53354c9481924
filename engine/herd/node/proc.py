"""This node's processes and TCP ports, for the inventory listers of each backend.

Lab nodes are network namespaces of one host: they share one pid space and, since each
mounts its own state directory on the same path (/var/lib/herd-node), even the paths on
their processes' command lines look alike.  So a process belongs to this node when it
shares this agent's network and mount namespaces; on an ordinary host that is every
process outside containers, and a container's processes are not Herd's anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")
#: /proc/net/tcp socket states that hold a port: LISTEN, ESTABLISHED, SYN_SENT, SYN_RECV.
#: TIME_WAIT and the closing states are left out: they free the port by themselves.
_HOLDING_STATES = frozenset({"0A", "01", "02", "03"})


def _namespaces(pid: str) -> tuple[str, str]:
    return (os.readlink(PROC / pid / "ns" / "net"), os.readlink(PROC / pid / "ns" / "mnt"))


def own_processes() -> Iterator[tuple[int, list[str]]]:
    """``(pid, argv)`` of every process of this node; kernel threads and zombies (no argv)
    and processes that exit while being read are skipped."""
    mine = _namespaces("self")
    for entry in os.listdir(PROC):
        if not entry.isdigit():
            continue
        try:
            if _namespaces(entry) != mine:
                continue
            raw = (PROC / entry / "cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            yield int(entry), [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]


def python_module(argv: list[str]) -> str | None:
    """The module of a ``python [options] -m MODULE …`` command line, else None."""
    for i, arg in enumerate(argv[1:-1], start=1):
        if arg == "-m":
            return argv[i + 1]
        if not arg.startswith("-"):
            return None
    return None


def arg_value(argv: list[str], flag: str) -> str | None:
    """The word after ``flag`` on a command line, else None."""
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[i + 1]
    return None


def local_ports(
    tables: tuple[Path, ...] = (PROC / "net" / "tcp", PROC / "net" / "tcp6"),
) -> set[int]:
    """TCP ports this node's network namespace holds (listening or connected)."""
    ports: set[int] = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] in _HOLDING_STATES:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
