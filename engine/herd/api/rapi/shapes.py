"""Herd's stored objects in the shapes and field names of Ganeti's RAPI v2.

Ganeti's clients (its Python client, htools' ``-m``, web managers) read fields by these
names and in these units (MiB, epoch seconds, role letters), so the translation is kept
to one place. A field Herd has no value for is ``None``: a client must be able to tell
"unknown here" from a made-up value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herd.config.model import Cluster, Instance, Node, NodeGroup

#: Ganeti's node role letters: master, candidate, regular, drained, offline.
ROLE_MASTER, ROLE_CANDIDATE, ROLE_REGULAR, ROLE_DRAINED, ROLE_OFFLINE = "M", "C", "R", "D", "O"


@dataclass(frozen=True)
class Names:
    """UUID → name of nodes and groups, read once per request so a bulk answer of a
    thousand instances does not look each node up a thousand times."""

    nodes: Mapping[str, str]
    groups: Mapping[str, str]

    @classmethod
    def of(cls, nodes: Iterable[Node], groups: Iterable[NodeGroup]) -> Names:
        return cls({n.uuid: n.name for n in nodes}, {g.uuid: g.name for g in groups})


def _common(obj: Instance | Node | NodeGroup) -> dict[str, Any]:
    """What every Ganeti object carries; ``serial_no`` is Herd's per-object serial."""
    return {
        "name": obj.name,
        "uuid": obj.uuid,
        "serial_no": obj.serial,
        "ctime": obj.ctime,
        "mtime": obj.mtime,
        "tags": list(obj.tags),
    }


def _known(value: int) -> int | None:
    """Herd stores 0 for a size or count it has not learnt yet: unknown, not zero."""
    return value or None


def node_role(node: Node, cluster: Cluster | None) -> str:
    """Ganeti's one-letter role, most significant first (an offline master is still M)."""
    if cluster is not None and node.name == cluster.master_node:
        return ROLE_MASTER
    if node.offline:
        return ROLE_OFFLINE
    if node.drained:
        return ROLE_DRAINED
    return ROLE_CANDIDATE if node.master_candidate else ROLE_REGULAR


def node_shape(
    node: Node, cluster: Cluster | None, names: Names, instances: Iterable[Instance]
) -> dict[str, Any]:
    """A node as Ganeti's ``GET /2/nodes/NAME``. Free memory and disk are live values
    in Ganeti (the hypervisor's and the volume group's): Herd reads them only when it
    places, so they are ``None`` here rather than a guess from the config."""
    primaries = sorted(i.name for i in instances if i.primary_node == node.uuid)
    secondaries = sorted(i.name for i in instances if node.uuid in i.secondary_nodes)
    return {
        **_common(node),
        "offline": node.offline,
        "drained": node.drained,
        "master_candidate": node.master_candidate,
        "master_capable": None,
        "vm_capable": node.vm_capable,
        "role": node_role(node, cluster),
        "pip": node.primary_ip,
        # Ganeti reports the primary address where a node has no secondary one.
        "sip": node.secondary_ip or node.primary_ip,
        "group.uuid": node.group,
        "group": names.groups.get(node.group),
        "mtotal": _known(node.total_memory_mib),
        "mfree": None,
        "mnode": None,
        "dtotal": _known(node.total_disk_mib),
        "dfree": None,
        "sptotal": None,
        "spfree": None,
        "ctotal": _known(node.cpus),
        "cnos": None,
        "cnodes": None,
        "csockets": None,
        "hv_state": None,
        "pinst_cnt": len(primaries),
        "sinst_cnt": len(secondaries),
        "pinst_list": primaries,
        "sinst_list": secondaries,
        "ndparams": dict(node.ndparams),
    }


def group_shape(group: NodeGroup, cluster: Cluster | None, nodes: Iterable[Node]) -> dict[str, Any]:
    """A node group as Ganeti's ``GET /2/groups/NAME``; Herd has no instance policy."""
    members = sorted(n.name for n in nodes if n.group == group.uuid)
    cluster_ndparams = cluster.ndparams if cluster else {}
    cluster_diskparams = cluster.diskparams if cluster else {}
    return {
        **_common(group),
        "alloc_policy": group.alloc_policy,
        "node_cnt": len(members),
        "node_list": members,
        "ipolicy": None,
        "custom_ipolicy": None,
        "ndparams": {**cluster_ndparams, **group.ndparams},
        "custom_ndparams": dict(group.ndparams),
        "diskparams": _merge_nested(cluster_diskparams, group.diskparams),
        "custom_diskparams": {k: dict(v) for k, v in group.diskparams.items()},
    }


def _merge_nested(
    base: Mapping[str, Mapping[str, Any]], over: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per-template parameters, the more specific level winning key by key."""
    return {k: {**base.get(k, {}), **over.get(k, {})} for k in sorted({*base, *over})}


def instance_status(admin_state: str, oper_state: bool | None, primary: Node | None) -> str | None:
    """Ganeti's ``status`` word from what the admin asked for and what runs."""
    if primary is not None and primary.offline:
        return "ERROR_nodeoffline"
    if oper_state is None:
        return "ERROR_nodedown"
    if oper_state:
        return "running" if admin_state == "up" else "ERROR_up"
    return "ERROR_down" if admin_state == "up" else "ADMIN_down"


def instance_shape(
    inst: Instance,
    cluster: Cluster | None,
    names: Names,
    oper_state: bool | None,
    primary: Node | None,
) -> dict[str, Any]:
    """An instance as Ganeti's ``GET /2/instances/NAME``; ``oper_state`` is what its
    primary said just now (``None``: it could not be asked). Disk sizes are MiB, as in
    Ganeti; ``beparams`` and ``hvparams`` are the filled values, ``custom_*`` the
    instance's own."""
    be_defaults = cluster.beparams if cluster else {}
    hv_defaults = cluster.hvparams.get(inst.hypervisor, {}) if cluster else {}
    nic_defaults = cluster.nicparams if cluster else {}
    return {
        **_common(inst),
        "os": inst.os,
        "hypervisor": inst.hypervisor,
        "pnode": names.nodes.get(inst.primary_node),
        "snodes": [names.nodes.get(u) for u in inst.secondary_nodes],
        "admin_state": inst.admin_state,
        "admin_up": inst.admin_state == "up",
        "oper_state": oper_state,
        "oper_ram": None,
        "oper_vcpus": None,
        "status": instance_status(inst.admin_state, oper_state, primary),
        "disk_template": inst.disk_template,
        "disk.sizes": [d.size_mib for d in inst.disks],
        "disk.names": [d.name for d in inst.disks],
        "disk.uuids": [d.uuid for d in inst.disks],
        "disk.spindles": [None for _ in inst.disks],
        "disk_usage": None,
        "network_port": None,
        "nic.macs": [n.mac for n in inst.nics],
        "nic.ips": [n.ip for n in inst.nics],
        "nic.modes": [n.mode for n in inst.nics],
        "nic.links": [n.link for n in inst.nics],
        "nic.bridges": [n.link if n.mode == "bridged" else None for n in inst.nics],
        "nic.names": [n.name for n in inst.nics],
        "nic.uuids": [n.uuid for n in inst.nics],
        "nic.networks": [None for _ in inst.nics],
        "beparams": {**be_defaults, **inst.beparams},
        "hvparams": {**hv_defaults, **inst.hvparams},
        "osparams": dict(inst.osparams),
        "custom_beparams": dict(inst.beparams),
        "custom_hvparams": dict(inst.hvparams),
        "custom_nicparams": [{**nic_defaults, "mode": n.mode, "link": n.link} for n in inst.nics],
    }


def cluster_info(cluster: Cluster | None, software_version: str) -> dict[str, Any]:
    """``GET /2/info``: the cluster's settings under Ganeti's names; what Herd does not
    have (Xen, LVM volume group names, networks …) is ``None``."""
    base: dict[str, Any] = {
        "software_version": software_version,
        "protocol_version": None,
        "config_version": None,
        "os_api_version": 20,
        "export_version": 0,
        "vcs_version": None,
        "architecture": None,
    }
    if cluster is None:
        return {**base, "name": None, "master": None}
    hypervisors = list(cluster.enabled_hypervisors)
    return {
        **base,
        "name": cluster.name,
        "uuid": cluster.uuid,
        "master": cluster.master_node,
        "ctime": cluster.ctime,
        "mtime": cluster.mtime,
        "tags": list(cluster.tags),
        "default_hypervisor": hypervisors[0] if hypervisors else None,
        "enabled_hypervisors": hypervisors,
        "enabled_disk_templates": list(cluster.enabled_disk_templates),
        "hvparams": {hv: dict(cluster.hvparams.get(hv, {})) for hv in hypervisors},
        "beparams": {"default": dict(cluster.beparams)},
        "nicparams": {"default": dict(cluster.nicparams)},
        "ndparams": dict(cluster.ndparams),
        "diskparams": {k: dict(v) for k, v in cluster.diskparams.items()},
        "candidate_pool_size": cluster.candidate_pool_size,
        "compression_tools": list(cluster.compression_tools),
        "zeroing_image": cluster.zeroing_image or None,
        "os_hvp": None,
        "osparams": None,
        "ipolicy": None,
        "master_netdev": None,
        "master_netmask": None,
        "volume_group_name": None,
        "drbd_usermode_helper": None,
        "file_storage_dir": None,
        "shared_file_storage_dir": None,
        "default_iallocator": None,
        "reserved_lvs": None,
        "uid_pool": None,
        "primary_ip_version": None,
        "maintain_node_health": None,
    }
