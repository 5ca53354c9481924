"""Start, stop, reboot, remove, rename and reinstall an instance; activate its disks."""

from __future__ import annotations

from typing import Any

from herd.errors import NotFoundError, PrerequisiteError
from herd.ops import drbd
from herd.ops.base import OpContext, register
from herd.ops.common import check_osparams
from herd.ops.instance_base import (
    SHUTDOWN_TIMEOUT,
    InstanceOp,
    activate_disks,
    assemble_disks,
    instance_name_param,
    require_online,
    require_stopped,
    runtime_state,
    set_admin_state,
    shutdown_disks,
    start_on,
    stop_on,
)
from herd.ops.instance_common import disk_arg, instance_nodes, instance_spec
from herd.ops.params import Param, check_name, check_os_name
from herd.ops.undo import undo_handler


@register
class InstanceStart(InstanceOp):
    OP_ID = "instance.start"
    SUMMARY = "Start an instance on its primary node"
    NODE_LOCKS_SHARED = True
    PARAMS = (instance_name_param(),)

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        node = self.primary(ctx, inst)
        require_online(node, "start instances")
        state = runtime_state(ctx, inst, node)
        changed = set_admin_state(ctx, inst, "up")
        if state and state.get("state") == "running":
            return {"changed": changed, "state": "running"}
        result = start_on(ctx, inst, node)
        ctx.log(f"instance {inst.name} started on {node.name}")
        return {
            "changed": True,
            "state": "running",
            "node": node.name,
            "console": result.get("console"),
        }


@register
class InstanceStop(InstanceOp):
    OP_ID = "instance.stop"
    SUMMARY = "Stop an instance: ACPI shutdown, then forced off after the timeout"
    NODE_LOCKS_SHARED = True
    PARAMS = (instance_name_param(), SHUTDOWN_TIMEOUT)

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        node = self.primary(ctx, inst)
        changed = set_admin_state(ctx, inst, "down")
        if node.offline:
            ctx.log(f"node {node.name} is offline: instance only marked down", "warning")
            return {"changed": changed, "state": "unknown"}
        result = stop_on(ctx, inst, node, self.params["shutdown_timeout"])
        shutdown_disks(ctx, inst, node)
        how = result.get("method", "stopped")
        if result.get("changed"):
            ctx.log(f"instance {inst.name} stopped on {node.name} ({how})")
        return {
            "changed": changed or bool(result.get("changed")),
            "state": "stopped",
            "method": how,
        }


@register
class InstanceReboot(InstanceOp):
    OP_ID = "instance.reboot"
    SUMMARY = "Reboot an instance: soft (inside the guest) or hard (restart the VM process)"
    NODE_LOCKS_SHARED = True
    PARAMS = (
        instance_name_param(),
        Param(
            "type",
            str,
            default="soft",
            choices=("soft", "hard"),
            doc="soft: the guest reboots itself; hard: the VM process is restarted",
        ),
    )

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        node = self.primary(ctx, inst)
        require_online(node, "reboot instances")
        state = runtime_state(ctx, inst, node)
        if not state or state.get("state") != "running":
            raise PrerequisiteError(
                f"instance {inst.name} is not running on {node.name}; start it instead",
                instance=inst.name,
            )
        ctx.services.call(
            node,
            "instance_reboot",
            {
                "name": inst.name,
                "hypervisor": inst.hypervisor,
                "hard": self.params["type"] == "hard",
            },
            timeout=300,
        )
        return {"changed": True, "type": self.params["type"]}


@undo_handler("instance.settle_admin")
def _settle_admin(ctx: OpContext, args: dict[str, Any]) -> None:
    """Back to "up" only if the guest really still runs on its primary (and the
    instance is still there: a removal that got as far as the config is done)."""
    try:
        inst = ctx.store.get("instance", args["uuid"])
    except NotFoundError:
        return
    state = runtime_state(ctx, inst, ctx.store.get("node", inst.primary_node))
    if state and state.get("state") == "running":
        set_admin_state(ctx, inst, "up")


@register
class InstanceRemove(InstanceOp):
    OP_ID = "instance.remove"
    SUMMARY = "Stop an instance, remove its disks from every node and forget it"
    PARAMS = (
        instance_name_param(),
        SHUTDOWN_TIMEOUT,
        Param(
            "ignore_failures",
            bool,
            default=False,
            doc="remove from the config even if a node cannot clean up (dead or offline "
            "node); what it held stays there for 'herd cluster verify' to report",
        ),
    )

    def check(self, ctx: OpContext) -> None:
        """An offline node's disks cannot be removed: say so instead of leaving them."""
        if self.params["ignore_failures"]:
            return
        inst = self.instance(ctx)
        offline = [
            node.name
            for node in (ctx.store.get("node", uuid) for uuid in instance_nodes(inst))
            if node.offline
        ]
        if offline:
            raise PrerequisiteError(
                f"instance {inst.name} has disks on offline node(s) {', '.join(offline)}, "
                "which cannot be removed there; bring the node(s) back online, or set "
                "ignore_failures to remove the instance from the config anyway and leave "
                "those disks behind for 'herd cluster verify' to report",
                instance=inst.name,
                nodes=offline,
            )

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        problems = []
        if inst.admin_state == "up":
            # Marked down before the guest stops, so a removal cut short (the master
            # dying, say) leaves no "up but stopped" instance for a watcher to restart.
            ctx.undo(f"mark {inst.name} up again if it still runs", "instance.settle_admin",
                     uuid=inst.uuid)  # fmt: skip
            set_admin_state(ctx, inst, "down")
        for uuid in [inst.primary_node, *inst.secondary_nodes]:
            node = ctx.store.get("node", uuid)
            try:
                require_online(node, "clean up")
                if uuid == inst.primary_node:
                    stop_on(ctx, inst, node, self.params["shutdown_timeout"])
                    if drbd.is_drbd(inst):
                        drbd.demote(ctx, inst, node)
                for i, disk in enumerate(inst.disks):
                    ctx.services.call(node, "disk_remove", {"disk": disk_arg(inst, i, disk)})
            except Exception as exc:
                # A node refusing (disk in use, guest that will not stop) is a failure
                # like any other: forgetting the instance anyway would orphan its disks.
                if not self.params["ignore_failures"]:
                    raise
                problems.append(
                    exc.message if isinstance(exc, PrerequisiteError) else f"{node.name}: {exc}"
                )
        with ctx.store.transaction() as txn:
            txn.delete(txn.get("instance", inst.uuid))
        ctx.locks.unregister("instance", [inst.uuid], owner=ctx.owner)
        for problem in problems:
            ctx.log(f"left behind: {problem}", "warning")
        return {"changed": True, "instance": inst.name, "cleanup_problems": problems}


@register
class InstanceRename(InstanceOp):
    OP_ID = "instance.rename"
    SUMMARY = "Rename a stopped instance (the OS rename script runs on its disks)"
    PARAMS = (
        instance_name_param(),
        Param(
            "new_name",
            str,
            required=True,
            check=check_name,
            cli_positional=True,
            doc="the new name",
        ),
    )

    def check(self, ctx: OpContext) -> None:
        require_stopped(ctx, self)
        if ctx.store.find("instance", self.params["new_name"]) is not None:
            raise PrerequisiteError(
                f"instance {self.params['new_name']} already exists", field="new_name"
            )

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        node = self.primary(ctx, inst)
        old = inst.name
        inst.name = self.params["new_name"]
        with ctx.store.transaction() as txn:
            txn.update(inst)
        if inst.os:
            paths = assemble_disks(ctx, inst, node)
            ctx.services.call(
                node,
                "os_rename",
                {"spec": instance_spec(ctx, inst), "old_name": old, "disk_paths": paths},
                timeout=600,
            )
            shutdown_disks(ctx, inst, node)
        return {"changed": True, "instance": inst.name, "old_name": old}


@register
class InstanceReinstall(InstanceOp):
    OP_ID = "instance.reinstall"
    SUMMARY = "Run the OS create script again on a stopped instance's disks"
    PARAMS = (
        instance_name_param(),
        Param(
            "os",
            str,
            check=check_os_name,
            doc="install this OS (os+variant) instead of the current one",
        ),
        Param(
            "osparams",
            dict,
            structure=check_osparams,
            doc="OS parameters replacing the current ones (rules as instance.add's)",
        ),
    )

    def check(self, ctx: OpContext) -> None:
        require_stopped(ctx, self)

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        node = self.primary(ctx, inst)
        if self.params["os"] is not None or self.params["osparams"] is not None:
            inst.os = self.params["os"] or inst.os
            inst.osparams = (
                self.params["osparams"] if self.params["osparams"] is not None else inst.osparams
            )
            with ctx.store.transaction() as txn:
                txn.update(inst)
        if not inst.os:
            raise PrerequisiteError(f"instance {inst.name} has no OS to install", field="os")
        paths = assemble_disks(ctx, inst, node)
        ctx.services.call(
            node,
            "os_create",
            {"spec": instance_spec(ctx, inst), "disk_paths": paths, "reinstall": True},
            timeout=3600,
        )
        shutdown_disks(ctx, inst, node)
        return {"changed": True, "os": inst.os}


@register
class InstanceActivateDisks(InstanceOp):
    """Ganeti's ``activate-disks``: the disks usable without starting the instance.

    For maintenance from the node (fsck, mounting, copying) and to bring DRBD back after
    a node reboot. A DRBD primary is promoted only once its peer is connected and its copy
    UpToDate, so an operator cannot create a split brain by accident; ``force`` is for
    the case where the peer is known to be dead.
    """

    OP_ID = "instance.activate_disks"
    SUMMARY = "Assemble an instance's disks on its nodes (DRBD: connected, primary promoted)"
    PARAMS = (
        instance_name_param(),
        Param(
            "force",
            bool,
            default=False,
            doc="promote the primary's DRBD disks even if the peer is unreachable or does "
            "not connect (the peer is dead)",
        ),
    )

    def check(self, ctx: OpContext) -> None:
        inst = self.instance(ctx)
        require_online(self.primary(ctx, inst), "activate disks")
        if not inst.disks:
            raise PrerequisiteError(f"instance {inst.name} has no disks", instance=inst.name)

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        paths = activate_disks(ctx, inst, self.primary(ctx, inst), self.params["force"])
        ctx.log(f"disks of {inst.name} active on " + ", ".join(sorted(paths)))
        return {"changed": True, "disks": paths}


@register
class InstanceDeactivateDisks(InstanceOp):
    """Ganeti's ``deactivate-disks``: the opposite of activate, for a stopped instance."""

    OP_ID = "instance.deactivate_disks"
    SUMMARY = "Take a stopped instance's disks down on its nodes (DRBD: demoted, down)"
    PARAMS = (
        instance_name_param(),
        Param(
            "force",
            bool,
            default=False,
            doc="go ahead although the instance is marked up or running (its disks are "
            "pulled from under it)",
        ),
    )

    def check(self, ctx: OpContext) -> None:
        if not self.params["force"]:
            require_stopped(ctx, self, "deactivate its disks")
        else:
            inst = self.instance(ctx)
            require_online(self.primary(ctx, inst), "deactivate disks")

    def run(self, ctx: OpContext) -> Any:
        inst = self.instance(ctx)
        changed = shutdown_disks(ctx, inst, self.primary(ctx, inst))
        return {"changed": changed}
