"""Shared shape of ops on an existing instance: which locks, how disks come up and down."""

from __future__ import annotations

from typing import Any, ClassVar

from herd.config.model import AdminState, Instance, Node
from herd.errors import PrerequisiteError
from herd.ops import drbd
from herd.ops.base import LockSpec, Op, OpContext
from herd.ops.instance_common import disk_arg, get_instance, instance_nodes, instance_spec
from herd.ops.params import Param, check_name
from herd.ops.undo import instance_arg, instance_of, node_arg, node_of, undo_handler

SHUTDOWN_TIMEOUT = Param(
    "shutdown_timeout",
    float,
    default=120.0,
    minimum=0,
    maximum=3600,
    doc="seconds to wait for a clean (ACPI) shutdown before forcing it off",
)


def instance_name_param() -> Param:
    return Param(
        "name", str, required=True, check=check_name, cli_positional=True, doc="instance name"
    )


class InstanceOp(Op):
    """Locks the instance exclusively, then its nodes (and any extra target nodes)."""

    NODE_LOCKS_SHARED: ClassVar[bool] = False

    def extra_nodes(self, ctx: OpContext, inst: Instance) -> list[str]:
        """Node uuids beyond the instance's own that the op will touch (migration targets)."""
        return []

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        inst = get_instance(ctx, self.params["name"])
        if level == "instance":
            return LockSpec((inst.uuid,))
        if level in ("node", "node-res"):
            nodes = sorted(set(instance_nodes(inst)) | set(self.extra_nodes(ctx, inst)))
            return LockSpec(tuple(nodes), shared=self.NODE_LOCKS_SHARED and level == "node")
        return super().declare_locks(level, ctx)

    def instance(self, ctx: OpContext) -> Instance:
        return get_instance(ctx, self.params["name"])

    def primary(self, ctx: OpContext, inst: Instance) -> Node:
        return ctx.store.get("node", inst.primary_node)


def require_online(node: Node, what: str) -> None:
    if node.offline:
        raise PrerequisiteError(f"node {node.name} is offline: cannot {what}", node=node.name)


def require_secondary_candidate(node: Node, primary: Node) -> None:
    """A node that may take a new DRBD copy of an instance running on ``primary``."""
    require_online(node, "hold disks")
    if node.drained:
        raise PrerequisiteError(f"node {node.name} is drained", node=node.name)
    if node.group != primary.group:
        raise PrerequisiteError(
            f"node {node.name} is in another node group than the primary", node=node.name
        )


def require_stopped(ctx: OpContext, op: InstanceOp, what: str = "change the instance's OS") -> None:
    """Marked down and not running on its (online) primary: both, since either can lie."""
    inst = op.instance(ctx)
    node = op.primary(ctx, inst)
    require_online(node, what)
    state = runtime_state(ctx, inst, node)
    if inst.admin_state == "up" or (state and state.get("state") == "running"):
        raise PrerequisiteError(
            f"instance {inst.name} is running: stop it first to {what}", instance=inst.name
        )


def activate_disks(
    ctx: OpContext, inst: Instance, node: Node, force: bool = False
) -> dict[str, list[str]]:
    """Make every disk usable with ``node`` as the one using them; device paths per node.

    ``force`` lets a DRBD disk go Primary without its peer (the peer is dead).
    """
    if drbd.is_drbd(inst):
        return drbd.assemble(ctx, inst, node, force)
    return {
        node.name: [
            ctx.services.call(node, "disk_assemble", {"disk": disk_arg(inst, i, d)})["path"]
            for i, d in enumerate(inst.disks)
        ]
    }


def assemble_disks(ctx: OpContext, inst: Instance, node: Node, force: bool = False) -> list[str]:
    """The paths the hypervisor on ``node`` opens, once every disk is usable there."""
    return activate_disks(ctx, inst, node, force)[node.name]


def shutdown_disks(ctx: OpContext, inst: Instance, node: Node) -> bool:
    """Take the disks down (DRBD: demoted, down on both nodes); True if any was up."""
    if drbd.is_drbd(inst):
        return drbd.shutdown(ctx, inst, node)
    answers = [
        ctx.services.call(node, "disk_shutdown", {"disk": disk_arg(inst, i, disk)})
        for i, disk in enumerate(inst.disks)
    ]
    return any(a["changed"] for a in answers)


def start_on(ctx: OpContext, inst: Instance, node: Node, force: bool = False) -> dict[str, Any]:
    paths = assemble_disks(ctx, inst, node, force)
    return ctx.services.call(
        node, "instance_start", {"spec": instance_spec(ctx, inst), "disk_paths": paths}, timeout=600
    )


def runtime_state(ctx: OpContext, inst: Instance, node: Node) -> dict[str, Any] | None:
    """What the hypervisor on ``node`` says about the instance, None if it is not there."""
    if node.offline:
        return None
    answer = ctx.services.call(
        node, "instance_info", {"name": inst.name, "hypervisor": inst.hypervisor}
    )
    return answer.get("instance")


def set_admin_state(ctx: OpContext, inst: Instance, state: AdminState) -> bool:
    if inst.admin_state == state:
        return False
    inst.admin_state = state
    with ctx.store.transaction() as txn:
        txn.update(inst)
    return True


def stop_for_copy(ctx: OpContext, inst: Instance, node: Node, timeout: float) -> bool:
    """Disks are copied from a stopped instance; the undo starts it again where it was."""
    state = runtime_state(ctx, inst, node)
    if not state or state.get("state") != "running":
        return False
    ctx.undo(
        f"start {inst.name} again on {node.name}",
        "instance.start",
        instance=instance_arg(inst),
        node=node_arg(node),
    )
    stop_on(ctx, inst, node, timeout)
    ctx.log(f"instance {inst.name} stopped for the copy")
    return True


def stop_on(
    ctx: OpContext, inst: Instance, node: Node, timeout: float, force: bool = False
) -> dict[str, Any]:
    """ACPI shutdown, forced off after ``timeout`` (or at once with ``force``); the
    answer's ``method`` says which happened."""
    return ctx.services.call(
        node,
        "instance_stop",
        {"name": inst.name, "hypervisor": inst.hypervisor, "timeout": timeout, "force": force},
        timeout=timeout + 60,
    )


def undo_start(ctx: OpContext, inst: Instance, node: Node) -> None:
    """Before starting a new instance: the step that forces it off again."""
    ctx.undo(f"stop {inst.name}", "instance.stop", instance=instance_arg(inst), node=node_arg(node))


@undo_handler("instance.start")
def _start(ctx: OpContext, args: dict[str, Any]) -> None:
    start_on(ctx, instance_of(args), node_of(args))


@undo_handler("instance.stop")
def _stop(ctx: OpContext, args: dict[str, Any]) -> None:
    stop_on(ctx, instance_of(args), node_of(args), 0, force=True)


@undo_handler("instance.shutdown_disks")
def _shutdown_disks(ctx: OpContext, args: dict[str, Any]) -> None:
    shutdown_disks(ctx, instance_of(args), node_of(args))
