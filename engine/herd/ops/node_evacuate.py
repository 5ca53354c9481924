"""``node.evacuate``: plan the moves that empty a node and submit one job per instance.

As in Ganeti (``gnt-node evacuate``, the drain → move away → offline procedure of the
2014 talk), this op does not move anything itself: it locks the node and its instances
only long enough to take a consistent snapshot and compute the plan, then expands into
follow-up jobs. Each instance's locks are then held only while that instance moves, the
moves run in parallel as far as the queue allows, and every spawned job inherits this
job's reason trail (so a ``rate-limit:N:`` reason throttles the whole evacuation).

A node that still receives new instances could be refilled while it is emptied, so the
node must be drained first (``drain: true`` does it here). The plan is made as if the
node were drained already, which keeps a dry run faithful for an undrained node.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from herd.alloc import EvacuationPlan, Move, Snapshot, allocate, evacuate, snapshot
from herd.alloc.builtin import EVAC_MODES
from herd.config.model import Instance, Node, TopObject
from herd.errors import PrerequisiteError
from herd.ops.base import LockSpec, Op, OpContext, register
from herd.ops.common import cluster_of, get_node, validate_group_ref
from herd.ops.instance_common import MIRRORED, SHARED, instance_nodes
from herd.ops.nodejoin import node_name_param
from herd.ops.params import Param
from herd.ops.placement import IALLOCATOR, node_facts


def _node(ctx: OpContext, name: str) -> Node:
    return get_node(ctx, name, "name")


def _facts(ctx: OpContext, nodes: list[Node], templates: set[str]) -> dict[str, dict[str, Any]]:
    """Live facts with the storage space of every template the evacuated instances use."""
    merged: dict[str, dict[str, Any]] = {}
    for template in sorted(templates) or ["file"]:
        for name, fact in node_facts(ctx, nodes, template).items():
            entry = merged.setdefault(name, dict(fact))
            entry["storage"] = {**entry.get("storage", {}), **fact.get("storage", {})}
    return merged


def _reasons(exc: PrerequisiteError) -> tuple[str, ...]:
    """The allocator's per-node refusals, flattened for the plan's ``failed`` entries."""
    found = tuple(
        f"{node}: {reason}"
        for node, why in (exc.details.get("reasons") or {}).items()
        for reason in why
    )
    return found or (exc.message,)


def replan_whole_moves(
    plan: EvacuationPlan, allocator: str | None, group: str | None
) -> EvacuationPlan:
    """Choose the targets of whole-instance moves with ``allocator`` and/or in ``group``.

    The built-in evacuation keeps instances in their group and decides alone. Mirrored
    instances have no choice to give away (they fail over to their secondary, and the new
    secondary must share the primary's group), so only the non-mirrored ones are placed
    again: first all of them are put back on the node, then each is placed in name order
    on the snapshot that already holds the previous choices.
    """
    assert plan.snapshot is not None
    state = plan.snapshot
    loose = sorted({m.instance for m in plan.moves if m.action == "move"} | set(plan.failed))
    loose = [n for n in loose if not state.instances[n].spec.mirrored]
    for name in loose:
        if state.instances[name].primary != plan.node:
            state = state.move(name, plan.node, None)
    moves = [m for m in plan.moves if m.instance not in loose]
    failed = {k: v for k, v in plan.failed.items() if k not in loose}
    for name in loose:
        spec = dataclasses.replace(
            state.instances[name].spec, group=group or state.nodes[plan.node].group
        )
        if spec.disk_template in SHARED and spec.group != state.nodes[plan.node].group:
            failed[name] = (f"{spec.disk_template} disks cannot leave group {spec.group}",)
            continue
        try:
            target = allocate(state.remove(name), spec, allocator=allocator).primary
        except PrerequisiteError as exc:
            failed[name] = _reasons(exc)
            continue
        state = state.move(name, target, None)
        moves.append(Move(name, "move", plan.node, target))
    return EvacuationPlan(plan.node, tuple(moves), failed, state)


def _ops_for(inst: Instance, moves: list[Move], source: Node, live: bool) -> list[dict[str, Any]]:
    """The opcodes of one instance's job, in the plan's order.

    A running instance migrates (``live`` or paused); a stopped one, or one whose node is
    offline so that nothing can be migrated from it, fails over instead. Disks that only
    one node sees are copied with instance.move; DRBD gets a new secondary by resync.
    """
    migrate = inst.admin_state == "up" and not source.offline
    ops: list[dict[str, Any]] = []
    for move in moves:
        if move.action == "replace-secondary":
            ops.append(
                {
                    "op": "instance.replace_disks",
                    "name": inst.name,
                    "mode": "new_secondary",
                    "new_secondary": move.target,
                }
            )
            continue
        if move.action == "move" and inst.disk_template not in MIRRORED | SHARED:
            ops.append({"op": "instance.move", "name": inst.name, "target_node": move.target})
            continue
        # DRBD's target is always its secondary, which the ops pick themselves.
        target = {} if inst.disk_template in MIRRORED else {"target_node": move.target}
        if migrate:
            ops.append({"op": "instance.migrate", "name": inst.name, "live": live, **target})
        else:
            ops.append(
                {
                    "op": "instance.failover",
                    "name": inst.name,
                    "ignore_consistency": source.offline,
                    **target,
                }
            )
    return ops


@register
class NodeEvacuate(Op):
    OP_ID = "node.evacuate"
    SUMMARY = "Move every instance off a drained node, one follow-up job per instance"
    PARAMS = (
        node_name_param(),
        Param(
            "mode",
            str,
            default="all",
            choices=EVAC_MODES,
            doc="all instances, only those with the node as primary, or only as secondary",
        ),
        IALLOCATOR,
        Param("target_group", str, doc="node group to move non-mirrored instances to"),
        Param(
            "live",
            bool,
            default=True,
            doc="migrate running instances live; false pauses them while memory is copied",
        ),
        Param("drain", bool, default=False, doc="drain the node first if it is not drained"),
        Param("dry_run", bool, default=False, doc="only return the plan; change nothing"),
    )

    def _users(self, ctx: OpContext, node: Node) -> list[Instance]:
        return [i for i in ctx.store.list("instance") if node.uuid in instance_nodes(i)]

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        node = _node(ctx, self.params["name"])
        if level == "instance":
            # Shared: an instance still moving (a job of an earlier run) is waited for,
            # so the plan never contains a move that is already under way.
            users = sorted(i.uuid for i in self._users(ctx, node))
            return LockSpec(tuple(users), shared=True) if users else None
        if level == "node":
            writes = self.params["drain"] and not self.params["dry_run"]
            return LockSpec((node.uuid,), shared=not writes)
        return super().declare_locks(level, ctx)

    def check(self, ctx: OpContext) -> None:
        p = self.params
        node = _node(ctx, p["name"])
        if node.name == cluster_of(ctx).master_node:
            raise PrerequisiteError(
                f"node {node.name} is the master: it cannot be drained, so it cannot be "
                "evacuated (fail the master over to another node first)",
                node=node.name,
            )
        if not node.drained and not p["drain"]:
            raise PrerequisiteError(
                f"node {node.name} is not drained: new instances could land on it while it "
                "is emptied; drain it first (node.modify drained=true) or pass drain: true",
                node=node.name,
            )
        if p["target_group"] is not None:
            validate_group_ref(ctx, p["target_group"])

    def plan(self, ctx: OpContext, node: Node) -> EvacuationPlan:
        """The evacuation computed on live facts, with the node counted as drained."""
        nodes = ctx.store.list("node")
        users = self._users(ctx, node)
        objects: list[TopObject] = [
            *ctx.store.list("cluster"),
            *ctx.store.list("nodegroup"),
            *nodes,
            *ctx.store.list("instance"),
        ]
        snap = snapshot(objects, _facts(ctx, nodes, {i.disk_template for i in users}))
        drained = dataclasses.replace(snap.nodes[node.name], drained=True)
        snap = dataclasses.replace(snap, nodes={**snap.nodes, node.name: drained})
        plan = evacuate(snap, node.name, self.params["mode"])
        if self.params["iallocator"] is not None or self.params["target_group"] is not None:
            group = self.params["target_group"]
            if group is not None:
                group = ctx.store.get("nodegroup", group).name
            plan = replan_whole_moves(plan, self.params["iallocator"], group)
        if node.offline:
            plan = _without_unreadable(plan, snap)
        return plan

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        node = _node(ctx, p["name"])
        plan = self.plan(ctx, node)
        per_instance: dict[str, list[Move]] = {}
        for move in plan.moves:
            per_instance.setdefault(move.instance, []).append(move)
        jobs: list[dict[str, Any]] = [
            {
                "instance": name,
                "ops": _ops_for(ctx.store.get("instance", name), moves, node, p["live"]),
            }
            for name, moves in per_instance.items()
        ]
        result: dict[str, Any] = {
            "node": node.name,
            "mode": p["mode"],
            "dry_run": p["dry_run"],
            "plan": [dataclasses.asdict(m) for m in plan.moves],
            "failed": {k: list(v) for k, v in sorted(plan.failed.items())},
            "drained_now": not node.drained,
            "jobs": jobs,
            "job_ids": [],
        }
        if plan.failed and not p["dry_run"]:
            raise PrerequisiteError(
                f"cannot evacuate {node.name}: "
                + "; ".join(f"{k}: {', '.join(v)}" for k, v in result["failed"].items()),
                node=node.name,
                failed=result["failed"],
            )
        if p["dry_run"]:
            return {**result, "changed": False}
        if not node.drained:
            node.drained = True
            with ctx.store.transaction() as txn:
                txn.update(node)
            ctx.log(f"node {node.name} drained")
        if jobs:
            ids = ctx.submit_jobs([{"ops": job["ops"]} for job in jobs])
            for job, job_id in zip(jobs, ids, strict=True):
                job["job_id"] = job_id
                ctx.log(
                    f"job {job_id}: {job['instance']} ({', '.join(o['op'] for o in job['ops'])})"
                )
            result["job_ids"] = ids
        else:
            ctx.log(f"node {node.name} holds no instances (mode {p['mode']}): nothing to move")
        return {**result, "changed": bool(jobs) or result["drained_now"]}


def _without_unreadable(plan: EvacuationPlan, snap: Snapshot) -> EvacuationPlan:
    """An offline node's local disks cannot be read, so those instances cannot be copied."""
    unreadable = {
        m.instance
        for m in plan.moves
        if m.action == "move" and snap.instances[m.instance].spec.disk_template not in SHARED
    }
    failed = dict(plan.failed)
    for name in unreadable:
        failed[name] = (f"node {plan.node} is offline: its local disks cannot be copied",)
    moves = tuple(m for m in plan.moves if m.instance not in unreadable)
    return EvacuationPlan(plan.node, moves, failed, plan.snapshot)
