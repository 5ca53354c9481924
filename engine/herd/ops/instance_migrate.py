"""Move a running instance to another node without copying disks: migrate and failover.

Only templates whose disks the target can already see (shared storage, diskless, and
DRBD's secondary) can do this; the others are refused with the reason, never degraded
silently to a copy.
"""

from __future__ import annotations

import secrets
from typing import Any

from herd.config.model import Instance, Node
from herd.crypto.ca import ClusterCA
from herd.errors import PrerequisiteError, ValidationError
from herd.ops import drbd
from herd.ops.base import OpContext, register
from herd.ops.common import get_node
from herd.ops.instance_base import (
    SHUTDOWN_TIMEOUT,
    InstanceOp,
    assemble_disks,
    instance_name_param,
    require_online,
    runtime_state,
    shutdown_disks,
    start_on,
    stop_on,
)
from herd.ops.instance_common import MIRRORED, MOVABLE, instance_spec
from herd.ops.params import Param
from herd.ops.transfer import credentials
from herd.ops.undo import node_arg, node_of, undo_handler

TARGET_NODE = Param(
    "target_node", str, doc="target node (shared storage); DRBD always goes to its secondary"
)


class _MoveOp(InstanceOp):
    """Picks and locks the target: the DRBD secondary, or the named node for shared disks."""

    def target(self, ctx: OpContext, inst: Instance) -> Node:
        name = self.params["target_node"]
        if inst.disk_template not in MOVABLE:
            raise ValidationError(
                "name",
                inst.name,
                f"an instance with a disk template that can move without "
                f"copying ({', '.join(sorted(MOVABLE))}); '{inst.disk_template}' keeps its "
                "disks on one node: use instance.move",
            )
        if inst.disk_template in MIRRORED:
            secondary = ctx.store.get("node", inst.secondary_nodes[0])
            if name is not None and name != secondary.name:
                raise ValidationError(
                    "target_node",
                    name,
                    f"the instance's secondary node {secondary.name} (DRBD can only move there)",
                )
            return secondary
        if name is None:
            raise ValidationError(
                "target_node", None, "a node name: shared storage can move to any node of the group"
            )
        node = get_node(ctx, name, "target_node")
        if node.uuid == inst.primary_node:
            raise ValidationError("target_node", name, "a node other than the primary")
        return node

    def extra_nodes(self, ctx: OpContext, inst: Instance) -> list[str]:
        return [self.target(ctx, inst).uuid]

    def check(self, ctx: OpContext) -> None:
        inst = self.instance(ctx)
        target = self.target(ctx, inst)
        require_online(target, "receive instances")
        if target.drained:
            raise PrerequisiteError(
                f"node {target.name} is drained: no instances move there", node=target.name
            )
        if target.group != self.primary(ctx, inst).group:
            raise PrerequisiteError(
                f"node {target.name} is in another node group; use instance.move to change groups",
                node=target.name,
            )

    def switch_primary(self, ctx: OpContext, inst: Instance, target: Node) -> None:
        switch_primary(ctx, inst, target)


def switch_primary(ctx: OpContext, inst: Instance, target: Node) -> None:
    """Record ``target`` as the primary (a DRBD instance's old primary becomes its
    secondary); nothing to do if the config says so already."""
    if inst.primary_node == target.uuid:
        return
    old = inst.primary_node
    inst.primary_node = target.uuid
    if inst.disk_template in MIRRORED:
        inst.secondary_nodes = [old]
    with ctx.store.transaction() as txn:
        txn.update(inst)


@undo_handler("migration.abort_incoming")
def _abort_incoming(ctx: OpContext, args: dict[str, Any]) -> None:
    """Stop the copy being received, then resume the source's.

    Safe while this step is in the journal: the target has not been resumed yet (the op
    swaps this step for ``migration.settle`` first), so the source holds the only live
    state. The source is resumed too because after the memory copy it is paused (kvm's
    postmigrate) or gone (fake): aborting the target alone would leave it running nowhere.
    """
    hv = {"name": args["name"], "hypervisor": args["hypervisor"]}
    try:
        ctx.services.call(node_of(args), "instance_migration_finish", {**hv, "success": False})
    finally:
        # Also when the target cannot be told: its copy was never resumed, so the source
        # is still the only one that may run, and not resuming it leaves none running.
        if "source" in args:
            ctx.services.call(
                node_of(args, "source"), "instance_migration_finish", {**hv, "success": False}
            )


@undo_handler("migration.settle")
def _settle(ctx: OpContext, args: dict[str, Any]) -> None:
    """Once the target may have been resumed, going back is no longer safe (it may have
    written to the disks): whatever the target says decides. Running there, the migration
    is finished forward; not running, it was never resumed, and it is rolled back."""
    inst = ctx.store.get("instance", args["uuid"])
    source, target = node_of(args, "source"), node_of(args, "target")
    state = runtime_state(ctx, inst, target)
    if state and state.get("state") == "running":
        ctx.log(f"{inst.name} already runs on {target.name}: finishing its migration there")
        finish_migration(ctx, inst, source, target)
        return
    _abort_incoming(ctx, {"name": inst.name, "hypervisor": inst.hypervisor,
                          "node": args["target"], "source": args["source"]})  # fmt: skip
    if drbd.is_drbd(inst):
        drbd.demote(ctx, inst, target)
        drbd.set_dual_primary(ctx, inst, [source, target], False)


@undo_handler("failover.settle")
def _settle_failover(ctx: OpContext, args: dict[str, Any]) -> None:
    """A failover cut short leaves the instance stopped: start it on whichever node the
    config names by now (the source before the switch, the target after), once."""
    inst = ctx.store.get("instance", args["uuid"])
    node = ctx.store.get("node", inst.primary_node)
    state = runtime_state(ctx, inst, node)
    if inst.admin_state == "up" and not (state and state.get("state") == "running"):
        start_on(ctx, inst, node)
        ctx.log(f"{inst.name} started again on {node.name}")


def finish_migration(ctx: OpContext, inst: Instance, source: Node, target: Node) -> None:
    """After the target runs the instance: record it, end the source's copy, settle disks.

    Every call is idempotent, so a restarted master may run it again (``migration.settle``).
    """
    hv = {"name": inst.name, "hypervisor": inst.hypervisor}
    switch_primary(ctx, inst, target)
    ctx.services.call(source, "instance_migration_finish", {**hv, "success": True}, 300)
    if drbd.is_drbd(inst):
        drbd.migration_done(ctx, inst, source, target)
    else:
        shutdown_disks(ctx, inst, source)


def migration_credentials(ctx: OpContext) -> dict[str, str]:
    """A migration id and its throw-away certificate from the cluster CA: the hypervisors
    encrypt the memory stream with it and each end admits only this migration's peer."""
    migration_id = "migr-" + secrets.token_hex(8)
    ca = ClusterCA.load(ctx.services.crypto_dir)
    return {"migration_id": migration_id, **credentials(ca, migration_id)}


@register
class InstanceMigrate(_MoveOp):
    OP_ID = "instance.migrate"
    SUMMARY = "Move a running instance to another node, live (or paused) by the hypervisor"
    PARAMS = (
        instance_name_param(),
        TARGET_NODE,
        Param(
            "live",
            bool,
            default=True,
            doc="live migration; false pauses the instance while memory is copied",
        ),
    )

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        source, target = self.primary(ctx, inst), self.target(ctx, inst)
        require_online(source, "migrate from it (use instance.failover)")
        state = runtime_state(ctx, inst, source)
        if not state or state.get("state") != "running":
            self.switch_primary(ctx, inst, target)
            ctx.log(f"instance {inst.name} is not running: primary set to {target.name}")
            return {"changed": True, "primary_node": target.name, "live": False}
        spec = instance_spec(ctx, inst)
        mirrored = drbd.is_drbd(inst)
        if mirrored:
            paths = drbd.migration_prepare(ctx, inst, source, target)
        else:
            paths = assemble_disks(ctx, inst, target)
        hv = {"name": inst.name, "hypervisor": inst.hypervisor}
        ctx.undo(
            f"abort the incoming migration on {target.name}, resume {inst.name} on {source.name}",
            "migration.abort_incoming",
            node=node_arg(target),
            source=node_arg(source),
            **hv,
        )
        tls = migration_credentials(ctx)
        target_ip = drbd.replication_ip(target)
        accepted = ctx.services.call(
            target,
            "instance_migration_accept",
            {"spec": spec, "disk_paths": paths, "bind_ip": target_ip, **tls},
            timeout=300,
        )
        ctx.log(
            f"migrating {inst.name} {source.name} -> {target.name} "
            f"({'live' if self.params['live'] else 'paused'})"
        )
        ctx.services.call(
            source,
            "instance_migrate",
            {
                **hv,
                "target_ip": target_ip,
                "port": accepted["port"],
                "live": self.params["live"],
                **tls,
            },
            timeout=3600,
        )
        # From the target's resume on, only going forward is safe: one step replaces the
        # rollback, and decides by what the target says if it has to run (see _settle).
        ctx.replace_undo(
            f"settle the migration of {inst.name} to {target.name}",
            "migration.settle",
            uuid=inst.uuid,
            source=node_arg(source),
            target=node_arg(target),
        )
        ctx.services.call(target, "instance_migration_finish", {**hv, "success": True}, 300)
        finish_migration(ctx, inst, source, target)
        return {"changed": True, "primary_node": target.name, "live": self.params["live"]}


@register
class InstanceFailover(_MoveOp):
    OP_ID = "instance.failover"
    SUMMARY = "Restart an instance on another node, e.g. because its primary died"
    PARAMS = (
        instance_name_param(),
        TARGET_NODE,
        Param(
            "ignore_consistency",
            bool,
            default=False,
            doc="proceed although the primary cannot be reached to shut it down "
            "(DRBD: promote the secondary without its peer; the old primary's disks are "
            "left for instance.replace_disks)",
        ),
        SHUTDOWN_TIMEOUT,
    )

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        source, target = self.primary(ctx, inst), self.target(ctx, inst)
        if inst.admin_state == "up":
            ctx.undo(
                f"start {inst.name} again where the config puts it",
                "failover.settle",
                uuid=inst.uuid,
            )
        try:
            require_online(source, "shut the instance down there")
            stop_on(ctx, inst, source, self.params["shutdown_timeout"])
            shutdown_disks(ctx, inst, source)
        except Exception as exc:
            if not self.params["ignore_consistency"]:
                raise PrerequisiteError(
                    f"cannot shut {inst.name} down on {source.name} ({exc}); if that node is "
                    "dead, retry with ignore_consistency",
                    node=source.name,
                ) from exc
            ctx.log(f"ignoring: {source.name} did not stop {inst.name}: {exc}", "warning")
        self.switch_primary(ctx, inst, target)
        if inst.admin_state == "up":
            start_on(ctx, inst, target, force=self.params["ignore_consistency"])
            ctx.log(f"instance {inst.name} started on {target.name}")
        return {"changed": True, "primary_node": target.name}
