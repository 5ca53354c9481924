"""Hand-built and generated snapshots shared by the placement tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from herd.alloc.model import GroupState, InstanceRequest, NodeState, Snapshot


def node(
    name: str,
    group: str = "default",
    memory: int = 32768,
    free: int | None = None,
    disk: int = 100_000,
    free_disk: int | None = None,
    cpus: int = 4,
    **flags: Any,
) -> NodeState:
    """A live node with one LVM pool; ``flags`` sets drained/offline/vm_capable/live."""
    return NodeState(
        name=name,
        group=group,
        total_memory=memory,
        free_memory=memory if free is None else free,
        total_disk={"lvm": disk, "file": disk},
        free_disk={"lvm": disk if free_disk is None else free_disk, "file": disk},
        cpus=cpus,
        **flags,
    )


def cluster(*nodes: NodeState, policies: dict[str, str] | None = None) -> Snapshot:
    """A snapshot holding ``nodes``; every group they name exists (preferred by default)."""
    policies = policies or {}
    names = sorted({n.group for n in nodes} | set(policies))
    groups = {
        g: GroupState(g, f"00000000-0000-4000-8000-{i:012d}", policies.get(g, "preferred"))
        for i, g in enumerate(names)
    }
    return Snapshot("test-cluster", {n.name: n for n in nodes}, groups)


def drbd(name: str, memory: int = 1024, disk: int = 1024, vcpus: int = 1) -> InstanceRequest:
    return InstanceRequest(name, memory, vcpus, (disk,), "drbd")


def plain(name: str, memory: int = 1024, disk: int = 1024, vcpus: int = 1) -> InstanceRequest:
    return InstanceRequest(name, memory, vcpus, (disk,), "plain")


@st.composite
def nodes_st(draw: st.DrawFn) -> list[NodeState]:
    """2-6 nodes in one or two groups, some drained/offline/not vm_capable, varied capacity."""
    count = draw(st.integers(2, 6))
    out = []
    for i in range(count):
        memory = draw(st.sampled_from([4096, 8192, 16384]))
        out.append(
            node(
                f"n{i}",
                group=draw(st.sampled_from(["g1", "g2"])),
                memory=memory,
                free=draw(st.integers(0, memory)),
                disk=50_000,
                free_disk=draw(st.integers(0, 50_000)),
                cpus=draw(st.integers(1, 4)),
                drained=draw(st.booleans()) and draw(st.booleans()),
                offline=draw(st.booleans()) and draw(st.booleans()),
                vm_capable=draw(st.booleans()) or draw(st.booleans()),
            )
        )
    return out


@st.composite
def loaded_snapshot(draw: st.DrawFn) -> Snapshot:
    """A generated cluster with a few mirrored and plain instances already placed on it."""
    snap = cluster(*draw(nodes_st()))
    names = sorted(snap.nodes)
    for i in range(draw(st.integers(0, 6))):
        primary = draw(st.sampled_from(names))
        template = draw(st.sampled_from(["drbd", "plain"]))
        mates = [
            n for n in names if n != primary and snap.nodes[n].group == snap.nodes[primary].group
        ]
        secondary = draw(st.sampled_from(mates)) if template == "drbd" and mates else None
        spec = InstanceRequest(
            f"old{i}",
            draw(st.integers(128, 4096)),
            1,
            (draw(st.integers(1, 4096)),),
            "drbd" if secondary else "plain",
        )
        snap = snap.place(spec, primary, secondary)
    return snap


requests_st = st.builds(
    InstanceRequest,
    name=st.just("new"),
    memory=st.integers(128, 6144),
    vcpus=st.integers(1, 4),
    disks=st.lists(st.integers(1, 8192), min_size=1, max_size=2).map(tuple),
    disk_template=st.sampled_from(["drbd", "plain", "file", "diskless"]),
)
