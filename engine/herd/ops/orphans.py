"""Orphans: what a node's inventory shows that the config does not account for.

Pure functions of the config and one node's ``inventory`` answer, so every rule is unit
tested without nodes.  ``cluster.verify`` runs them while it holds every node-res lock
shared: every op that creates or removes something on a node holds that node's node-res
lock exclusively until its config write (or its rollback) is done, so while verify holds
them no job has anything half-made, and what the config does not name is an orphan.

Each finding carries a stable code (in the style of Ganeti's ``--error-codes``) that
scripts match, the node, and the object, named as an operator would look for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from herd.config.model import Cluster, Disk, Instance, Node

ORPHAN_LV = "ENODEORPHANLV"
ORPHAN_FILE = "ENODEORPHANFILE"
ORPHAN_DRBD = "ENODEORPHANDRBD"
ORPHAN_TRANSFER = "ENODEORPHANTRANSFER"
ORPHAN_PROC = "ENODEORPHANPROC"
ORPHAN_PORT = "ENODEORPHANPORT"
#: The node answered, but one of its listers failed: that kind was not checked.
INVENTORY = "ENODEINVENTORY"
#: Transfer states after which an end has nothing left to clean up.
FINISHED = frozenset({"done", "failed"})
DEFAULT_VG = "herd"


@dataclass(frozen=True)
class Finding:
    node: str
    code: str
    object: str
    message: str
    severity: str = "error"


@dataclass
class Expected:
    """What the config says exists on one node."""

    files: set[str] = field(default_factory=set)
    lvs: set[tuple[str, str]] = field(default_factory=set)
    drbd_resources: set[str] = field(default_factory=set)
    drbd_minors: set[int] = field(default_factory=set)
    drbd_ports: set[int] = field(default_factory=set)
    instances: set[str] = field(default_factory=set)


def _disk_nodes(inst: Instance, disk: Disk) -> list[str]:
    return disk.nodes or [inst.primary_node, *inst.secondary_nodes]


def _file_path(inst: Instance, index: int, disk: Disk, storage_dir: str) -> str:
    """The image path relative to the storage dir, as the node's file backend names it."""
    given = disk.params.get("path")
    if isinstance(given, str) and given:
        path = PurePosixPath(given)
        return str(path.relative_to(storage_dir) if path.is_relative_to(storage_dir) else path)
    return f"{inst.uuid}/disk{index}-{disk.uuid}.img"


def _drbd_lvs(disk: Disk) -> set[tuple[str, str]]:
    params, name = disk.params, f"herd-{disk.uuid}"
    vg = str(params.get("vg", params.get("vg_name", DEFAULT_VG)))
    return {
        (vg, str(params.get("data_lv", f"{name}.data"))),
        (vg, str(params.get("meta_lv", f"{name}.meta"))),
    }


def expected_on(node: Node, instances: Iterable[Instance], storage_dir: str) -> Expected:
    """Everything the config places on ``node``; ``storage_dir`` is the node's file dir."""
    exp = Expected()
    for inst in instances:
        if inst.primary_node == node.uuid:
            exp.instances.add(inst.name)
        for index, disk in enumerate(inst.disks):
            if node.uuid not in _disk_nodes(inst, disk):
                continue
            if disk.template == "file":
                exp.files.add(_file_path(inst, index, disk, storage_dir))
            elif disk.template == "plain":
                vg = disk.params.get("vg", disk.params.get("vg_name", DEFAULT_VG))
                exp.lvs.add((str(vg), str(disk.params.get("lv", f"{disk.uuid}.disk{index}"))))
            elif disk.template == "drbd":
                exp.lvs |= _drbd_lvs(disk)
                exp.drbd_resources.add(f"herd-{disk.uuid}")
                minor = disk.params.get("minors", {}).get(node.name)
                if isinstance(minor, int):
                    exp.drbd_minors.add(minor)
                if isinstance(disk.params.get("port"), int):
                    exp.drbd_ports.add(disk.params["port"])
    return exp


def volume_groups(
    cluster: Cluster, groups: Iterable[Any], instances: Iterable[Instance]
) -> list[str]:
    """Every VG Herd may have put an LV in: the default, the diskparams', the disks' own."""
    vgs = {DEFAULT_VG}
    for params in [cluster.diskparams, *(g.diskparams for g in groups)]:
        for template in ("plain", "drbd"):
            if params.get(template, {}).get("vg_name"):
                vgs.add(str(params[template]["vg_name"]))
    for inst in instances:
        for disk in inst.disks:
            for key in ("vg", "vg_name"):
                if disk.template in ("plain", "drbd") and disk.params.get(key):
                    vgs.add(str(disk.params[key]))
    return sorted(vgs)


# -- one rule per kind --------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What the rules need beyond one node's inventory: names to explain a finding with."""

    instance_names: dict[str, str]
    drbd_port_range: tuple[int, int]


Rule = Callable[[str, dict[str, Any], Expected, Context], list[Finding]]


def _files(node: str, inv: dict[str, Any], exp: Expected, ctx: Context) -> list[Finding]:
    base = inv["files"]["storage_dir"]
    found = []
    for item in inv["files"]["files"]:
        if item["path"] in exp.files:
            continue
        owner = ctx.instance_names.get(item["instance_uuid"] or "")
        whose = f"of instance {owner}, which does not keep it here" if owner else "of no instance"
        found.append(
            Finding(
                node,
                ORPHAN_FILE,
                f"{base}/{item['path']}",
                f"file {base}/{item['path']} ({item['size_mib']} MiB) in the storage dir is "
                f"not a disk in the config ({whose})",
            )
        )
    return found


def _lvs(node: str, inv: dict[str, Any], exp: Expected, ctx: Context) -> list[Finding]:
    return [
        Finding(
            node,
            ORPHAN_LV,
            f"{lv['vg']}/{lv['lv']}",
            f"logical volume {lv['vg']}/{lv['lv']} ({lv['size_mib']} MiB) is not a disk "
            "in the config",
        )
        for lv in inv["lvs"]
        if (lv["vg"], lv["lv"]) not in exp.lvs
    ]


def _drbd(node: str, inv: dict[str, Any], exp: Expected, ctx: Context) -> list[Finding]:
    found = []
    for dev in inv["drbd"]:
        name, minor = dev["resource"], dev["minor"]
        if dev["source"] == "file":
            if name not in exp.drbd_resources:
                found.append(
                    Finding(
                        node,
                        ORPHAN_DRBD,
                        dev["path"],
                        f"DRBD resource file {dev['path']} is for no disk in the config",
                    )
                )
        elif name is not None and not name.startswith("herd-"):
            continue  # DRBD 9 names its resources: this one is not Herd's
        elif name is not None and name not in exp.drbd_resources:
            found.append(
                Finding(
                    node,
                    ORPHAN_DRBD,
                    f"resource {name}",
                    f"DRBD resource {name} (minor {minor}) is up for no disk in the config",
                )
            )
        elif minor not in exp.drbd_minors:
            found.append(
                Finding(
                    node,
                    ORPHAN_DRBD,
                    f"minor {minor}",
                    f"DRBD minor {minor} is configured in the kernel but no disk in the "
                    "config uses it on this node",
                )
            )
    return found


def _processes(node: str, inv: dict[str, Any], exp: Expected, ctx: Context) -> list[Finding]:
    return [
        Finding(
            node,
            ORPHAN_PROC,
            f"{p['hypervisor']} {p['name']} (pid {p['pid']})",
            f"{p['hypervisor']} process {p['pid']} runs instance {p['name']}, which the "
            "config does not place on this node",
        )
        for p in inv["processes"]
        if p["name"] not in exp.instances
    ]


def _transfers(node: str, inv: dict[str, Any], exp: Expected, ctx: Context) -> list[Finding]:
    found = []
    for end in inv["transfers"]:
        if not end["alive"] and end["state"] in FINISHED:
            continue  # a finished end is a record: its worker cleaned up (or the abort did)
        what = f"{end['transfer_id']}/{end['role']}" if end["role"] else end["transfer_id"]
        how = (
            f"its worker (pid {end['pid']}) still runs"
            if end["alive"]
            else (f"it stopped in state {end['state'] or 'unknown'} and was never aborted")
        )
        found.append(
            Finding(
                node,
                ORPHAN_TRANSFER,
                end["path"],
                f"transfer end {what} belongs to no running job: {how}",
            )
        )
    return found


def _exports(node: str, inv: dict[str, Any], exp: Expected, ctx: Context) -> list[Finding]:
    return [
        Finding(
            node,
            ORPHAN_TRANSFER,
            work["path"],
            f"export work directory {work['path']} belongs to no running job",
        )
        for work in inv["exports"]
    ]


def _ports(node: str, inv: dict[str, Any], exp: Expected, ctx: Context) -> list[Finding]:
    low, high = ctx.drbd_port_range
    held = {
        end["port"]: end["transfer_id"]
        for end in inv["transfers"]
        if end["alive"] and end["role"] == "receive" and end["port"]
    }
    found = []
    for port in inv["ports"]:
        if port in held:
            why = f"held by the orphan transfer {held[port]}"
        elif low <= port <= high and port not in exp.drbd_ports:
            why = f"in the DRBD port range {low}-{high}, but no disk on this node uses it"
        else:
            continue
        found.append(Finding(node, ORPHAN_PORT, f"tcp/{port}", f"TCP port {port} is in use: {why}"))
    return found


#: Each rule with the inventory kinds it reads; a rule runs only if all of them were listed.
RULES: tuple[tuple[Rule, tuple[str, ...]], ...] = (
    (_files, ("files",)),
    (_lvs, ("lvs",)),
    (_drbd, ("drbd",)),
    (_processes, ("processes",)),
    (_transfers, ("transfers",)),
    (_exports, ("exports",)),
    (_ports, ("ports", "transfers")),
)


def findings(
    node: Node, inventory: dict[str, Any], instances: list[Instance], cluster: Cluster
) -> list[Finding]:
    """Every orphan on ``node`` per its ``inventory`` answer; a kind it could not list is
    reported as such (``ENODEINVENTORY``), never as "nothing there"."""
    errors = inventory.get("errors", {})
    found = [
        Finding(node.name, INVENTORY, kind, f"could not list {kind}: {errors[kind]}")
        for kind in sorted(errors)
    ]
    listed = {kind for _, kinds in RULES for kind in kinds if kind in inventory} - set(errors)
    storage_dir = inventory["files"]["storage_dir"] if "files" in listed else ""
    exp = expected_on(node, instances, storage_dir)
    ctx = Context({i.uuid: i.name for i in instances}, cluster.drbd_port_range)
    for rule, kinds in RULES:
        if listed.issuperset(kinds):
            found += rule(node.name, inventory, exp, ctx)
    return found
