"""Disk activation, plain <-> drbd conversion and live DRBD state on real DRBD 8.4 guests.

One instance walks through: a plain disk gets a pattern through activate_disks, is
converted to drbd (the plain LV becomes the DRBD data LV and the primary the sync
source), fails over and is read back on the other node; the live instance query shows
the pair Connected/UpToDate, then degraded while replication is cut; deactivation is
refused while the instance runs; converting back to plain keeps the data on the primary
and removes the mirror, its meta volumes, its resource files and its port.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import vmnodes

from herd.errors import PrerequisiteError
from tests.engine.harness import ThreadMaster
from tests.vm.helpers import (
    checksum,
    disk_params,
    drbd_cluster,
    poll,
    proc_line,
    replication_cut,
    run,
    write_pattern,
)

pytestmark = pytest.mark.vm

STATE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def cluster(
    vm_nodes: vmnodes.VMLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ThreadMaster, vmnodes.VMLab]]:
    with drbd_cluster(vm_nodes, tmp_path_factory, "vmconvert", ["plain", "drbd"]) as running:
        yield running, vm_nodes


def live(running: ThreadMaster, name: str) -> dict[str, Any]:
    answer = running.api.request("GET", "/v1/query/instances", query={"names": name, "live": "1"})
    return answer["items"][0]


def lvs(node: vmnodes.VMNode) -> set[str]:
    return set(node.ssh("lvs --noheadings -o lv_name herd").stdout.split())


def test_plain_disk_activated_written_and_converted_to_drbd(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    run(
        running,
        "instance.add",
        name="c1",
        disk_template="plain",
        disks=["64M"],
        install=False,
        start=False,
        primary_node=n1.name,
    )
    paths = run(running, "instance.activate_disks", name="c1")["disks"]
    assert list(paths) == [n1.name] and paths[n1.name][0].startswith("/dev/herd/")
    plain_lv = paths[n1.name][0].rsplit("/", 1)[1]
    STATE["digest"] = write_pattern(n1, paths[n1.name][0])
    assert run(running, "instance.deactivate_disks", name="c1")["changed"] is True

    result = run(
        running, "instance.modify", name="c1", disk_template="drbd", secondary_node=n2.name
    )
    assert result["changes"]["disk_template"] == {"before": "plain", "after": "drbd"}
    inst = running.api.query("instances", ["c1"])[0]
    assert inst["disk_template"] == "drbd" and inst["secondary_node_names"] == [n2.name]
    params = disk_params(running, "c1")
    assert params["data_lv"] == plain_lv and params["nodes"] == [n1.name, n2.name]
    assert lvs(n1) == {plain_lv, params["meta_lv"]} and lvs(n2) == lvs(n1)
    # Converted disks are left down, like any stopped instance's.
    assert proc_line(n1, params["minors"][n1.name]) == ""
    STATE["params"] = params


def test_converted_data_is_read_on_the_other_node_after_failover(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    run(running, "instance.failover", name="c1", shutdown_timeout=5)
    paths = run(running, "instance.activate_disks", name="c1")["disks"]
    minors = STATE["params"]["minors"]
    assert paths == {
        n2.name: [f"/dev/drbd{minors[n2.name]}"],
        n1.name: [f"/dev/drbd{minors[n1.name]}"],
    }
    line = proc_line(n2, minors[n2.name])
    assert "cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate" in line
    assert checksum(n2, paths[n2.name][0]) == STATE["digest"]


def test_live_query_shows_the_pair_then_the_cut(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    doc = live(running, "c1")
    assert doc["oper_state"] == "stopped" and doc["live_errors"] == []
    primary = doc["drbd"][n2.name][0]
    assert (primary["role"], primary["peer_role"]) == ("Primary", "Secondary")
    assert (primary["cstate"], primary["disk"], primary["peer_disk"]) == (
        "Connected",
        "UpToDate",
        "UpToDate",
    )
    assert primary["degraded"] is False and primary["split_brain"] is False
    assert doc["drbd"][n1.name][0]["role"] == "Secondary"
    assert "drbd" not in running.api.query("instances", ["c1"])[0]
    with replication_cut(n1, n2):
        cut = poll(
            "the cut seen live",
            lambda: (
                (d := live(running, "c1")["drbd"][n2.name][0])["cstate"] == "WFConnection" and d
            ),
        )
        assert cut["degraded"] is True and cut["peer_disk"] == "DUnknown"
    minor = STATE["params"]["minors"][n2.name]
    poll("reconnect", lambda: "ds:UpToDate/UpToDate" in proc_line(n2, minor), timeout=180)
    assert live(running, "c1")["drbd"][n2.name][0]["degraded"] is False


def test_deactivate_refused_while_running(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    run(running, "instance.start", name="c1")
    assert live(running, "c1")["oper_state"] == "running"
    with pytest.raises(PrerequisiteError, match="running"):
        run(running, "instance.deactivate_disks", name="c1")
    assert "ro:Primary" in proc_line(n2, STATE["params"]["minors"][n2.name])
    run(running, "instance.stop", name="c1", shutdown_timeout=5)
    for node in (n1, n2):
        assert proc_line(node, STATE["params"]["minors"][node.name]) == ""


def test_drbd_back_to_plain_keeps_the_primary_data(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    params = STATE["params"]
    result = run(running, "instance.modify", name="c1", disk_template="plain")
    assert result["cleanup_problems"] == []
    inst = running.api.query("instances", ["c1"])[0]
    assert inst["disk_template"] == "plain" and inst["secondary_node_names"] == []
    assert inst["disks"][0]["params"] == {"vg": "herd", "lv": params["data_lv"]}
    assert all(
        "port" not in d["params"] for i in running.api.query("instances") for d in i["disks"]
    )
    assert lvs(n2) == {params["data_lv"]} and lvs(n1) == set()
    for node in (n1, n2):
        assert "herd-" not in node.ssh("ls /etc/drbd.d/").stdout
        assert proc_line(node, params["minors"][node.name]) == ""
    paths = run(running, "instance.activate_disks", name="c1")["disks"]
    assert paths == {n2.name: [f"/dev/herd/{params['data_lv']}"]}
    assert checksum(n2, paths[n2.name][0]) == STATE["digest"]
    run(running, "instance.deactivate_disks", name="c1")
