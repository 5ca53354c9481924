"""What the lab op tests share: a master on lab nodes, the cluster they form, ops that
must leave the config as it was, and the guests and disk files a node holds.

The lab modules check different ops but build, call and inspect alike; one copy of that
here keeps a fix to the harness (a teardown that must not leak a guest, a timeout) from
reaching only some of them.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from herd.errors import HerdError
from tests.engine.harness import ThreadMaster, start_thread_master

REPO = Path(__file__).resolve().parents[3]
#: Only reached when an op hangs: the qemu guests and a loaded CI box are slow.
OP_TIMEOUT = 600
TINY = "herd-image+tiny"
BLANK = "herd-image+blank"

Address = Callable[[Any], dict[str, Any]]


def run(running: ThreadMaster, op: str, **params: Any) -> Any:
    return running.api.run([{"op": op, **params}], timeout=OP_TIMEOUT)


def fails_cleanly(
    running: ThreadMaster, error: type[HerdError], op: str, **params: Any
) -> HerdError:
    """The op fails with ``error`` and the full config dump is what it was before."""
    before = running.api.dump()
    with pytest.raises(error) as info:
        run(running, op, **params)
    assert running.api.dump() == before
    return info.value


def lab_address(node: Any) -> dict[str, Any]:
    """How the master reaches a lab node's own sshd (``node.add``'s and ``cluster.init``'s)."""
    return {"primary_ip": node.ip, "ssh_port": node.port}


def add_node(running: ThreadMaster, node: Any, address: Address = lab_address, **extra: Any) -> Any:
    return run(running, "node.add", name=node.name, **address(node), **extra)


def form_cluster(
    running: ThreadMaster,
    nodes: Sequence[Any],
    name: str,
    address: Address = lab_address,
    **settings: Any,
) -> None:
    """Cluster ``name`` mastered on the first node, with every other node added."""
    first, *others = nodes
    run(running, "cluster.init", name=name, master_node=first.name, **address(first), **settings)
    for node in others:
        add_node(running, node, address)


def remove_all_instances(running: ThreadMaster) -> None:
    """Whatever the tests left, even on a dead node: the shared nodes must not keep guests."""
    for inst in running.api.query("instances"):
        run(running, "instance.remove", name=inst["name"], shutdown_timeout=0, ignore_failures=True)


@contextlib.contextmanager
def lab_master(key_path: str, base: Path) -> Iterator[ThreadMaster]:
    """A master in this process that joins nodes with the lab's bootstrap key; on exit
    it removes every instance and stops."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HERD_BOOTSTRAP_KEY", key_path)
    running = start_thread_master(base)
    try:
        yield running
    finally:
        try:
            remove_all_instances(running)
        finally:
            running.stop()
            mp.undo()


@contextlib.contextmanager
def fake_cluster(lab: Any, base: Path, name: str, **settings: Any) -> Iterator[ThreadMaster]:
    """Cluster ``name`` on every lab node with our OS installed: fake hypervisor, file
    and sharedfile disks and 64 MiB guests unless ``settings`` (cluster.init's) say else."""
    with lab_master(lab.key_path, base) as running:
        defaults = {
            "enabled_hypervisors": ["fake"],
            "enabled_disk_templates": ["file", "sharedfile"],
            "beparams": {"memory": 64},
        }
        form_cluster(running, lab.nodes, name, **{**defaults, **settings})
        install_os(*lab.nodes)
        yield running


def file_instance(name: str, size: str, **extra: Any) -> dict[str, Any]:
    """``instance.add`` parameters for a one-disk file instance of ``size``."""
    return {"name": name, "disk_template": "file", "disks": [size], **extra}


def install_os(*nodes: Any) -> None:
    """What the node role does on real hosts: put our OS definition in the search path."""
    for node in nodes:
        os_dir = node.state_dir / "os"
        os_dir.mkdir(parents=True, exist_ok=True)
        link = os_dir / "herd-image"
        if not link.exists():
            link.symlink_to(REPO / "os" / "herd-image")


def instance(running: ThreadMaster, name: str) -> dict[str, Any]:
    return running.api.query("instances", [name])[0]


def lab_node(lab: Any, name: str) -> Any:
    return next(n for n in lab.nodes if n.name == name)


def netns_cmdlines(node: Any) -> dict[int, list[bytes]]:
    """Every process inside the node's namespace with its arguments (ones gone while
    looking are left out)."""
    pids = subprocess.run(
        ["ip", "netns", "pids", node.netns], capture_output=True, text=True, check=True
    ).stdout.split()
    found = {}
    for pid in pids:
        try:
            found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
    return found


def guest_pids(node: Any, name: str) -> list[int]:
    """Fake guests are real processes: look for one inside the node's namespace."""
    return [
        pid
        for pid, argv in netns_cmdlines(node).items()
        if b"herd.node.hv.fake_guest" in b" ".join(argv) and name.encode() in argv
    ]


def disk_files(node: Any) -> list[Path]:
    return sorted((node.state_dir / "file-storage").rglob("*.img"))


def disk_images(node: Any, inst: dict[str, Any]) -> list[Path]:
    """The files on ``node`` that hold the instance's first disk."""
    return [f for f in disk_files(node) if inst["disks"][0]["uuid"] in f.name]
