"""``instance.replace_disks``: rebuild one copy of a DRBD instance's disks from the other.

A lost or corrupted copy is recreated empty and filled by a DRBD resync from the copy
that is still good, which must be UpToDate before anything is wiped: replacing the
only good copy would be data loss, so that is refused, not attempted.  For a new
secondary the old secondary's volumes are kept until the new one is in sync, so until
then the data still exists twice.
"""

from __future__ import annotations

from typing import Any

from herd.alloc import relocate, snapshot
from herd.config.model import Instance, Node, TopObject
from herd.errors import HerdError, PrerequisiteError, ValidationError
from herd.ops import drbd
from herd.ops.base import OpContext, register
from herd.ops.common import cluster_of, get_node
from herd.ops.instance_base import (
    InstanceOp,
    instance_name_param,
    require_online,
    require_secondary_candidate,
    runtime_state,
)
from herd.ops.instance_common import disk_arg, undo_disk_create
from herd.ops.params import Param
from herd.ops.placement import node_facts
from herd.ops.undo import instance_arg, instance_of, node_arg, node_of, undo_handler

MODES = ("on_primary", "on_secondary", "new_secondary")


@register
class InstanceReplaceDisks(InstanceOp):
    OP_ID = "instance.replace_disks"
    SUMMARY = "Recreate a DRBD instance's disks on one node and resync, or use a new secondary"
    PARAMS = (
        instance_name_param(),
        Param(
            "mode",
            str,
            required=True,
            choices=MODES,
            doc="on_primary / on_secondary: recreate that node's copy from the other; "
            "new_secondary: mirror to another node",
        ),
        Param(
            "new_secondary",
            str,
            doc="new_secondary mode: the node to mirror to (default: the allocator's choice)",
        ),
    )

    def extra_nodes(self, ctx: OpContext, inst: Instance) -> list[str]:
        if self.params["mode"] != "new_secondary":
            return []
        if self.params["new_secondary"] is not None:
            return [get_node(ctx, self.params["new_secondary"], "new_secondary").uuid]
        return [n.uuid for n in ctx.store.list("node")]

    def check(self, ctx: OpContext) -> None:
        inst = self.instance(ctx)
        p = self.params
        if not drbd.is_drbd(inst):
            raise ValidationError(
                "name", inst.name, f"a drbd instance ('{inst.disk_template}' has no mirror)"
            )
        if p["new_secondary"] is not None and p["mode"] != "new_secondary":
            raise ValidationError("new_secondary", p["new_secondary"], "only with new_secondary")
        primary = self.primary(ctx, inst)
        require_online(primary, "replace disks")
        if p["mode"] == "on_primary":
            state = runtime_state(ctx, inst, primary)
            if inst.admin_state == "up" or (state and state.get("state") == "running"):
                raise PrerequisiteError(
                    f"instance {inst.name} is running: stop it before replacing the disks "
                    "of its primary",
                    instance=inst.name,
                )
        if p["mode"] == "new_secondary" and p["new_secondary"] is not None:
            node = get_node(ctx, p["new_secondary"], "new_secondary")
            if node.uuid in (inst.primary_node, *inst.secondary_nodes):
                raise ValidationError(
                    "new_secondary", node.name, "a node that holds no copy of the instance yet"
                )
            require_secondary_candidate(node, primary)

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        primary = self.primary(ctx, inst)
        secondary = drbd.peer_of(ctx, inst, primary)
        mode = self.params["mode"]
        if mode == "new_secondary":
            return self.new_secondary(ctx, inst, primary, secondary)
        target, source = (primary, secondary) if mode == "on_primary" else (secondary, primary)
        require_online(source, "resync from it")
        require_online(target, "recreate disks there")
        drbd.require_good_copy(ctx, inst, source)
        for index, disk in enumerate(inst.disks):
            arg = {"disk": disk_arg(inst, index, disk)}
            ctx.services.call(target, "disk_remove", arg, timeout=600)
            ctx.services.call(target, "disk_create", arg, timeout=3600)
        ctx.log(f"disks of {inst.name} recreated on {target.name}; resyncing from {source.name}")
        drbd.require_connected(ctx, inst, source)
        drbd.wait_sync(ctx, inst, source)
        self.settle(ctx, inst, [primary, secondary])
        return {"changed": True, "mode": mode, "node": target.name}

    def new_secondary(
        self, ctx: OpContext, inst: Instance, primary: Node, old: Node
    ) -> dict[str, Any]:
        new = self.choose(ctx, inst)
        require_secondary_candidate(new, primary)
        drbd.require_good_copy(ctx, inst, primary)
        c = cluster_of(ctx)
        moved = Instance.from_dict(inst.to_dict())
        moved.secondary_nodes = [new.uuid]
        with drbd.reserved(ctx.owner):
            for disk in moved.disks:
                params = disk.params
                _, minors = drbd.RESERVATIONS.allocate(
                    ctx.owner,
                    ctx.store.list("instance"),
                    c.drbd_port_range,
                    [new.name],
                    port=params["port"],
                )
                params["minors"] = {primary.name: params["minors"][primary.name], **minors}
                params["nodes"] = [primary.name, new.name]
                params["addresses"] = {
                    primary.name: drbd.replication_ip(primary),
                    new.name: drbd.replication_ip(new),
                }
                disk.nodes = [primary.uuid, new.uuid]
            self.attach_new(ctx, inst, moved, primary, old, new)
            drbd.wait_sync(ctx, moved, primary)
            with ctx.store.transaction() as txn:
                drbd.check_unique(txn, moved)
                txn.update(moved)
        ctx.forget_undo()
        try:
            drbd.each_disk(ctx, inst, old, "disk_remove", timeout=600)
        except HerdError as exc:
            ctx.log(f"old copy of {inst.name} left on {old.name}: {exc}", "warning")
        self.settle(ctx, moved, [primary, new])
        return {"changed": True, "mode": "new_secondary", "node": new.name, "old_node": old.name}

    def choose(self, ctx: OpContext, inst: Instance) -> Node:
        if self.params["new_secondary"] is not None:
            return get_node(ctx, self.params["new_secondary"], "new_secondary")
        nodes = ctx.store.list("node")
        objects: list[TopObject] = [
            *ctx.store.list("cluster"),
            *ctx.store.list("nodegroup"),
            *nodes,
            *ctx.store.list("instance"),
        ]
        placement = relocate(snapshot(objects, node_facts(ctx, nodes, drbd.TEMPLATE)), inst.name)
        ctx.log(f"new secondary for {inst.name}: {placement.secondary} ({placement.reasons})")
        return get_node(ctx, str(placement.secondary), "new_secondary")

    @staticmethod
    def attach_new(
        ctx: OpContext, inst: Instance, moved: Instance, primary: Node, old: Node, new: Node
    ) -> None:
        """New copy up on ``new``, the primary re-pointed at it; undo points it back."""
        for index, disk in enumerate(moved.disks):
            arg = disk_arg(moved, index, disk)
            undo_disk_create(ctx, f"remove the new copy of disk {index} on {new.name}", new, arg)
            ctx.services.call(new, "disk_create", {"disk": arg}, timeout=3600)
        if not old.offline:
            try:
                drbd.each_disk(ctx, inst, old, "drbd_disconnect")
            except HerdError as exc:
                ctx.log(f"cannot disconnect the old secondary {old.name}: {exc}", "warning")

        ctx.undo(
            f"reconnect {inst.name}'s primary to {old.name}",
            "drbd.reconnect_old",
            instance=instance_arg(inst),
            moved=instance_arg(moved),
            node=node_arg(primary),
        )
        drbd.each_disk(ctx, inst, primary, "drbd_disconnect")
        drbd.each_disk(ctx, moved, primary, "drbd_attach_net")
        drbd.require_connected(ctx, moved, primary)
        ctx.log(f"{primary.name} now replicates {inst.name} to {new.name}")

    @staticmethod
    def settle(ctx: OpContext, inst: Instance, nodes: list[Node]) -> None:
        """A stopped instance's disks go down again, as before the op."""
        if inst.admin_state == "up":
            return
        for node in nodes:
            drbd.each_disk(ctx, inst, node, "disk_shutdown")


@undo_handler("drbd.reconnect_old")
def _reconnect_old(ctx: OpContext, args: dict[str, Any]) -> None:
    """Point the primary back at the old secondary (``instance``), away from ``moved``."""
    primary = node_of(args)
    drbd.each_disk(ctx, instance_of(args, "moved"), primary, "drbd_disconnect")
    drbd.each_disk(ctx, instance_of(args), primary, "drbd_attach_net")
