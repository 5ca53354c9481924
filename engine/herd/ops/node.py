"""Node ops: add, remove, modify (``gnt-node`` in the seeds)."""

from __future__ import annotations

from typing import Any

from herd.config.model import Node
from herd.crypto.ca import ClusterCA
from herd.errors import PrerequisiteError, ValidationError
from herd.ops import nodejoin
from herd.ops.base import ALL_LOCKS, LockSpec, Op, OpContext, register
from herd.ops.common import DEFAULT_GROUP, cluster_of, get_node, validate_group_ref
from herd.ops.params import Param, check_ip, check_tags


@register
class NodeAdd(Op):
    OP_ID = "node.add"
    SUMMARY = "Trust a host over SSH, check herd-node there and add it to a node group"
    PARAMS = (
        nodejoin.node_name_param(),
        *nodejoin.JOIN_PARAMS,
        Param("group", str, default=DEFAULT_GROUP, doc="node group to put the node in"),
        Param(
            "master_candidate",
            bool,
            doc="keep a copy of the config (default: fill the candidate pool)",
        ),
        Param("tags", list, default=[], item_type=str, check=check_tags, doc="node tags"),
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        # Every group, exclusively: two adds of one host must not overlap, or the loser's
        # rollback would delete the certificates the winner just installed there.
        if level == "nodegroup":
            return LockSpec(ALL_LOCKS)
        return super().declare_locks(level, ctx)

    def check(self, ctx: OpContext) -> None:
        p = self.params
        cluster_of(ctx)
        validate_group_ref(ctx, p["group"])
        self.primary_ip = nodejoin.resolve_ip(p["name"], p["primary_ip"])
        self.secondary_ip = p["secondary_ip"] or self.primary_ip
        nodejoin.check_unique(
            ctx.store.list("node"),
            p["name"],
            {"primary_ip": self.primary_ip, "secondary_ip": self.secondary_ip},
        )

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        cluster = cluster_of(ctx)
        nodes = ctx.store.list("node")
        node = Node(
            name=p["name"],
            primary_ip=self.primary_ip,
            secondary_ip=self.secondary_ip,
            ssh_port=p["ssh_port"],
            group=ctx.store.get("nodegroup", p["group"]).uuid,
            tags=p["tags"],
            master_candidate=nodejoin.wants_candidate(
                nodes, cluster.candidate_pool_size, p["master_candidate"]
            ),
        )
        ca = ClusterCA.load(ctx.services.crypto_dir)
        nodejoin.join(ctx, node, ca, cluster.ssh_public_key, p["host_key"])
        with ctx.store.transaction() as txn:
            nodejoin.add_in_txn(txn, node)
        ctx.locks.register("node", [node.uuid])
        ctx.locks.register("node-res", [node.uuid])
        ctx.log(f"node {node.name} added to group {p['group']}")
        return {"changed": True, "node": node.name, "uuid": node.uuid}


@register
class NodeRemove(Op):
    OP_ID = "node.remove"
    SUMMARY = "Remove a node that hosts no instances"

    PARAMS = (nodejoin.node_name_param(),)

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level in ("node", "node-res"):
            return LockSpec((get_node(ctx, self.params["name"], "name").uuid,))
        return super().declare_locks(level, ctx)

    def check(self, ctx: OpContext) -> None:
        node = get_node(ctx, self.params["name"], "name")
        if node.name == cluster_of(ctx).master_node:
            raise PrerequisiteError(f"node {node.name} is the master and cannot be removed")
        users = [
            i.name
            for i in ctx.store.list("instance")
            if node.uuid == i.primary_node or node.uuid in i.secondary_nodes
        ]
        if users:
            raise PrerequisiteError(
                f"node {node.name} still hosts instances: "
                + ", ".join(users)
                + "; move or remove them first",
                instances=users,
            )

    def run(self, ctx: OpContext) -> Any:
        node = get_node(ctx, self.params["name"], "name")
        with ctx.store.transaction() as txn:
            txn.delete(txn.get("node", node.uuid))
        problems = [] if node.offline else nodejoin.leave(ctx, node, cluster_of(ctx).ssh_public_key)
        for level in ("node", "node-res"):
            ctx.locks.unregister(level, [node.uuid], owner=ctx.owner)
        ctx.log(f"node {node.name} removed")
        return {"changed": True, "node": node.name, "cleanup_problems": problems}


@register
class NodeModify(Op):
    OP_ID = "node.modify"
    SUMMARY = "Change a node's flags (drained, offline, master candidate), group or address"
    PARAMS = (
        nodejoin.node_name_param(),
        Param("drained", bool, doc="no new instances are placed on a drained node"),
        Param("offline", bool, doc="an offline node is not contacted at all"),
        Param("master_candidate", bool, doc="keep a copy of the config"),
        Param("group", str, doc="move the node to this group"),
        Param("secondary_ip", str, check=check_ip, doc="new replication address"),
        Param("tags", list, item_type=str, check=check_tags, doc="node tags (replaces the list)"),
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        node = get_node(ctx, self.params["name"], "name")
        if level == "nodegroup" and self.params["group"] is not None:
            target = validate_group_ref(ctx, self.params["group"])
            return LockSpec(tuple(sorted({node.group, target.uuid})))
        if level == "node":
            return LockSpec((node.uuid,))
        return super().declare_locks(level, ctx)

    def check(self, ctx: OpContext) -> None:
        p = self.params
        node = get_node(ctx, p["name"], "name")
        is_master = node.name == cluster_of(ctx).master_node
        if is_master and (p["offline"] or p["drained"] or p["master_candidate"] is False):
            raise PrerequisiteError(
                f"node {node.name} is the master: it cannot be offline, "
                "drained or stop being a master candidate"
            )
        if p["offline"] and p["master_candidate"]:
            raise ValidationError(
                "master_candidate",
                True,
                "false when offline is true: an offline node cannot be a master candidate",
            )
        if p["secondary_ip"] is not None:
            nodejoin.check_unique(
                ctx.store.list("node"), "", {"secondary_ip": p["secondary_ip"]}, skip=node.uuid
            )

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        node = get_node(ctx, p["name"], "name")
        wanted: dict[str, Any] = {
            k: p[k]
            for k in ("drained", "offline", "master_candidate", "secondary_ip", "tags")
            if p[k] is not None
        }
        if p["group"] is not None:
            wanted["group"] = ctx.store.get("nodegroup", p["group"]).uuid
        if p["offline"]:
            wanted.setdefault("master_candidate", False)
        changes = {
            k: {"before": getattr(node, k), "after": v}
            for k, v in wanted.items()
            if getattr(node, k) != v
        }
        if changes:
            for key, change in changes.items():
                setattr(node, key, change["after"])
            with ctx.store.transaction() as txn:
                txn.update(node)
            if "offline" in changes:
                ctx.services.forget_node(node.name)
            ctx.log(f"node {node.name}: changed " + ", ".join(sorted(changes)))
        return {"changed": bool(changes), "changes": changes}
