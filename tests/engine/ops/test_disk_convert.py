"""plain <-> drbd conversion on the master: which node actions, in which order, and what
a failure undoes — against a real SQLite store, with node answers scripted (the real
DRBD sequence runs in tests/vm/test_drbd_convert.py).

The property that matters: no failure at any step of a conversion to drbd ever removes
the primary's data LV, and a conversion to plain removes nothing before the config says
plain.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from herd.config.model import Cluster, Disk, Instance, Node, NodeGroup
from herd.config.store import SQLiteStore
from herd.errors import NodeError
from herd.locking import LockManager
from herd.ops import disk_convert
from herd.ops.base import OpContext
from herd.rpc.client import CallResult

HEALTHY = {
    "connected": True,
    "cstate": "Connected",
    "disk": "UpToDate",
    "peer_disk": "UpToDate",
    "done": True,
    "changed": True,
    "path": "/dev/drbd0",
}


class Services:
    """Node answers that always succeed, except ``fail_on`` (action, node) which raises."""

    def __init__(self, fail_on: tuple[str, str] | None = None) -> None:
        self.fail_on = fail_on
        self.calls: list[tuple[str, str, str]] = []

    def call(self, node: Node, action: str, args: dict[str, Any], timeout: float = 0) -> Any:
        self.calls.append((node.name, action, args["disk"]["template"]))
        if self.fail_on == (action, node.name):
            raise NodeError(f"{action} failed on {node.name}")
        return HEALTHY

    def call_many(
        self, nodes: list[Node], action: str, args: dict[str, Any], timeout: float = 0
    ) -> dict[str, CallResult]:
        out = {}
        for node in nodes:
            try:
                out[node.name] = CallResult(node.name, self.call(node, action, args))
            except NodeError as exc:
                out[node.name] = CallResult(node.name, error=exc)
        return out


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "config.db")
    group = NodeGroup(name="default")
    with s.transaction() as txn:
        txn.add(Cluster(name="c", drbd_port_range=(11000, 11009)))
        txn.add(group)
        n1 = Node(name="n1", primary_ip="10.0.0.1", group=group.uuid)
        txn.add(n1)
        txn.add(Node(name="n2", primary_ip="10.0.0.2", group=group.uuid))
        disk = Disk(name="disk0", size_mib=64, template="plain", nodes=[n1.uuid])
        txn.add(Instance(name="app", disk_template="plain", primary_node=n1.uuid, disks=[disk]))
    return s


def context(store: SQLiteStore, services: Services) -> OpContext:
    ctx = OpContext(
        store=store,
        locks=LockManager(),
        owner="job-1",
        log_fn=lambda *a: None,
        cancel=threading.Event(),
    )
    ctx.services = services
    return ctx


def test_to_drbd_adopts_the_plain_lv_and_records_the_mirror(store: SQLiteStore) -> None:
    services = Services()
    ctx = context(store, services)
    inst = store.get("instance", "app")
    converted = disk_convert.to_drbd(ctx, inst, store.get("node", "n2"))
    saved = store.get("instance", "app")
    params = saved.disks[0].params
    assert saved.disk_template == "drbd" and saved.secondary_nodes == [converted.secondary_nodes[0]]
    assert params["data_lv"] == f"{inst.disks[0].uuid}.disk0" and params["vg"] == "herd"
    assert params["nodes"] == ["n1", "n2"] and params["port"] == 11000
    assert ("n1", "drbd_primary", "drbd") in services.calls
    assert ("n1", "disk_remove", "drbd") not in services.calls


@pytest.mark.parametrize(
    "fail_on",
    [
        ("disk_assemble", "n1"),
        ("disk_create", "n2"),
        ("disk_create", "n1"),
        ("drbd_status", "n1"),
        ("drbd_wait_sync", "n1"),
        ("drbd_secondary", "n1"),
    ],
)
def test_a_failed_conversion_to_drbd_never_removes_the_primary_data(
    store: SQLiteStore, fail_on: tuple[str, str]
) -> None:
    services = Services(fail_on)
    ctx = context(store, services)
    before = store.get("instance", "app")
    with pytest.raises(NodeError):
        disk_convert.to_drbd(ctx, before, store.get("node", "n2"))
    services.fail_on = None
    done = len(services.calls)
    assert ctx.run_undo() == []
    undone = services.calls[done:]
    assert ("n1", "disk_remove", "drbd") not in undone
    assert undone[-1] == ("n1", "disk_shutdown", "plain")
    if fail_on != ("disk_assemble", "n1"):
        assert ("n1", "drbd_release", "drbd") in undone
        assert ("n2", "disk_remove", "drbd") in undone
    assert store.get("instance", "app").to_dict() == before.to_dict()


def test_to_plain_writes_the_config_before_removing_anything(store: SQLiteStore) -> None:
    disk_convert.to_drbd(
        context(store, Services()), store.get("instance", "app"), store.get("node", "n2")
    )
    drbd_inst = store.get("instance", "app")
    services = Services(fail_on=("disk_remove", "n2"))
    converted, problems = disk_convert.to_plain(context(store, services), drbd_inst)
    saved = store.get("instance", "app")
    data_lv = drbd_inst.disks[0].params["data_lv"]
    assert saved.disk_template == "plain" and saved.secondary_nodes == []
    assert saved.disks[0].params == {"vg": "herd", "lv": data_lv}
    assert [c for c in services.calls if c[1] in ("drbd_release", "disk_remove", "disk_shutdown")][
        -3:
    ] == [
        ("n1", "drbd_release", "drbd"),
        ("n2", "disk_remove", "drbd"),
        ("n1", "disk_shutdown", "plain"),
    ]
    assert len(problems) == 1 and problems[0].startswith("n2: disk_remove of disk 0")
    assert converted.disks[0].params == saved.disks[0].params
