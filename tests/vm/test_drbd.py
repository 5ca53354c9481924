"""DRBD instances end to end on real DRBD 8.4 kernels (two qemu guests), master in-process.

One module-wide cluster of the two VM nodes and one instance walked through its life:
create (full initial sync), data written on the primary read back after a failover, a
live migration with the fake hypervisor while both sides are Primary, a replication cut
reported by cluster.verify and healed by a resync, the secondary's volumes replaced and
resynced, and a removal whose port and minors the next disk gets again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import vmnodes

from herd.ops import orphans
from tests.engine.harness import ThreadMaster
from tests.vm.helpers import (
    checksum,
    data_lv,
    disk_params,
    drbd_cluster,
    poll,
    proc_line,
    replication_cut,
    run,
    run_logged,
    write_pattern,
)

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def cluster(
    vm_nodes: vmnodes.VMLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ThreadMaster, vmnodes.VMLab]]:
    with drbd_cluster(vm_nodes, tmp_path_factory, "vmdrbd", ["drbd"]) as running:
        yield running, vm_nodes


def test_create_write_failover_read(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    result, log = run_logged(
        running,
        "instance.add",
        name="d1",
        disk_template="drbd",
        disks=["64M"],
        install=False,
        primary_node=n1.name,
        secondary_node=n2.name,
    )
    assert result["secondary_node"] == n2.name
    assert any(e["type"] == "progress" and "resync" in e["message"] for e in log)
    params = disk_params(running, "d1")
    assert 11000 <= params["port"] <= 14999 and params["minors"] == {n1.name: 0, n2.name: 0}
    assert "ro:Primary/Secondary" in proc_line(n1, 0)
    assert "ds:UpToDate/UpToDate" in proc_line(n1, 0)
    digest = write_pattern(n1, "/dev/drbd0")
    run(running, "instance.failover", name="d1", shutdown_timeout=5)
    inst = running.api.query("instances", ["d1"])[0]
    assert inst["primary_node_name"] == n2.name and inst["secondary_node_names"] == [n1.name]
    assert "ro:Primary/Secondary" in proc_line(n2, 0)
    assert checksum(n2, "/dev/drbd0") == digest


def test_live_migration_goes_through_dual_primary(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    before = checksum(n2, "/dev/drbd0")
    result, log = run_logged(running, "instance.migrate", name="d1")
    assert result["primary_node"] == n1.name and result["live"] is True
    assert any(f"Primary on {n2.name} and {n1.name}" in e["message"] for e in log)
    assert "ro:Primary/Secondary" in proc_line(n1, 0)
    assert "ro:Secondary/Primary" in proc_line(n2, 0)
    conf = n1.ssh("grep allow-two-primaries /etc/drbd.d/*.res").stdout
    assert "allow-two-primaries no" in conf
    assert checksum(n1, "/dev/drbd0") == before


def test_replication_cut_is_reported_and_healed(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    with replication_cut(n1, n2):
        poll("WFConnection", lambda: "cs:WFConnection" in proc_line(n1, 0))
        digest = write_pattern(n1, "/dev/drbd0")
        report = run(running, "cluster.verify")
        messages = [p["message"] for p in report["problems"] if p["node"] == n1.name]
        assert any("degraded (WFConnection" in m for m in messages), report["problems"]
        assert report["drbd"]["d1"][n1.name][0]["cstate"] == "WFConnection"
    poll(
        "resync after reconnect",
        lambda: "cs:Connected" in (line := proc_line(n1, 0)) and "UpToDate/UpToDate" in line,
        timeout=180,
    )
    assert checksum(n2, data_lv(disk_params(running, "d1"))) == digest
    assert run(running, "cluster.verify")["drbd"]["d1"][n2.name][0]["degraded"] is False


def test_replace_disks_on_secondary_resyncs(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    digest = checksum(n1, "/dev/drbd0")
    params = disk_params(running, "d1")
    result, log = run_logged(running, "instance.replace_disks", name="d1", mode="on_secondary")
    assert result["node"] == n2.name
    assert any(e["type"] == "progress" and "%" in e["message"] for e in log)
    assert checksum(n2, data_lv(params)) == digest
    assert "ds:UpToDate/UpToDate" in proc_line(n1, 0)


def test_remove_gives_back_port_and_minors(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    params = disk_params(running, "d1")
    run(running, "instance.remove", name="d1", shutdown_timeout=0)
    for node in lab.nodes:
        assert node.ssh("lvs --noheadings -o lv_name herd").stdout.strip() == ""
        assert proc_line(node, 0) == "" or "cs:Unconfigured" in proc_line(node, 0)
    run(
        running,
        "instance.add",
        name="d2",
        disk_template="drbd",
        disks=["16M"],
        install=False,
        start=False,
        primary_node=n2.name,
        secondary_node=n1.name,
    )
    again = disk_params(running, "d2")
    assert again["port"] == params["port"] and again["minors"] == params["minors"]


def test_verify_names_orphan_lvs_drbd_resources_and_minors(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    assert run(running, "cluster.verify")["orphans"] == {n.name: [] for n in lab.nodes}
    stray, port = str(uuid.uuid4()), running.api.query("cluster")["drbd_port_range"][1]
    # A minor that is only allocated (Unconfigured) holds nothing; one with a network
    # configuration is in use and listens on its port, as a leftover resource would.
    n1.ssh(
        f"lvcreate --yes -L 4m -n {stray}.disk0 herd && touch /etc/drbd.d/herd-{stray}.res && "
        "drbdsetup new-resource stray && drbdsetup new-minor stray 99 0 && "
        f"drbdsetup connect stray ipv4:{n1.ip}:{port} ipv4:{n2.ip}:{port} --protocol=C"
    )
    try:
        report = run(running, "cluster.verify")
        assert {(o["code"], o["object"]) for o in report["orphans"][n1.name]} == {
            (orphans.ORPHAN_LV, f"herd/{stray}.disk0"),
            (orphans.ORPHAN_DRBD, f"/etc/drbd.d/herd-{stray}.res"),
            (orphans.ORPHAN_DRBD, "minor 99"),
            (orphans.ORPHAN_PORT, f"tcp/{port}"),
        }
        assert report["orphans"][lab.nodes[1].name] == []
    finally:
        n1.ssh(f"drbdsetup down stray; lvremove --yes herd/{stray}.disk0; "
               f"rm -f /etc/drbd.d/herd-{stray}.res")  # fmt: skip
