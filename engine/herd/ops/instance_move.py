"""``instance.move``: copy an instance's disks to another node, or to another cluster.

Within a cluster the disks stream node to node (zero extents skipped, compressed, TLS
with throw-away certificates) and the instance keeps its identity; the source disks are
removed only after the config points at the copies. ``dest_cluster`` hands the move to
``herd.ops.instance_remote``.
"""

from __future__ import annotations

from typing import Any

from herd.config.model import Disk, Instance, Node
from herd.crypto.ca import ClusterCA
from herd.errors import ValidationError
from herd.ops import instance_remote, zeroing
from herd.ops.base import OpContext, register
from herd.ops.common import cluster_of, get_node
from herd.ops.instance_base import (
    SHUTDOWN_TIMEOUT,
    InstanceOp,
    assemble_disks,
    instance_name_param,
    require_online,
    shutdown_disks,
    start_on,
    stop_for_copy,
)
from herd.ops.instance_common import (
    MIRRORED,
    SHARED,
    disk_arg,
    undo_disk_create,
)
from herd.ops.params import Param
from herd.ops.transfer import (
    BANDWIDTH,
    CIPHERS,
    COMPRESSION,
    STALL_TIMEOUT,
    Endpoint,
    check_ciphers,
    check_compression,
    copy_disk,
)

LOCAL_TEMPLATES = ("file", "sharedfile", "plain")


@register
class InstanceMove(InstanceOp):
    OP_ID = "instance.move"
    SUMMARY = "Copy an instance's disks to another node or cluster and run it there"
    PARAMS = (
        instance_name_param(),
        Param("target_node", str, doc="node of this cluster to move to"),
        Param(
            "dest_disk_template",
            str,
            choices=instance_remote.DEST_TEMPLATES,
            doc="convert the disks to this template on the way (default: keep)",
        ),
        COMPRESSION,
        CIPHERS,
        BANDWIDTH,
        STALL_TIMEOUT,
        SHUTDOWN_TIMEOUT,
        zeroing.ZERO_FREE_SPACE,
        *instance_remote.REMOTE_PARAMS,
    )

    def extra_nodes(self, ctx: OpContext, inst: Instance) -> list[str]:
        if self.params["target_node"] is None:
            return []
        return [get_node(ctx, self.params["target_node"], "target_node").uuid]

    def check(self, ctx: OpContext) -> None:
        p = self.params
        inst = self.instance(ctx)
        c = cluster_of(ctx)
        check_compression(c, p["compression"])
        check_ciphers(c, p["ciphers"], cross_cluster=p["dest_cluster"] is not None)
        zeroing.check(c, p["zero_free_space"])
        if inst.disk_template in MIRRORED:
            raise ValidationError(
                "name",
                inst.name,
                "an instance without DRBD disks: move a "
                "DRBD instance with instance.migrate or replace_disks",
            )
        require_online(self.primary(ctx, inst), "read its disks")
        if p["dest_cluster"] is not None:
            if p["stall_timeout"] is not None:
                raise ValidationError(
                    "stall_timeout", p["stall_timeout"], "nothing for a move between clusters"
                )
            instance_remote.check(self, ctx, inst)
            return
        instance_remote.refuse_remote_only(p)
        if p["target_node"] is None:
            raise ValidationError("target_node", None, "a node name (or dest_cluster)")
        target = get_node(ctx, p["target_node"], "target_node")
        template = p["dest_disk_template"] or inst.disk_template
        if target.uuid == inst.primary_node and template == inst.disk_template:
            raise ValidationError(
                "target_node",
                target.name,
                "a node other than the primary, or a dest_disk_template to convert to",
            )
        if template == inst.disk_template and template in SHARED:
            raise ValidationError(
                "target_node",
                target.name,
                "nothing: shared storage moves with instance.migrate, without copying",
            )
        require_online(target, "receive instances")
        if target.drained:
            raise ValidationError("target_node", target.name, "a node that is not drained")
        if template not in LOCAL_TEMPLATES:
            raise ValidationError(
                "dest_disk_template",
                template,
                "one of " + ", ".join(LOCAL_TEMPLATES) + " within a cluster",
            )
        if template not in c.enabled_disk_templates:
            raise ValidationError(
                "dest_disk_template",
                template,
                "an enabled disk template: " + ", ".join(c.enabled_disk_templates),
            )

    def run(self, ctx: OpContext) -> Any:
        if self.params["dest_cluster"] is not None:
            return instance_remote.move_to_cluster(self, ctx)
        p = self.params
        inst = self.instance(ctx)
        source = self.primary(ctx, inst)
        target = get_node(ctx, p["target_node"], "target_node")
        ca = ClusterCA.load(ctx.services.crypto_dir)
        was_running = stop_for_copy(ctx, inst, source, p["shutdown_timeout"])
        if p["zero_free_space"]:
            zeroing.zero_free_space(ctx, inst, source)
        template = p["dest_disk_template"] or inst.disk_template
        moved = copy_of(inst, template, target)
        create_disks_on(ctx, moved, target)
        source_paths = assemble_disks(ctx, inst, source)
        target_paths = assemble_disks(ctx, moved, target)
        stats = []
        for index, disk in enumerate(inst.disks):
            stats.append(
                copy_disk(
                    ctx,
                    ca,
                    Endpoint(source, source_paths[index]),
                    Endpoint(target, target_paths[index]),
                    disk.size_mib,
                    p["compression"],
                    p["ciphers"],
                    p["bandwidth_limit"],
                    f"disk {index} of {inst.name}",
                    stall_timeout=p["stall_timeout"],
                )
            )
        shutdown_disks(ctx, moved, target)
        old_disks = [disk_arg(inst, i, d) for i, d in enumerate(inst.disks)]
        with ctx.store.transaction() as txn:
            txn.update(moved)
        ctx.forget_undo()
        ctx.log(f"instance {inst.name} now lives on {target.name}")
        for old in old_disks:
            try:
                ctx.services.call(source, "disk_remove", {"disk": old})
            except Exception as exc:  # noqa: BLE001 - the move succeeded; report the leftover
                ctx.log(
                    f"could not remove the old disk {old['index']} on {source.name}: {exc}",
                    "warning",
                )
        if was_running:
            start_on(ctx, moved, target)
            ctx.log(f"instance {inst.name} started on {target.name}")
        return {
            "changed": True,
            "instance": inst.name,
            "primary_node": target.name,
            "disk_template": template,
            "transfers": stats,
        }


def copy_of(inst: Instance, template: str, target: Node) -> Instance:
    """The instance as it will be on ``target``: same identity, disks re-homed there."""
    moved = Instance.from_dict(inst.to_dict())
    moved.primary_node, moved.secondary_nodes, moved.disk_template = target.uuid, [], template
    moved.disks = []
    for disk in inst.disks:
        copy = Disk.from_dict(disk.to_dict())
        copy.template, copy.params, copy.nodes = template, {}, [target.uuid]
        moved.disks.append(copy)
    return moved


def create_disks_on(ctx: OpContext, inst: Instance, node: Node) -> None:
    for index, disk in enumerate(inst.disks):
        arg = disk_arg(inst, index, disk)
        undo_disk_create(ctx, f"remove the new disk {index} on {node.name}", node, arg)
        ctx.services.call(node, "disk_create", {"disk": arg}, timeout=3600)
