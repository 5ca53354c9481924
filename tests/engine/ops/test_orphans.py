"""Orphan rules: a node's inventory against the config, as pure functions."""

from __future__ import annotations

from typing import Any

from herd.config.model import Cluster, Disk, Instance, Node, NodeGroup
from herd.ops import orphans

N1 = Node(name="n1", primary_ip="192.0.2.1")
N2 = Node(name="n2", primary_ip="192.0.2.2")
CLUSTER = Cluster(name="c", master_node="n1", drbd_port_range=(11000, 11999))
BASE = "/var/lib/herd-node/file-storage"


def file_instance(name: str, node: Node) -> Instance:
    inst = Instance(name=name, primary_node=node.uuid, hypervisor="fake", disk_template="file")
    inst.disks = [Disk(name="d0", size_mib=8, template="file", nodes=[node.uuid])]
    return inst


def drbd_instance(name: str, port: int, minors: dict[str, int]) -> Instance:
    inst = Instance(
        name=name, primary_node=N1.uuid, secondary_nodes=[N2.uuid], disk_template="drbd"
    )
    disk = Disk(name="d0", size_mib=8, template="drbd", nodes=[N1.uuid, N2.uuid])
    disk.params = {
        "port": port, "minors": minors, "nodes": ["n1", "n2"], "vg": "herd",
        "data_lv": f"{disk.uuid}.disk0_data", "meta_lv": f"{disk.uuid}.disk0_meta",
    }  # fmt: skip
    inst.disks = [disk]
    return inst


def inventory(**kinds: Any) -> dict[str, Any]:
    empty: dict[str, Any] = {
        "files": {"storage_dir": BASE, "files": []},
        "lvs": [], "drbd": [], "processes": [], "transfers": [], "exports": [], "ports": [],
        "errors": {},
    }  # fmt: skip
    return {**empty, **kinds}


def image(inst: Instance, index: int = 0) -> dict[str, Any]:
    disk = inst.disks[index]
    path = f"{inst.uuid}/disk{index}-{disk.uuid}.img"
    return {"path": path, "instance_uuid": inst.uuid, "disk_uuid": disk.uuid, "size_mib": 8}


def codes(found: list[orphans.Finding]) -> list[tuple[str, str]]:
    return [(f.code, f.object) for f in found]


def test_a_node_holding_exactly_the_config_has_no_orphans() -> None:
    web, db = file_instance("web", N1), drbd_instance("db", 11000, {"n1": 0, "n2": 3})
    disk = db.disks[0]
    inv = inventory(
        files={"storage_dir": BASE, "files": [image(web)]},
        lvs=[{"vg": "herd", "lv": disk.params[k], "size_mib": 8} for k in ("data_lv", "meta_lv")],
        drbd=[
            {"resource": f"herd-{disk.uuid}", "minor": None, "source": "file", "path": "/x.res"},
            {"resource": None, "minor": 0, "source": "kernel"},
        ],
        processes=[{"hypervisor": "fake", "name": "web", "pid": 10}],
        transfers=[{"transfer_id": "xfer-1", "role": "send", "path": "/t", "state": "done",
                    "alive": False, "pid": None, "port": 11500}],
        ports=[22, 11000, 40000],
    )  # fmt: skip
    assert orphans.findings(N1, inv, [web, db], CLUSTER) == []


def test_files_not_in_the_config_are_orphans_naming_their_instance() -> None:
    web, other = file_instance("web", N1), file_instance("other", N2)
    stray = {"path": "gone/disk0-x.img", "instance_uuid": "gone", "disk_uuid": "x", "size_mib": 1}
    inv = inventory(files={"storage_dir": BASE, "files": [image(web), image(other), stray]})
    found = orphans.findings(N1, inv, [web, other], CLUSTER)
    assert codes(found) == [
        (orphans.ORPHAN_FILE, f"{BASE}/{image(other)['path']}"),
        (orphans.ORPHAN_FILE, f"{BASE}/gone/disk0-x.img"),
    ]
    assert "instance other" in found[0].message and "no instance" in found[1].message
    assert {f.node for f in found} == {"n1"} and {f.severity for f in found} == {"error"}


def test_a_disk_with_its_own_path_is_matched_by_that_path() -> None:
    web = file_instance("web", N1)
    web.disks[0].params = {"path": f"{BASE}/custom/web.img"}
    inv = inventory(files={"storage_dir": BASE, "files": [
        {"path": "custom/web.img", "instance_uuid": "custom", "disk_uuid": None, "size_mib": 8}
    ]})  # fmt: skip
    assert orphans.findings(N1, inv, [web], CLUSTER) == []


def test_lvs_of_removed_disks_are_orphans_plain_and_drbd_alike() -> None:
    plain = Instance(name="p", primary_node=N1.uuid, disk_template="plain")
    plain.disks = [Disk(name="d0", size_mib=8, template="plain", nodes=[N1.uuid])]
    kept = f"{plain.disks[0].uuid}.disk0"
    stray = "0b7e5a52-4a44-4b1c-9a0e-0c3f3b9d2a11.disk1_meta"
    inv = inventory(lvs=[{"vg": "herd", "lv": n, "size_mib": 8} for n in (kept, stray)])
    assert codes(orphans.findings(N1, inv, [plain], CLUSTER)) == [
        (orphans.ORPHAN_LV, f"herd/{stray}")
    ]
    assert codes(orphans.findings(N2, inv, [plain], CLUSTER)) == [
        (orphans.ORPHAN_LV, f"herd/{kept}"),
        (orphans.ORPHAN_LV, f"herd/{stray}"),
    ]


def test_drbd_resource_files_and_kernel_devices_of_no_disk_are_orphans() -> None:
    db = drbd_instance("db", 11000, {"n1": 0, "n2": 3})
    mine = f"herd-{db.disks[0].uuid}"
    inv = inventory(
        drbd=[
            {"resource": "herd-gone", "minor": None, "source": "file", "path": "/e/herd-gone.res"},
            {"resource": None, "minor": 0, "source": "kernel"},
            {"resource": None, "minor": 7, "source": "kernel"},
            {"resource": "herd-gone", "minor": 8, "source": "kernel"},
            {"resource": mine, "minor": 9, "source": "kernel"},
            {"resource": "site-backup", "minor": 20, "source": "kernel"},
        ]
    )  # fmt: skip
    assert codes(orphans.findings(N1, inv, [db], CLUSTER)) == [
        (orphans.ORPHAN_DRBD, "/e/herd-gone.res"),
        (orphans.ORPHAN_DRBD, "minor 7"),
        (orphans.ORPHAN_DRBD, "resource herd-gone"),
        (orphans.ORPHAN_DRBD, "minor 9"),
    ]


def test_processes_of_instances_placed_elsewhere_or_nowhere_are_orphans() -> None:
    web = file_instance("web", N1)
    procs = [{"hypervisor": "fake", "name": n, "pid": p} for n, p in (("web", 1), ("ghost", 2))]
    assert codes(orphans.findings(N1, inventory(processes=procs), [web], CLUSTER)) == [
        (orphans.ORPHAN_PROC, "fake ghost (pid 2)")
    ]
    assert len(orphans.findings(N2, inventory(processes=procs), [web], CLUSTER)) == 2


def test_unfinished_or_running_transfers_and_export_work_dirs_are_orphans() -> None:
    def end(
        tid: str, state: str | None, alive: bool, role: str | None = "receive"
    ) -> dict[str, Any]:
        pid, port = (5, 40001) if alive else (None, None)
        return {"transfer_id": tid, "role": role, "path": f"/t/{tid}", "state": state,
                "alive": alive, "pid": pid, "port": port}  # fmt: skip

    inv = inventory(
        transfers=[end("done", "done", False), end("failed", "failed", False),
                   end("dead", "running", False), end("live", "running", True),
                   end("bare", None, False, role=None)],
        exports=[{"token": "t1", "path": "/x/export/.work-t1"}],
        ports=[40001],
    )  # fmt: skip
    found = orphans.findings(N1, inv, [], CLUSTER)
    assert codes(found) == [
        (orphans.ORPHAN_TRANSFER, "/t/dead"),
        (orphans.ORPHAN_TRANSFER, "/t/live"),
        (orphans.ORPHAN_TRANSFER, "/t/bare"),
        (orphans.ORPHAN_TRANSFER, "/x/export/.work-t1"),
        (orphans.ORPHAN_PORT, "tcp/40001"),
    ]
    assert "never aborted" in found[0].message and "pid 5" in found[1].message
    assert "live" in found[4].message


def test_ports_in_the_drbd_range_held_by_no_disk_are_orphans() -> None:
    db = drbd_instance("db", 11000, {"n1": 0, "n2": 3})
    inv = inventory(ports=[22, 10999, 11000, 11001, 11999, 12000])
    assert codes(orphans.findings(N1, inv, [db], CLUSTER)) == [
        (orphans.ORPHAN_PORT, "tcp/11001"),
        (orphans.ORPHAN_PORT, "tcp/11999"),
    ]


def test_a_kind_the_node_could_not_list_is_reported_not_assumed_clean() -> None:
    inv = inventory(errors={"lvs": "lvs timed out after 120 s"})
    del inv["lvs"]
    inv["processes"] = [{"hypervisor": "fake", "name": "ghost", "pid": 2}]
    found = orphans.findings(N1, inv, [], CLUSTER)
    assert codes(found) == [(orphans.INVENTORY, "lvs"), (orphans.ORPHAN_PROC, "fake ghost (pid 2)")]
    assert "lvs timed out" in found[0].message
    without_transfers = inventory(errors={"transfers": "denied"}, ports=[11005])
    del without_transfers["transfers"]
    assert codes(orphans.findings(N1, without_transfers, [], CLUSTER)) == [
        (orphans.INVENTORY, "transfers")
    ]


def test_volume_groups_cover_default_diskparams_and_disks() -> None:
    cluster = Cluster(name="c", diskparams={"plain": {"vg_name": "fast"}})
    group = NodeGroup(name="g", diskparams={"drbd": {"vg_name": "repl"}})
    plain = Instance(name="p", primary_node=N1.uuid, disk_template="plain")
    plain.disks = [Disk(name="d0", template="plain", params={"vg": "adopted"})]
    assert orphans.volume_groups(cluster, [group], [plain]) == ["adopted", "fast", "herd", "repl"]
