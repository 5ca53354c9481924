"""The placement snapshot: built from config objects and live facts, and its transformations."""

from __future__ import annotations

import pytest

from herd.alloc.model import InstanceRequest, snapshot
from herd.config.model import Cluster, Disk, Instance, Node, NodeGroup
from herd.errors import ValidationError
from tests.engine.alloc.strategies import cluster, drbd, node, plain


def config() -> list[object]:
    group = NodeGroup(name="default")
    spare = NodeGroup(name="spare", alloc_policy="last_resort")
    nodes = [
        Node(name="a", group=group.uuid, cpus=4, total_memory_mib=8192),
        Node(name="b", group=group.uuid, cpus=2, drained=True),
        Node(name="c", group=spare.uuid, offline=True, total_memory_mib=4096),
    ]
    cluster_obj = Cluster(name="c1", beparams={"memory": 256, "vcpus": 1}, tags=["t"])
    up = Instance(
        name="web",
        primary_node=nodes[0].uuid,
        secondary_nodes=[nodes[1].uuid],
        beparams={"memory": 1024, "vcpus": 2},
        disks=[Disk(name="d0", size_mib=2048), Disk(name="d1", size_mib=1024)],
        admin_state="up",
    )
    down = Instance(
        name="db",
        primary_node=nodes[0].uuid,
        disk_template="file",
        disks=[Disk(name="d0", size_mib=500, template="file")],
    )
    return [cluster_obj, group, spare, *nodes, up, down]


FACTS = {
    "a": {
        "memory_total_mib": 8000,
        "memory_free_mib": 5000,
        "cpus": 8,
        "disk_total_mib": 40000,
        "disk_free_mib": 30000,
        "storage": {"plain": {"total_mib": 90000, "free_mib": 60000}},
    },
    "b": {"memory_total_mib": 4000, "memory_free_mib": 3000, "cpus": 2},
}


def test_snapshot_combines_config_and_facts() -> None:
    snap = snapshot(config(), FACTS)  # type: ignore[arg-type]
    assert snap.cluster_name == "c1" and snap.cluster_tags == ("t",)
    assert snap.groups["spare"].alloc_policy == "last_resort"
    a, b, c = snap.nodes["a"], snap.nodes["b"], snap.nodes["c"]
    # Stopped "db" (cluster default 256 MiB) is charged although not running.
    assert a.free_memory == 5000 - 256
    assert (a.total_memory, a.cpus, a.used_vcpus) == (8000, 8, 3)
    assert a.free_disk == {"file": 30000, "lvm": 60000}
    assert a.primary_instances == ("db", "web")
    assert b.drained and b.group == "default"
    assert [(r.instance, r.primary, r.memory) for r in b.secondary_instances] == [
        ("web", "a", 1024)
    ]
    # No facts: kept for N+1 bookkeeping but never placed on.
    assert not c.live and c.offline and c.total_memory == 4096
    web = snap.instances["web"]
    assert (web.primary, web.secondary, web.admin_up) == ("a", "b", True)
    assert web.spec.disks == (2048, 1024) and web.spec.memory == 1024
    assert web.spec.disk_need == 2048 + 1024 + 2 * 128


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        ({"zz": {}}, "node_facts"),
        ({"a": {"memory_total_mib": 1, "memory_free_mib": -1, "cpus": 1}}, "memory_free_mib"),
        ({"a": {"memory_total_mib": 1, "memory_free_mib": 1}}, "cpus"),
        (
            {"a": {**FACTS["b"], "storage": {"rbd": {"total_mib": 1, "free_mib": 1}}}},
            "node_facts.a.storage",
        ),
    ],
)
def test_bad_facts_are_refused_naming_the_field(facts: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        snapshot(config(), facts)  # type: ignore[arg-type]
    assert field in err.value.details["field"]


def test_request_validation_and_derived_needs() -> None:
    assert drbd("x").required_nodes == 2 and drbd("x").mirrored
    assert plain("x").required_nodes == 1 and plain("x").disk_need == 1024
    assert InstanceRequest("x", 1, disk_template="diskless").disk_need == 0
    for bad in (
        {"memory": 0},
        {"memory": 1, "vcpus": True},
        {"memory": 1, "disks": (0,)},
        {"memory": 1, "disk_template": "rbd"},
    ):
        with pytest.raises(ValidationError):
            InstanceRequest("x", **bad)  # type: ignore[arg-type]


def test_place_remove_and_move_keep_the_books_balanced() -> None:
    snap = cluster(node("a"), node("b"), node("c"))
    spec = drbd("i1", memory=1000, disk=500, vcpus=2)
    placed = snap.place(spec, "a", "b")
    assert placed.nodes["a"].free_memory == 32768 - 1000
    assert placed.nodes["a"].used_vcpus == 2
    assert placed.nodes["a"].free_disk["lvm"] == 100_000 - 628
    assert placed.nodes["b"].free_memory == 32768
    assert placed.nodes["b"].free_disk["lvm"] == 100_000 - 628
    assert snap.nodes["a"].free_memory == 32768  # the original is untouched
    assert placed.remove("i1") == snap
    moved = placed.move("i1", "c", "a")
    assert moved.nodes["b"] == snap.nodes["b"]
    assert moved.nodes["c"].primary_instances == ("i1",)
    assert [r.primary for r in moved.nodes["a"].secondary_instances] == ["c"]
    with pytest.raises(ValidationError):
        placed.place(spec, "a", "b")
    with pytest.raises(ValidationError):
        snap.place(plain("p"), "nope", None)
