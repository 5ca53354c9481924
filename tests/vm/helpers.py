"""What the VM test modules share: a two-guest cluster per module, jobs, DRBD and data checks.

The guests live for the whole session, so a module's cluster must leave them as it found
them: every instance removed, and then — in case a failed test left something behind —
any Herd DRBD resource taken down and the volume group emptied.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import vmnodes

from tests.engine.harness import ThreadMaster
from tests.engine.ops.labsupport import form_cluster, lab_master
from tests.engine.ops.labsupport import run as run  # the VM tests call ops through here

PATTERN_MIB = 16
#: The marks of a test file outside tests/vm that uses the VM guests: tests/vm's conftest
#: (its marker and skip rule) does not reach other directories.
ON_VM_GUESTS = [
    pytest.mark.lab,
    pytest.mark.skipif(
        vmnodes.missing_requirements() is not None, reason=str(vmnodes.missing_requirements())
    ),
]
#: Leftovers of a failed test: Herd's resource files name one resource each.
SCRUB = (
    'for f in /etc/drbd.d/herd-*.res; do [ -e "$f" ] || continue; '
    'drbdadm -c "$f" secondary all; drbdadm -c "$f" down all; rm -f "$f"; done; '
    "rm -rf /var/lib/herd-node/drbd; lvremove -qfy herd >/dev/null 2>&1; true"
)


def run_logged(running: ThreadMaster, op: str, **params: Any) -> tuple[Any, list[dict[str, Any]]]:
    job = running.api.submit([{"op": op, **params}])
    running.api.wait(job, timeout=600)
    doc = running.api.job(job)
    assert doc["status"] == "success", doc.get("error")
    return doc["ops"][0]["result"], doc["log"]


@contextmanager
def drbd_cluster(
    lab: vmnodes.VMLab,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    templates: list[str],
) -> Iterator[ThreadMaster]:
    """A master in-process with both guests as nodes; cleaned up for the next module."""
    prepare_nodes(lab)
    try:
        with lab_master(lab.key_path, tmp_path_factory.mktemp("master")) as running:
            form_cluster(
                running,
                lab.nodes,
                name,
                address=vm_address,
                enabled_hypervisors=["fake"],
                enabled_disk_templates=templates,
                beparams={"memory": 32},
            )
            yield running
    finally:
        scrub_nodes(lab)


def vm_address(node: vmnodes.VMNode) -> dict[str, Any]:
    """The guests' sshd listens on the usual port; their host key is given, to be pinned."""
    return {"primary_ip": node.ip, "host_key": node.host_key}


def prepare_nodes(lab: vmnodes.VMLab) -> None:
    """What the node role does on real hosts: the agent's state dir and the volume group."""
    for node in lab.nodes:
        node.ssh(
            "mkdir -p /var/lib/herd-node && { vgs herd >/dev/null 2>&1 || "
            "{ pvcreate -q /dev/vdb; vgcreate -q herd /dev/vdb; }; }"
        )


def scrub_nodes(lab: vmnodes.VMLab) -> None:
    """Leave the session's guests as the next module expects them, whatever a test left."""
    for node in lab.nodes:
        node.ssh(SCRUB, check=False)


def dual_primaries(lab: vmnodes.VMLab) -> list[str]:
    """Every DRBD minor Primary on both sides, as each guest's /proc/drbd reports it."""
    return [
        f"{node.name}: {line.strip()}"
        for node in lab.nodes
        for line in node.ssh("cat /proc/drbd").stdout.splitlines()
        if "ro:Primary/Primary" in line
    ]


def disk_params(running: ThreadMaster, name: str) -> dict[str, Any]:
    return running.api.query("instances", [name])[0]["disks"][0]["params"]


def proc_line(node: vmnodes.VMNode, minor: int) -> str:
    for line in node.ssh("cat /proc/drbd").stdout.splitlines():
        if line.strip().startswith(f"{minor}:"):
            return line
    return ""


def poll(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def checksum(node: vmnodes.VMNode, device: str, mib: int = PATTERN_MIB) -> str:
    out = node.ssh(f"dd if={device} bs=1M count={mib} iflag=direct 2>/dev/null | sha256sum")
    return out.stdout.split()[0]


def write_pattern(node: vmnodes.VMNode, device: str) -> str:
    """Random data written past the page cache; its checksum is what the peer must read."""
    node.ssh(f"head -c {PATTERN_MIB << 20} /dev/urandom >/tmp/pattern")
    node.ssh(f"dd if=/tmp/pattern of={device} bs=1M oflag=direct conv=fsync 2>/dev/null")
    return node.ssh("sha256sum /tmp/pattern").stdout.split()[0]


def data_lv(params: dict[str, Any]) -> str:
    return f"/dev/{params['vg']}/{params['data_lv']}"


@contextmanager
def replication_cut(a: vmnodes.VMNode, b: vmnodes.VMNode) -> Iterator[None]:
    """Blackhole routes cut DRBD between the guests while the master still reaches both."""
    for node, peer in ((a, b), (b, a)):
        node.ssh(f"ip route add blackhole {peer.ip}/32")
    try:
        yield
    finally:
        for node, peer in ((a, b), (b, a)):
            node.ssh(f"ip route del blackhole {peer.ip}/32", check=False)
