"""What placement needs to know, frozen into one pure snapshot.

Allocators (the built-in one and external Ganeti iallocators) must decide from a
consistent picture: config objects say which instances live where, live node facts say
how much memory and disk is really free. Mixing live reads into the search would make
results depend on timing, so the snapshot is built once and everything after it is pure
(``place``/``remove`` return new snapshots), which is also what lets an evacuation plan
simulate its moves one after the other.

Memory accounting: ``free_memory`` counts every primary instance as running, even one
that is administratively down, because it may be started at any time and must still fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.config.model import Cluster, Instance, Node, NodeGroup, TopObject
from herd.config.params import fill_params
from herd.errors import ValidationError

#: Storage pool each disk template draws from on a node; plain and drbd share the VG.
POOLS: dict[str, str] = {"drbd": "lvm", "plain": "lvm", "file": "file", "sharedfile": "sharedfile"}
#: Templates that need no node-local space at all.
POOL_FREE_TEMPLATES = frozenset({"diskless"})
#: Templates that replicate to a secondary node (and so need two nodes in one group).
MIRRORED = frozenset({"drbd"})
#: DRBD keeps its metadata in a separate LV of this size per disk (Ganeti's DRBD_META_SIZE).
DRBD_META_MIB = 128
#: Virtual CPUs that may be handed out per physical CPU (Ganeti's default vcpu-ratio).
VCPU_RATIO = 4.0


@dataclass(frozen=True)
class NicSpec:
    """A NIC as an external allocator sees it (network placement hints, no identity)."""

    mac: str = ""
    ip: str | None = None
    mode: str = "bridged"
    link: str = ""


@dataclass(frozen=True)
class InstanceRequest:
    """The resources an instance needs, independent of where it lives."""

    name: str
    memory: int
    vcpus: int = 1
    disks: tuple[int, ...] = ()
    disk_template: str = "drbd"
    #: Restrict placement to this node group (by name); None lets the allocator choose.
    group: str | None = None
    os: str = ""
    hypervisor: str = "kvm"
    tags: tuple[str, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    #: Instances with auto_balance off are left out of N+1 (Ganeti's semantics).
    auto_balance: bool = True

    def __post_init__(self) -> None:
        if self.disk_template not in POOLS and self.disk_template not in POOL_FREE_TEMPLATES:
            allowed = sorted({*POOLS, *POOL_FREE_TEMPLATES})
            raise ValidationError("disk_template", self.disk_template, f"one of {allowed}")
        for fname, value, low in (("memory", self.memory, 1), ("vcpus", self.vcpus, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValidationError(fname, value, f"an integer >= {low}")
        for i, size in enumerate(self.disks):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValidationError(f"disks[{i}]", size, "a size in MiB >= 1")

    @property
    def mirrored(self) -> bool:
        return self.disk_template in MIRRORED

    @property
    def required_nodes(self) -> int:
        return 2 if self.mirrored else 1

    @property
    def pool(self) -> str | None:
        return POOLS.get(self.disk_template)

    @property
    def disk_need(self) -> int:
        """MiB taken from the pool on each node that holds the disks (with DRBD metadata)."""
        meta = DRBD_META_MIB * len(self.disks) if self.mirrored else 0
        return sum(self.disks) + meta if self.pool else 0


@dataclass(frozen=True)
class PlacedInstance:
    """An existing instance: its needs plus where it lives now."""

    spec: InstanceRequest
    primary: str
    secondary: str | None = None
    admin_up: bool = False


@dataclass(frozen=True)
class SecondaryRef:
    """An instance this node replicates, i.e. would have to take over if its primary died."""

    instance: str
    primary: str
    memory: int
    auto_balance: bool = True


@dataclass(frozen=True)
class GroupState:
    name: str
    uuid: str
    alloc_policy: str = "preferred"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeState:
    """One node's capacity and load; disk figures are per storage pool (see ``POOLS``)."""

    name: str
    group: str
    total_memory: int
    free_memory: int
    total_disk: Mapping[str, int] = field(default_factory=dict)
    free_disk: Mapping[str, int] = field(default_factory=dict)
    cpus: int = 1
    used_vcpus: int = 0
    drained: bool = False
    offline: bool = False
    vm_capable: bool = True
    master_candidate: bool = False
    #: False when no live facts were available (unreachable node): nothing is placed there.
    live: bool = True
    primary_instances: tuple[str, ...] = ()
    secondary_instances: tuple[SecondaryRef, ...] = ()
    primary_ip: str = ""
    secondary_ip: str = ""
    tags: tuple[str, ...] = ()

    def disk_free(self, pool: str | None) -> int:
        return self.free_disk.get(pool, 0) if pool else 0

    def disk_total(self, pool: str | None) -> int:
        return self.total_disk.get(pool, 0) if pool else 0


@dataclass(frozen=True)
class Snapshot:
    """The whole cluster as placement sees it; transformations return new snapshots."""

    cluster_name: str
    nodes: Mapping[str, NodeState]
    groups: Mapping[str, GroupState]
    instances: Mapping[str, PlacedInstance] = field(default_factory=dict)
    cluster_tags: tuple[str, ...] = ()
    enabled_hypervisors: tuple[str, ...] = ("kvm",)

    def node(self, name: str) -> NodeState:
        if name not in self.nodes:
            raise ValidationError("node", name, f"one of the nodes {sorted(self.nodes)}")
        return self.nodes[name]

    def instance(self, name: str) -> PlacedInstance:
        if name not in self.instances:
            raise ValidationError("instance", name, "the name of an existing instance")
        return self.instances[name]

    def place(self, spec: InstanceRequest, primary: str, secondary: str | None) -> Snapshot:
        """The snapshot after ``spec`` lands on ``primary`` (replicating to ``secondary``)."""
        if spec.name in self.instances:
            raise ValidationError("instance", spec.name, "a name not already placed")
        nodes = dict(self.nodes)
        pnode = self.node(primary)
        nodes[primary] = dataclasses.replace(
            pnode,
            free_memory=pnode.free_memory - spec.memory,
            used_vcpus=pnode.used_vcpus + spec.vcpus,
            free_disk=_take(pnode.free_disk, spec.pool, spec.disk_need),
            primary_instances=(*pnode.primary_instances, spec.name),
        )
        if secondary is not None:
            snode = self.node(secondary)
            ref = SecondaryRef(spec.name, primary, spec.memory, spec.auto_balance)
            nodes[secondary] = dataclasses.replace(
                snode,
                free_disk=_take(snode.free_disk, spec.pool, spec.disk_need),
                secondary_instances=(*snode.secondary_instances, ref),
            )
        placed = PlacedInstance(spec, primary, secondary, admin_up=True)
        return dataclasses.replace(
            self, nodes=nodes, instances={**self.instances, spec.name: placed}
        )

    def remove(self, name: str) -> Snapshot:
        """The snapshot without instance ``name``: its memory, CPUs and disk are given back."""
        inst = self.instance(name)
        spec = inst.spec
        nodes = dict(self.nodes)
        pnode = nodes[inst.primary]
        nodes[inst.primary] = dataclasses.replace(
            pnode,
            free_memory=pnode.free_memory + spec.memory,
            used_vcpus=pnode.used_vcpus - spec.vcpus,
            free_disk=_take(pnode.free_disk, spec.pool, -spec.disk_need),
            primary_instances=tuple(i for i in pnode.primary_instances if i != name),
        )
        if inst.secondary is not None:
            snode = nodes[inst.secondary]
            nodes[inst.secondary] = dataclasses.replace(
                snode,
                free_disk=_take(snode.free_disk, spec.pool, -spec.disk_need),
                secondary_instances=tuple(
                    r for r in snode.secondary_instances if r.instance != name
                ),
            )
        instances = {k: v for k, v in self.instances.items() if k != name}
        return dataclasses.replace(self, nodes=nodes, instances=instances)

    def move(self, name: str, primary: str, secondary: str | None) -> Snapshot:
        """The snapshot after instance ``name`` now lives on ``primary``/``secondary``."""
        inst = self.instance(name)
        moved = self.remove(name).place(inst.spec, primary, secondary)
        placed = dataclasses.replace(moved.instances[name], admin_up=inst.admin_up)
        return dataclasses.replace(moved, instances={**moved.instances, name: placed})


def _take(free: Mapping[str, int], pool: str | None, amount: int) -> dict[str, int]:
    out = dict(free)
    if pool:
        out[pool] = out.get(pool, 0) - amount
    return out


def request_from_instance(inst: Instance, cluster: Cluster | None) -> InstanceRequest:
    """The needs of an existing instance, with backend params filled from the cluster."""
    be = fill_params(cluster.beparams if cluster else None, None, inst.beparams)
    return InstanceRequest(
        name=inst.name,
        memory=int(be.get("memory", 128)),
        vcpus=int(be.get("vcpus", 1)),
        disks=tuple(d.size_mib for d in inst.disks),
        disk_template=inst.disk_template,
        os=inst.os,
        hypervisor=inst.hypervisor,
        tags=tuple(inst.tags),
        nics=tuple(NicSpec(n.mac, n.ip, n.mode, n.link) for n in inst.nics),
        auto_balance=bool(be.get("auto_balance", True)),
    )


_FACT_KEYS = ("memory_total_mib", "memory_free_mib", "cpus")


def snapshot(
    store_objects: Iterable[TopObject], node_facts: Mapping[str, Mapping[str, Any]]
) -> Snapshot:
    """Build a snapshot from config objects and live facts keyed by node name.

    Facts per node are what the node agent reports: ``memory_total_mib``,
    ``memory_free_mib``, ``cpus``, optionally ``disk_total_mib``/``disk_free_mib`` (the
    filesystem holding file disks) and ``storage`` = {template: {total_mib, free_mib}}
    from ``storage_space``. A node without facts is kept (its instances still count for
    N+1) but marked not live, so nothing is placed on it.
    """
    objects = list(store_objects)
    clusters = [o for o in objects if isinstance(o, Cluster)]
    cluster = clusters[0] if clusters else None
    groups = {g.uuid: g for g in objects if isinstance(g, NodeGroup)}
    nodes = sorted((n for n in objects if isinstance(n, Node)), key=lambda n: n.name)
    node_names = {n.uuid: n.name for n in nodes}
    unknown = sorted(set(node_facts) - set(node_names.values()))
    if unknown:
        raise ValidationError("node_facts", unknown[0], "names of nodes in the config")

    placed: dict[str, PlacedInstance] = {}
    for inst in sorted((i for i in objects if isinstance(i, Instance)), key=lambda i: i.name):
        spec = request_from_instance(inst, cluster)
        secondary = inst.secondary_nodes[0] if inst.secondary_nodes else None
        placed[inst.name] = PlacedInstance(
            spec,
            primary=_node_name(node_names, inst.primary_node, inst.name),
            secondary=_node_name(node_names, secondary, inst.name) if secondary else None,
            admin_up=inst.admin_state == "up",
        )

    states = {
        n.name: _node_state(n, groups, node_facts.get(n.name), placed.values()) for n in nodes
    }
    return Snapshot(
        cluster_name=cluster.name if cluster else "",
        nodes=states,
        groups={
            g.name: GroupState(g.name, g.uuid, g.alloc_policy, tuple(g.tags))
            for g in groups.values()
        },
        instances=placed,
        cluster_tags=tuple(cluster.tags) if cluster else (),
        enabled_hypervisors=tuple(cluster.enabled_hypervisors) if cluster else ("kvm",),
    )


def _node_name(names: Mapping[str, str], key: str, instance: str) -> str:
    """Instances refer to nodes by uuid; older documents may still hold the name."""
    if key in names:
        return names[key]
    if key in names.values():
        return key
    raise ValidationError(f"instance {instance}: node", key, "a node in the config")


def _node_state(
    node: Node,
    groups: Mapping[str, NodeGroup],
    facts: Mapping[str, Any] | None,
    instances: Iterable[PlacedInstance],
) -> NodeState:
    group = groups.get(node.group)
    primaries = [i for i in instances if i.primary == node.name]
    secondaries = [i for i in instances if i.secondary == node.name]
    # What the config alone tells: the whole answer for a node without live facts.
    known = NodeState(
        name=node.name,
        group=group.name if group else node.group,
        total_memory=node.total_memory_mib,
        free_memory=0,
        total_disk={},
        free_disk={},
        cpus=node.cpus or 1,
        used_vcpus=sum(i.spec.vcpus for i in primaries),
        drained=node.drained,
        offline=node.offline,
        vm_capable=node.vm_capable,
        master_candidate=node.master_candidate,
        live=False,
        primary_instances=tuple(i.spec.name for i in primaries),
        secondary_instances=tuple(
            SecondaryRef(i.spec.name, i.primary, i.spec.memory, i.spec.auto_balance)
            for i in secondaries
        ),
        primary_ip=node.primary_ip,
        secondary_ip=node.secondary_ip or node.primary_ip,
        tags=tuple(node.tags),
    )
    if facts is None:
        return known
    values = {key: _fact(node.name, facts, key) for key in _FACT_KEYS}
    total_disk, free_disk = _pools(node.name, facts)
    # Live free memory already excludes running instances; stopped ones are charged too.
    stopped = sum(i.spec.memory for i in primaries if not i.admin_up)
    return dataclasses.replace(
        known,
        total_memory=values["memory_total_mib"],
        free_memory=values["memory_free_mib"] - stopped,
        total_disk=total_disk,
        free_disk=free_disk,
        cpus=values["cpus"] or known.cpus,
        live=True,
    )


def _pools(node: str, facts: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    total: dict[str, int] = {}
    free: dict[str, int] = {}
    if "disk_total_mib" in facts:
        total["file"] = _fact(node, facts, "disk_total_mib")
        free["file"] = _fact(node, facts, "disk_free_mib")
    storage = facts.get("storage") or {}
    if not isinstance(storage, Mapping):
        raise ValidationError(f"node_facts.{node}.storage", storage, "an object per template")
    for template in sorted(storage):
        if template not in POOLS:
            raise ValidationError(f"node_facts.{node}.storage", template, f"one of {list(POOLS)}")
        space = storage[template]
        where = f"{node}.storage.{template}"
        total[POOLS[template]] = _fact(where, space, "total_mib")
        free[POOLS[template]] = _fact(where, space, "free_mib")
    return total, free


def _fact(where: str, facts: Any, key: str) -> int:
    value = facts.get(key) if isinstance(facts, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"node_facts.{where}.{key}", value, "an integer >= 0")
    return value
