"""What the instance ops share: sizes, MACs, lookups and the spec sent to nodes."""

from __future__ import annotations

import random
import re
from typing import Any

from herd.config.model import DEFAULT_BEPARAMS, Cluster, Disk, Instance, Nic, Node, NodeGroup
from herd.config.params import fill_params
from herd.errors import PrerequisiteError, ValidationError
from herd.ops.base import OpContext
from herd.ops.cluster import DISK_TEMPLATES as CLUSTER_DISK_TEMPLATES

#: Templates whose disks exist on two nodes (or on storage all nodes see), so the
#: instance can move between them without copying data.
MIRRORED = frozenset({"drbd"})
SHARED = frozenset({"sharedfile", "diskless"})
MOVABLE = MIRRORED | SHARED
DISK_TEMPLATES = ("diskless", *CLUSTER_DISK_TEMPLATES)

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mgt]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_size(value: Any, field: str) -> int:
    """MiB from an int (MiB) or text like '512M', '2G', '1.5T', as gnt-instance accepts."""
    allowed = "a size in MiB, or a number with unit M, G or T (e.g. 512M, 2G)"
    if isinstance(value, bool):
        raise ValidationError(field, value, allowed)
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE.match(str(value).strip())
        if not m:
            raise ValidationError(field, value, allowed)
        size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size < 1:
        raise ValidationError(field, value, allowed)
    return size


def normalise_disks(disks: list[Any]) -> list[dict[str, Any]]:
    """Each disk as {size_mib, mode, name}; accepts sizes or {size, mode, name} dicts."""
    out = []
    for i, disk in enumerate(disks):
        field = f"disks[{i}]"
        spec = disk if isinstance(disk, dict) else {"size": disk}
        unknown = set(spec) - {"size", "mode", "name"}
        if unknown:
            raise ValidationError(f"{field}.{sorted(unknown)[0]}", spec, "keys size, mode, name")
        mode = spec.get("mode", "rw")
        if mode not in ("rw", "ro"):
            raise ValidationError(f"{field}.mode", mode, "one of 'rw', 'ro'")
        out.append(
            {
                "size_mib": parse_size(spec.get("size"), f"{field}.size"),
                "mode": mode,
                "name": str(spec.get("name") or f"disk{i}"),
            }
        )
    return out


def normalise_nics(nics: list[Any], defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """Each NIC as {mac, ip, mode, link, name}; missing values come from cluster nicparams."""
    out = []
    for i, nic in enumerate(nics):
        field = f"nics[{i}]"
        if not isinstance(nic, dict):
            raise ValidationError(field, nic, "a mapping with keys mac, ip, mode, link, name")
        unknown = set(nic) - {"mac", "ip", "mode", "link", "name"}
        if unknown:
            raise ValidationError(
                f"{field}.{sorted(unknown)[0]}", nic, "keys mac, ip, mode, link, name"
            )
        mode = nic.get("mode", defaults.get("mode", "bridged"))
        if mode not in ("bridged", "routed", "openvswitch"):
            raise ValidationError(
                f"{field}.mode", mode, "one of 'bridged', 'routed', 'openvswitch'"
            )
        mac = nic.get("mac")
        if mac is not None and not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
            raise ValidationError(f"{field}.mac", mac, "a lower-case MAC aa:bb:cc:dd:ee:ff")
        out.append(
            {
                "mac": mac,
                "ip": nic.get("ip"),
                "mode": mode,
                "link": nic.get("link", defaults.get("link", "")),
                "name": nic.get("name") or f"nic{i}",
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


def get_node(ctx: OpContext, name: str, field: str) -> Node:
    node = ctx.store.find("node", name)
    if node is None:
        known = ", ".join(n.name for n in ctx.store.list("node")) or "none"
        raise ValidationError(field, name, f"an existing node: {known}")
    return node


def instance_nodes(inst: Instance) -> list[str]:
    """Node uuids holding anything of the instance, primary first."""
    return [inst.primary_node, *inst.secondary_nodes]


def cluster(ctx: OpContext) -> Cluster:
    clusters = ctx.store.list("cluster")
    if not clusters:
        raise PrerequisiteError("the cluster is not initialised: run 'herd cluster init'")
    return clusters[0]


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
    c = cluster(ctx)
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
