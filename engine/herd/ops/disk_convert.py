"""Disk template conversion of a stopped instance between ``plain`` and ``drbd``.

Ganeti's ``gnt-instance modify -t drbd -n NODE`` / ``-t plain``, without copying the data
locally either way: DRBD 8.4 with *external* metadata keeps the data at the start of the
data device, untouched, so the plain LV simply becomes the DRBD data LV (and back). What
changes is around it: a meta LV beside it, a mirror on the new secondary filled by a full
resync with the primary as SyncSource.

To ``drbd``, every step registers its undo first, and the undo of the primary's part
takes DRBD off its LVs without ever removing the data LV. To ``plain``, nothing is
destroyed until the config says ``plain``: the primary's copy is checked to be good and
DRBD is taken down (both harmless for a stopped instance), the config is written, and
only then are the meta LVs and the secondary's copy removed; what cannot be removed then
(a dead secondary) is reported as left behind, as ``instance.remove`` does.
"""

from __future__ import annotations

from typing import Any

from herd.config.model import Instance, Node
from herd.errors import HerdError
from herd.ops import drbd
from herd.ops.base import OpContext
from herd.ops.instance_common import disk_arg
from herd.ops.undo import node_arg, node_of, undo_handler

PLAIN = "plain"


def to_drbd(ctx: OpContext, inst: Instance, secondary: Node) -> Instance:
    """Mirror a plain instance's disks to ``secondary``; the converted instance."""
    primary = ctx.store.get("node", inst.primary_node)
    converted = Instance.from_dict(inst.to_dict())
    converted.disk_template = drbd.TEMPLATE
    converted.secondary_nodes = [secondary.uuid]
    with drbd.reserved(ctx.owner):
        drbd.assign_params(ctx, converted, primary, secondary, adopt_plain=True)
        for disk in converted.disks:
            disk.template = drbd.TEMPLATE
            disk.nodes = [primary.uuid, secondary.uuid]
        for index, disk in enumerate(inst.disks):
            arg = {"disk": disk_arg(inst, index, disk)}
            ctx.undo(
                f"deactivate plain disk {index} of {inst.name} on {primary.name}",
                "disk.shutdown",
                node=node_arg(primary),
                **arg,
            )
            # DRBD attaches to the LV's device node, which a stopped plain disk lacks.
            ctx.services.call(primary, "disk_assemble", arg)
        ctx.log(f"mirroring {inst.name} from {primary.name} to {secondary.name}")
        drbd.create(ctx, converted, primary, secondary, skip_sync=False, adopt=True)
        drbd.shutdown(ctx, converted, primary)
        with ctx.store.transaction() as txn:
            drbd.check_unique(txn, converted)
            txn.update(converted)
    ctx.forget_undo()
    ctx.log(f"{inst.name} converted to drbd, secondary {secondary.name}")
    return converted


@undo_handler("disk.shutdown")
def _shutdown(ctx: OpContext, args: dict[str, Any]) -> None:
    ctx.services.call(node_of(args), "disk_shutdown", {"disk": args["disk"]})


def to_plain(ctx: OpContext, inst: Instance) -> tuple[Instance, list[str]]:
    """Keep only the primary's data LVs; the converted instance and what was left behind."""
    primary = ctx.store.get("node", inst.primary_node)
    secondary = drbd.peer_of(ctx, inst, primary)
    drbd.require_good_copy(ctx, inst, primary)
    drbd.shutdown(ctx, inst, primary)
    converted = Instance.from_dict(inst.to_dict())
    converted.disk_template = PLAIN
    converted.secondary_nodes = []
    for disk in converted.disks:
        disk.template = PLAIN
        disk.params = {"vg": disk.params["vg"], "lv": disk.params["data_lv"]}
        disk.nodes = [primary.uuid]
    with ctx.store.transaction() as txn:
        txn.update(converted)
    ctx.log(f"{inst.name} converted to plain on {primary.name}; removing the mirror")
    problems = []
    for index, disk in enumerate(inst.disks):
        steps = [
            (primary, "drbd_release", disk_arg(inst, index, disk)),
            (secondary, "disk_remove", disk_arg(inst, index, disk)),
            (primary, "disk_shutdown", disk_arg(converted, index, converted.disks[index])),
        ]
        for node, action, arg in steps:
            error = f"node {node.name} is offline" if node.offline else None
            if error is None:
                try:
                    ctx.services.call(node, action, {"disk": arg}, timeout=600)
                except HerdError as exc:
                    error = str(exc)
            if error is not None:
                problem = f"{node.name}: {action} of disk {index}: {error}"
                ctx.log(f"left behind: {problem}", "warning")
                problems.append(problem)
    return converted, problems
