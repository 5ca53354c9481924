"""What the instance ops share: sizes, MACs, lookups and the spec sent to nodes."""

from __future__ import annotations

import random
import re
from typing import Any

from herd.config.model import DEFAULT_BEPARAMS, Cluster, Disk, Instance, Nic, Node, NodeGroup
from herd.config.params import fill_params
from herd.errors import PrerequisiteError, ValidationError
from herd.ops.base import OpContext
from herd.ops.common import cluster_of
from herd.ops.levels import NIC_FIELDS, check_item_name, check_level
from herd.ops.params import Param
from herd.ops.undo import node_arg

#: Templates whose disks exist on two nodes (or on storage all nodes see), so the
#: instance can move between them without copying data.
MIRRORED = frozenset({"drbd"})
SHARED = frozenset({"sharedfile", "diskless"})
MOVABLE = MIRRORED | SHARED

_SIZE = re.compile(r"^(\d{1,15}(?:\.\d{1,6})?)\s*([mgt]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024}
#: 16 TiB: the largest file ext4 holds with 4 KiB blocks, so file disks cannot be larger
#: on the usual node filesystem, and one limit serves every template. A size beyond it is
#: a slip of the keyboard (10**15 MiB was accepted before), refused before any node is
#: asked for the space.
MAX_DISK_MIB = 16 * 1024 * 1024
SIZE_ALLOWED = (
    f"a size in MiB from 1 to {MAX_DISK_MIB} (16 TiB), or a number with unit M, G or T "
    "(e.g. 512M, 2G)"
)

DISK_FIELDS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("size", object, allowed=SIZE_ALLOWED, doc="size"),
        Param("mode", str, choices=("rw", "ro"), doc="read-write or read-only"),
        Param("name", str, check=check_item_name, doc="disk name"),
    )
}


def parse_size(value: Any, field: str) -> int:
    """MiB from an int (MiB) or text like '512M', '2G', '1.5T', as gnt-instance accepts."""
    if isinstance(value, bool):
        raise ValidationError(field, value, SIZE_ALLOWED)
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.match(str(value).strip())
        if not m:
            raise ValidationError(field, value, SIZE_ALLOWED)
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if not 1 <= size <= MAX_DISK_MIB:
        raise ValidationError(field, value, SIZE_ALLOWED)
    return size


def _given(item: dict[str, Any]) -> dict[str, Any]:
    """A null inside a disk or NIC means "not given", as it does for op parameters."""
    return {k: v for k, v in item.items() if v is not None}


def normalise_disks(disks: list[Any], fname: str = "disks") -> list[dict[str, Any]]:
    """Each disk as {size_mib, mode, name}; accepts sizes or {size, mode, name} dicts."""
    out = []
    for i, disk in enumerate(disks):
        where = f"{fname}[{i}]"
        given = check_level(
            DISK_FIELDS, _given(disk) if isinstance(disk, dict) else {"size": disk}, where
        )
        out.append(
            {
                "size_mib": parse_size(given.get("size"), f"{where}.size"),
                "mode": given.get("mode", "rw"),
                "name": given.get("name", f"disk{i}"),
            }
        )
    return out


def check_disks(disks: list[Any], fname: str) -> list[Any]:
    """``Param.structure`` of a disk list: every disk checked when the job is submitted."""
    normalise_disks(disks, fname)
    return disks


def check_nics(nics: list[Any], fname: str) -> list[Any]:
    """``Param.structure`` of a NIC list: every field checked, no MAC given twice."""
    owner: dict[str, int] = {}
    for i, nic in enumerate(nics):
        where = f"{fname}[{i}]"
        if not isinstance(nic, dict):
            allowed = "a mapping with keys " + ", ".join(sorted(NIC_FIELDS))
            raise ValidationError(where, nic, allowed)
        mac = check_level(NIC_FIELDS, _given(nic), where).get("mac")
        if mac in owner:
            raise ValidationError(
                f"{where}.mac",
                mac,
                f"a MAC no other NIC of the instance has ({fname}[{owner[mac]}] has it)",
            )
        if mac is not None:
            owner[mac] = i
    return nics


def normalise_nics(nics: list[Any], defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """Each NIC as {mac, ip, mode, link, name}; missing values come from cluster nicparams."""
    check_nics(nics, "nics")
    out = []
    for i, nic in enumerate(map(_given, nics)):
        out.append(
            {
                "mac": nic.get("mac"),
                "ip": nic.get("ip"),
                "mode": nic.get("mode", defaults.get("mode", "bridged")),
                "link": nic.get("link", defaults.get("link", "")),
                "name": nic.get("name", f"nic{i}"),
            }
        )
    return out


def used_macs(instances: list[Instance]) -> set[str]:
    return {nic.mac for inst in instances for nic in inst.nics}


def generate_mac(prefix: str, used: set[str], rng: random.Random | None = None) -> str:
    """A MAC under the cluster prefix that no instance uses yet."""
    rng = rng or random.SystemRandom()
    for _ in range(1000):
        mac = prefix + "".join(f":{rng.randrange(256):02x}" for _ in range(3))
        if mac not in used:
            used.add(mac)
            return mac
    raise PrerequisiteError(f"no free MAC address left under prefix {prefix}")


def get_instance(ctx: OpContext, name: str, field: str = "name") -> Instance:
    inst = ctx.store.find("instance", name)
    if inst is None:
        known = ", ".join(i.name for i in ctx.store.list("instance")) or "none"
        raise ValidationError(field, name, f"an existing instance: {known}")
    return inst


def instance_nodes(inst: Instance) -> list[str]:
    """Node uuids holding anything of the instance, primary first."""
    return [inst.primary_node, *inst.secondary_nodes]


def group_of(ctx: OpContext, node: Node) -> NodeGroup:
    return ctx.store.get("nodegroup", node.group)


def filled_hvparams(c: Cluster, g: NodeGroup, inst: Instance) -> dict[str, Any]:
    return fill_params(
        c.hvparams.get(inst.hypervisor), g.hvparams.get(inst.hypervisor), inst.hvparams
    )


def filled_beparams(c: Cluster, inst: Instance) -> dict[str, Any]:
    return fill_params(DEFAULT_BEPARAMS, c.beparams, inst.beparams)


def disk_spec(index: int, disk: Disk) -> dict[str, Any]:
    return {
        "uuid": disk.uuid,
        "index": index,
        "template": disk.template,
        "size_mib": disk.size_mib,
        "mode": disk.mode,
        "params": dict(disk.params),
    }


def disk_arg(inst: Instance, index: int, disk: Disk) -> dict[str, Any]:
    """A disk as disk actions take it: outside an instance spec it names its instance."""
    return {**disk_spec(index, disk), "instance_uuid": inst.uuid}


def undo_disk_create(ctx: OpContext, what: str, node: Node, disk: dict[str, Any]) -> None:
    """Before ``disk_create`` of ``disk`` (a :func:`disk_arg`) on ``node``: its removal
    (the handler is in herd.ops.drbd, beside the DRBD port and minor reservations)."""
    ctx.undo(what, "disk.remove", node=node_arg(node), disk=disk)


def config_has_disk(ctx: OpContext, instance_uuid: str, disk_uuid: str, node_uuid: str) -> bool:
    """True if the stored instance keeps this disk on this node."""
    inst = ctx.store.find("instance", instance_uuid)
    if not isinstance(inst, Instance):
        return False
    return any(d.uuid == disk_uuid and node_uuid in d.nodes for d in inst.disks)


def nic_spec(index: int, nic: Nic) -> dict[str, Any]:
    return {
        "uuid": nic.uuid,
        "index": index,
        "mac": nic.mac,
        "ip": nic.ip,
        "mode": nic.mode,
        "link": nic.link,
    }


def instance_spec(ctx: OpContext, inst: Instance) -> dict[str, Any]:
    """The self-contained description nodes act on; parameters filled level by level."""
    c = cluster_of(ctx)
    g = group_of(ctx, ctx.store.get("node", inst.primary_node))
    return {
        "name": inst.name,
        "uuid": inst.uuid,
        "hypervisor": inst.hypervisor,
        "hvparams": filled_hvparams(c, g, inst),
        "beparams": filled_beparams(c, inst),
        "disks": [disk_spec(i, d) for i, d in enumerate(inst.disks)],
        "nics": [nic_spec(i, n) for i, n in enumerate(inst.nics)],
        "os": inst.os,
        "osparams": dict(inst.osparams),
    }


def identity(ctx: OpContext, inst: Instance) -> dict[str, Any]:
    """What makes the instance itself, in ``instance.add``'s terms: its disks, NICs (with
    their MACs), OS and filled sizes. Moves and exports carry exactly this."""
    be = filled_beparams(cluster_of(ctx), inst)
    return {
        "disks": [{"size": d.size_mib, "mode": d.mode, "name": d.name} for d in inst.disks],
        "nics": [
            {"mac": n.mac, "ip": n.ip, "mode": n.mode, "link": n.link, "name": n.name}
            for n in inst.nics
        ],
        "os": inst.os or None,
        "hypervisor": inst.hypervisor,
        "hvparams": inst.hvparams,
        "memory": int(be["memory"]),
        "vcpus": int(be["vcpus"]),
        "osparams": inst.osparams,
        "tags": inst.tags,
    }


def forget_source(ctx: OpContext, inst: Instance) -> None:
    """The instance now lives elsewhere: its disks and config entry go (warnings only)."""
    for uuid in [inst.primary_node, *inst.secondary_nodes]:
        node = ctx.store.get("node", uuid)
        for index, disk in enumerate(inst.disks):
            try:
                ctx.services.call(node, "disk_remove", {"disk": disk_arg(inst, index, disk)})
            except Exception as exc:  # noqa: BLE001 - the move succeeded; report leftovers
                ctx.log(f"could not remove disk {index} on {node.name}: {exc}", "warning")
    with ctx.store.transaction() as txn:
        txn.delete(txn.get("instance", inst.uuid))
    ctx.locks.unregister("instance", [inst.uuid], owner=ctx.owner)
    ctx.log(f"source instance {inst.name} removed")
