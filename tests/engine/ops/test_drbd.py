"""DRBD allocation on the master: ports, minors, secrets, LV names, and no clash between
concurrent jobs — against a real SQLite store, no nodes needed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from herd.config.model import Cluster, Disk, Instance, Node, NodeGroup
from herd.config.store import SQLiteStore
from herd.errors import ConflictError, PrerequisiteError
from herd.locking import LockManager
from herd.ops import drbd
from herd.ops.base import OpContext


def drbd_instance(name: str, port: int, minors: dict[str, int]) -> Instance:
    disk = Disk(name="disk0", size_mib=64, template="drbd", params={"port": port, "minors": minors})
    return Instance(name=name, disk_template="drbd", disks=[disk])


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "config.db")
    group = NodeGroup(name="default", diskparams={"plain": {"vg_name": "groupvg"}})
    with s.transaction() as txn:
        txn.add(Cluster(name="c", drbd_port_range=(11000, 11009)))
        txn.add(group)
        txn.add(Node(name="n1", primary_ip="10.0.0.1", secondary_ip="10.1.0.1", group=group.uuid))
        txn.add(Node(name="n2", primary_ip="10.0.0.2", group=group.uuid))
        txn.add(drbd_instance("old", 11000, {"n1": 0, "n2": 1}))
        txn.add(drbd_instance("older", 11002, {"n1": 2, "n2": 0}))
    return s


def context(store: SQLiteStore, owner: str) -> OpContext:
    return OpContext(
        store=store,
        locks=LockManager(),
        owner=owner,
        log_fn=lambda *a: None,
        cancel=threading.Event(),
    )


def test_used_resources_and_lowest_free(store: SQLiteStore) -> None:
    ports, minors = drbd.used_resources(store.list("instance"))
    assert ports == {11000, 11002}
    assert minors == {"n1": {0, 2}, "n2": {0, 1}}
    assert drbd.lowest_free(ports, 11000, 11009, "port") == 11001
    with pytest.raises(PrerequisiteError, match="no free DRBD port"):
        drbd.lowest_free({1, 2}, 1, 2, "port")


def test_volume_group_prefers_drbd_then_plain_group_over_cluster() -> None:
    c, g = Cluster(name="c"), NodeGroup(name="g")
    assert drbd.volume_group(c, g) == "herd"
    c.diskparams = {"plain": {"vg_name": "cvg"}}
    assert drbd.volume_group(c, g) == "cvg"
    g.diskparams = {"plain": {"vg_name": "gvg"}}
    assert drbd.volume_group(c, g) == "gvg"
    c.diskparams["drbd"] = {"vg_name": "dvg"}
    assert drbd.volume_group(c, g) == "dvg"


def test_assign_params_fills_every_disk(store: SQLiteStore) -> None:
    n1, n2 = store.get("node", "n1"), store.get("node", "n2")
    inst = Instance(name="new", disks=[Disk(name="d0", size_mib=8), Disk(name="d1", size_mib=16)])
    with drbd.reserved("job-1"):
        drbd.assign_params(context(store, "job-1"), inst, n1, n2)
        held = drbd.RESERVATIONS.held("job-1")
    first, second = (d.params for d in inst.disks)
    assert (first["port"], second["port"]) == (11001, 11003)
    assert first["minors"] == {"n1": 1, "n2": 2} and second["minors"] == {"n1": 3, "n2": 3}
    assert first["nodes"] == ["n1", "n2"]
    assert first["addresses"] == {"n1": "10.1.0.1", "n2": "10.0.0.2"}
    assert first["vg"] == "groupvg"
    assert first["data_lv"] == f"{inst.disks[0].uuid}.disk0_data"
    assert second["meta_lv"] == f"{inst.disks[1].uuid}.disk1_meta"
    assert first["secret"] != second["secret"] and len(first["secret"]) >= 32
    assert held == ({11001, 11003}, {"n1": {1, 3}, "n2": {2, 3}})
    assert drbd.RESERVATIONS.held("job-1") == (set(), {})


def test_concurrent_jobs_never_share_a_port_or_minor(store: SQLiteStore) -> None:
    table = drbd.Reservations()
    got: dict[str, list[tuple[int, dict[str, int]]]] = {}
    barrier = threading.Barrier(4)

    def job(owner: str) -> None:
        barrier.wait()
        got[owner] = [
            table.allocate(owner, store.list("instance"), (11000, 11009), ["n1", "n2"])
            for _ in range(2)
        ]

    threads = [threading.Thread(target=job, args=(f"job-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allocations = [a for found in got.values() for a in found]
    ports = [port for port, _ in allocations]
    assert len(set(ports)) == 8 and not set(ports) & {11000, 11002}
    for node in ("n1", "n2"):
        minors = [m[node] for _, m in allocations]
        assert len(set(minors)) == 8
    with pytest.raises(PrerequisiteError):
        table.allocate("job-9", store.list("instance"), (11000, 11009), ["n1"])
    table.release("job-0")
    port, _ = table.allocate("job-9", store.list("instance"), (11000, 11009), ["n1"])
    assert port in {p for p, _ in got["job-0"]}


def test_reservation_is_released_when_the_op_fails(store: SQLiteStore) -> None:
    with pytest.raises(RuntimeError), drbd.reserved("job-x"):
        drbd.RESERVATIONS.allocate("job-x", store.list("instance"), (11000, 11009), ["n1"])
        raise RuntimeError("create failed")
    assert drbd.RESERVATIONS.held("job-x") == (set(), {})


@pytest.mark.parametrize(
    ("port", "minors", "clash"),
    [
        (11000, {"n1": 5, "n2": 5}, "port"),
        (11005, {"n1": 2, "n2": 5}, "minor"),
        (11005, {"n1": 5, "n2": 2}, None),
    ],
)
def test_final_check_inside_the_write(
    store: SQLiteStore, port: int, minors: dict[str, int], clash: str | None
) -> None:
    """The transaction that records a disk refuses a port or (per node) minor in use."""
    inst = drbd_instance("late", port, minors)
    before = store.dump()
    if clash is None:
        with store.transaction() as txn:
            drbd.check_unique(txn, inst)
            txn.add(inst)
        assert store.find("instance", "late") is not None
        return
    with pytest.raises(ConflictError) as info, store.transaction() as txn:
        drbd.check_unique(txn, inst)
        txn.add(inst)
    assert info.value.details["field"] == clash
    assert store.dump() == before


def test_two_disks_of_one_instance_cannot_share(store: SQLiteStore) -> None:
    inst = drbd_instance("twins", 11005, {"n1": 7})
    params = {"port": 11006, "minors": {"n1": 7}}
    inst.disks.append(Disk(name="disk1", template="drbd", params=params))
    with pytest.raises(ConflictError, match="minor 7"), store.transaction() as txn:
        drbd.check_unique(txn, inst)


def test_statuses_decide_verify_severity(store: SQLiteStore) -> None:
    """Split brain and StandAlone are errors, a degraded pair a warning, healthy nothing."""
    n1, n2 = store.get("node", "n1"), store.get("node", "n2")
    answers = {
        "n1": {
            "split_brain": False,
            "cstate": "WFConnection",
            "configured": True,
            "degraded": True,
            "sync_percent": None,
            "disk": "UpToDate",
            "peer_disk": "DUnknown",
        },
        "n2": {
            "split_brain": True,
            "cstate": "StandAlone",
            "configured": True,
            "degraded": True,
            "sync_percent": None,
            "disk": "UpToDate",
            "peer_disk": "DUnknown",
        },
    }

    class Services:
        def call(self, node: Node, action: str, args: dict[str, Any], timeout: float) -> Any:
            assert action == "drbd_status"
            return answers[node.name]

    ctx = context(store, "verify")
    ctx.services = Services()
    inst = drbd_instance("x", 11005, {"n1": 5, "n2": 5})
    inst.primary_node, inst.secondary_nodes = n1.uuid, [n2.uuid]
    report, problems = drbd.verify(ctx, inst, {n1.uuid: n1, n2.uuid: n2})
    assert report["n1"][0]["cstate"] == "WFConnection"
    assert problems == [
        ("n1", "warning", "x disk 0: degraded (WFConnection, disks UpToDate/DUnknown)"),
        ("n2", "error", "x disk 0: split brain (StandAlone)"),
    ]
