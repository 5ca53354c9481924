"""Node group ops: add, modify, rename, remove (``gnt-group`` in the seeds)."""

from __future__ import annotations

from typing import Any

from herd.config.model import NodeGroup
from herd.errors import ConflictError, PrerequisiteError
from herd.ops import levels
from herd.ops.base import LockSpec, Op, OpContext, register
from herd.ops.common import validate_group_ref
from herd.ops.params import Param, check_name, check_tags

ALLOC_POLICIES = ("preferred", "last_resort", "unallocable")


def _name(positional: bool = True) -> Param:
    return Param(
        "name",
        str,
        required=True,
        check=check_name,
        cli_positional=positional,
        doc="node group name",
    )


GROUP_SETTINGS = (
    Param(
        "ndparams",
        dict,
        structure=levels.check_ndparams,
        doc="node parameters overriding the cluster's (none yet: Herd honours none of Ganeti's)",
    ),
    Param(
        "diskparams",
        dict,
        structure=levels.check_diskparams,
        doc="disk parameters per template overriding the cluster's",
    ),
    Param(
        "hvparams",
        dict,
        structure=levels.check_hvparams,
        doc="hypervisor parameters overriding the cluster's",
    ),
    Param(
        "alloc_policy",
        str,
        choices=ALLOC_POLICIES,
        doc="whether the allocator may place instances here",
    ),
    Param("tags", list, item_type=str, check=check_tags, doc="group tags"),
)


class _GroupOp(Op):
    """Ops on one existing group lock exactly that group."""

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level == "nodegroup":
            return LockSpec((validate_group_ref(ctx, self.params["name"], "name").uuid,))
        return super().declare_locks(level, ctx)


@register
class GroupAdd(Op):
    OP_ID = "group.add"
    SUMMARY = "Create a node group"
    PARAMS = (_name(), *GROUP_SETTINGS)

    def check(self, ctx: OpContext) -> None:
        if ctx.store.find("nodegroup", self.params["name"]) is not None:
            raise ConflictError(
                f"node group {self.params['name']} already exists",
                field="name",
                value=self.params["name"],
            )

    def run(self, ctx: OpContext) -> Any:
        group = NodeGroup(name=self.params["name"])
        for param in GROUP_SETTINGS:
            if self.params[param.name] is not None:
                setattr(group, param.name, self.params[param.name])
        with ctx.store.transaction() as txn:
            txn.add(group)
        ctx.locks.register("nodegroup", [group.uuid])
        return {"changed": True, "group": group.name, "uuid": group.uuid}


@register
class GroupModify(_GroupOp):
    OP_ID = "group.modify"
    SUMMARY = "Change a node group's parameters or allocation policy"
    PARAMS = (_name(), *GROUP_SETTINGS)

    def run(self, ctx: OpContext) -> Any:
        group = ctx.store.get("nodegroup", self.params["name"])
        changes = {}
        for param in GROUP_SETTINGS:
            value = self.params[param.name]
            if value is not None and getattr(group, param.name) != value:
                changes[param.name] = {"before": getattr(group, param.name), "after": value}
                setattr(group, param.name, value)
        if changes:
            with ctx.store.transaction() as txn:
                txn.update(group)
        return {"changed": bool(changes), "changes": changes}


@register
class GroupRename(_GroupOp):
    OP_ID = "group.rename"
    SUMMARY = "Rename a node group (its UUID, and so its nodes' membership, stays)"
    PARAMS = (
        _name(),
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
        if ctx.store.find("nodegroup", self.params["new_name"]) is not None:
            raise ConflictError(
                f"node group {self.params['new_name']} already exists",
                field="new_name",
                value=self.params["new_name"],
            )

    def run(self, ctx: OpContext) -> Any:
        group = ctx.store.get("nodegroup", self.params["name"])
        group.name = self.params["new_name"]
        with ctx.store.transaction() as txn:
            txn.update(group)
        return {"changed": True, "group": group.name}


@register
class GroupRemove(_GroupOp):
    OP_ID = "group.remove"
    SUMMARY = "Remove an empty node group"
    PARAMS = (_name(),)

    def check(self, ctx: OpContext) -> None:
        group = ctx.store.get("nodegroup", self.params["name"])
        members = [n.name for n in ctx.store.list("node") if n.group == group.uuid]
        if members:
            raise PrerequisiteError(
                f"node group {group.name} still has nodes: "
                + ", ".join(members)
                + "; move them first",
                nodes=members,
            )
        if len(ctx.store.list("nodegroup")) == 1:
            raise PrerequisiteError(f"node group {group.name} is the last one")

    def run(self, ctx: OpContext) -> Any:
        group = ctx.store.get("nodegroup", self.params["name"])
        with ctx.store.transaction() as txn:
            txn.delete(group)
        ctx.locks.unregister("nodegroup", [group.uuid], owner=ctx.owner)
        return {"changed": True, "group": group.name}
