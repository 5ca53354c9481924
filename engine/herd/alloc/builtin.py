"""The built-in allocator: greedy best-score placement that never breaks N+1.

N+1 is Ganeti's promise that any single node may fail and its mirrored instances can be
failed over: for every node X, the memory of the instances whose secondary is X, grouped
by their primary P, must fit X's free memory for the worst P. Every placement here is
checked against it on the nodes it touches, so a cluster that is N+1 clean stays clean.

The search is exhaustive over (primary, secondary) pairs inside one node group at a time:
clusters have tens to hundreds of nodes, and a full search is what makes the result
explainable (every refused node has its reasons) and deterministic (ties go to names).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from herd.alloc.model import VCPU_RATIO, InstanceRequest, NodeState, Snapshot
from herd.errors import PrerequisiteError, ValidationError

EvacMode = Literal["all", "primary-only", "secondary-only"]
EVAC_MODES: tuple[EvacMode, ...] = ("all", "primary-only", "secondary-only")


@dataclass(frozen=True)
class Placement:
    """Where an instance goes; ``reasons`` say why, for the job log and dry runs."""

    primary: str
    secondary: str | None
    score: float
    reasons: tuple[str, ...] = ()
    allocator: str = "builtin"

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.primary,) if self.secondary is None else (self.primary, self.secondary)


@dataclass(frozen=True)
class N1Failure:
    """Node ``node`` could not take over ``primary``'s instances if ``primary`` died."""

    node: str
    primary: str
    needed: int
    free: int
    instances: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"N+1: {self.node} cannot absorb a failover of {self.primary}: needs "
            f"{self.needed} MiB for {', '.join(self.instances)}, has {self.free} MiB free"
        )


@dataclass(frozen=True)
class Move:
    """One step of an evacuation, in the order it must run."""

    instance: str
    action: Literal["failover", "replace-secondary", "move"]
    source: str
    target: str


@dataclass(frozen=True)
class EvacuationPlan:
    """Moves that empty a node, the instances that cannot move, and the cluster after."""

    node: str
    moves: tuple[Move, ...]
    failed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    snapshot: Snapshot | None = None


def n1_failure(node: NodeState) -> N1Failure | None:
    """The worst primary whose failover ``node`` could not absorb, if any."""
    if node.offline or not node.live:
        return None
    per_primary: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for ref in node.secondary_instances:
        if ref.auto_balance:
            per_primary[ref.primary].append((ref.instance, ref.memory))
    worst = None
    for primary in sorted(per_primary):
        needed = sum(mem for _, mem in per_primary[primary])
        if needed > node.free_memory and (worst is None or needed > worst.needed):
            names = tuple(sorted(name for name, _ in per_primary[primary]))
            worst = N1Failure(node.name, primary, needed, node.free_memory, names)
    return worst


def check_n1(snap: Snapshot) -> list[N1Failure]:
    """Every node that fails N+1 now, sorted by node name."""
    found = (n1_failure(snap.nodes[name]) for name in sorted(snap.nodes))
    return [f for f in found if f is not None]


def _n1_need(node: NodeState, primary: str, extra: int) -> int:
    """Memory ``node`` must keep free for ``primary``'s failover, plus ``extra`` MiB."""
    return extra + sum(
        r.memory for r in node.secondary_instances if r.primary == primary and r.auto_balance
    )


def _worst_n1_need(node: NodeState) -> int:
    failure_need: dict[str, int] = defaultdict(int)
    for ref in node.secondary_instances:
        if ref.auto_balance:
            failure_need[ref.primary] += ref.memory
    return max(failure_need.values(), default=0)


def _unusable(node: NodeState) -> list[str]:
    problems = []
    if node.offline:
        problems.append("offline")
    if node.drained:
        problems.append("drained")
    if not node.vm_capable:
        problems.append("not vm_capable")
    if not node.live:
        problems.append("no live facts (unreachable?)")
    return problems


def _disk_problem(node: NodeState, spec: InstanceRequest) -> list[str]:
    need, free = spec.disk_need, node.disk_free(spec.pool)
    if need and need > free:
        return [f"disk: needs {need} MiB in pool {spec.pool}, has {free} MiB free"]
    return []


def primary_problems(node: NodeState, spec: InstanceRequest) -> list[str]:
    """Why ``node`` cannot run ``spec`` as its primary (empty when it can)."""
    problems = _unusable(node)
    if problems:
        return problems
    if spec.memory > node.free_memory:
        problems.append(f"memory: needs {spec.memory} MiB, has {node.free_memory} MiB free")
    problems += _disk_problem(node, spec)
    limit = int(node.cpus * VCPU_RATIO)
    if node.used_vcpus + spec.vcpus > limit:
        problems.append(f"vcpus: {node.used_vcpus} used + {spec.vcpus} > limit {limit}")
    reserve = _worst_n1_need(node)
    if not problems and node.free_memory - spec.memory < reserve:
        problems.append(
            f"N+1: would keep {node.free_memory - spec.memory} MiB free, "
            f"needs {reserve} MiB to absorb a failover"
        )
    return problems


def secondary_problems(node: NodeState, spec: InstanceRequest, primary: str) -> list[str]:
    """Why ``node`` cannot replicate ``spec`` for ``primary`` (empty when it can)."""
    if node.name == primary:
        return ["is the primary"]
    problems = _unusable(node) or _disk_problem(node, spec)
    if not problems:
        need = _n1_need(node, primary, spec.memory if spec.auto_balance else 0)
        if need > node.free_memory:
            problems.append(
                f"N+1: failover of {primary} would need {need} MiB, has {node.free_memory} MiB free"
            )
    return problems


def _ratio(free: int, total: int) -> float:
    return free / total if total > 0 else 0.0


def _primary_score(node: NodeState, spec: InstanceRequest) -> float:
    """Higher is emptier after placement: memory, disk and CPU headroom, equally weighted."""
    mem = _ratio(node.free_memory - spec.memory, node.total_memory)
    disk = (
        _ratio(node.disk_free(spec.pool) - spec.disk_need, node.disk_total(spec.pool))
        if spec.pool
        else 1.0
    )
    cpu = 1.0 - (node.used_vcpus + spec.vcpus) / (node.cpus * VCPU_RATIO)
    return (mem + disk + cpu) / 3


def _secondary_score(node: NodeState, spec: InstanceRequest, primary: str) -> float:
    """Disk headroom and the memory left after the worst failover this node may absorb."""
    need = max(_worst_n1_need(node), _n1_need(node, primary, spec.memory))
    mem = _ratio(node.free_memory - need, node.total_memory)
    disk = _ratio(node.disk_free(spec.pool) - spec.disk_need, node.disk_total(spec.pool))
    return (mem + disk) / 2


def score(snap: Snapshot, spec: InstanceRequest, primary: str, secondary: str | None) -> float:
    """How good a placement is (higher = emptier nodes after it), comparable across allocators.

    The primary weighs double: it spends memory and CPU now, the secondary only reserves
    memory for a failover that may never come.
    """
    value = _primary_score(snap.nodes[primary], spec)
    if secondary is not None:
        value = (2 * value + _secondary_score(snap.nodes[secondary], spec, primary)) / 3
    return round(value, 9)


def _allowed(names: Iterable[str], only_nodes: Collection[str] | None) -> list[str]:
    return sorted(n for n in names if only_nodes is None or n in only_nodes)


class _Reasons:
    """Per-node refusal reasons, each stated once, for the error the caller sees."""

    def __init__(self) -> None:
        self.by_node: dict[str, list[str]] = defaultdict(list)

    def add(self, node: str, role: str, problems: list[str]) -> None:
        for problem in problems:
            text = f"as {role}: {problem}"
            if text not in self.by_node[node]:
                self.by_node[node].append(text)

    def as_dict(self) -> dict[str, list[str]]:
        return {node: list(reasons) for node, reasons in sorted(self.by_node.items())}


def _best_secondary(
    snap: Snapshot,
    spec: InstanceRequest,
    primary: str,
    candidates: Iterable[str],
    reasons: _Reasons,
) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for name in candidates:
        node = snap.nodes[name]
        problems = secondary_problems(node, spec, primary)
        reasons.add(name, f"secondary for {primary}", problems)
        if not problems:
            score = round(_secondary_score(node, spec, primary), 9)
            if best is None or score > best[0]:
                best = (score, name)
    return best


def _group_tiers(snap: Snapshot, spec: InstanceRequest) -> list[list[str]]:
    """Groups to try, best tier first: preferred, then last_resort; never unallocable."""
    if spec.group is not None:
        if spec.group not in snap.groups:
            raise ValidationError("group", spec.group, f"one of {sorted(snap.groups)}")
        if snap.groups[spec.group].alloc_policy == "unallocable":
            raise PrerequisiteError(
                f"node group {spec.group} is unallocable", group=spec.group, instance=spec.name
            )
        return [[spec.group]]
    tiers = []
    for policy in ("preferred", "last_resort"):
        names = sorted(g.name for g in snap.groups.values() if g.alloc_policy == policy)
        if names:
            tiers.append(names)
    return tiers


def search(
    snap: Snapshot, spec: InstanceRequest, only_nodes: Collection[str] | None = None
) -> tuple[Placement | None, dict[str, list[str]]]:
    """The best placement (or None) and, for every refused node, why it was refused."""
    reasons = _Reasons()
    for tier in _group_tiers(snap, spec):
        best: tuple[float, str, str | None, str] | None = None
        for group in tier:
            members = _allowed(
                (n.name for n in snap.nodes.values() if n.group == group), only_nodes
            )
            for primary in members:
                node = snap.nodes[primary]
                problems = primary_problems(node, spec)
                reasons.add(primary, "primary", problems)
                if problems:
                    continue
                secondary = None
                if spec.mirrored:
                    found = _best_secondary(snap, spec, primary, members, reasons)
                    if found is None:
                        reasons.add(primary, "primary", [f"no secondary in group {group} fits"])
                        continue
                    secondary = found[1]
                value = score(snap, spec, primary, secondary)
                # Strictly greater keeps the first (name-ordered) candidate on a tie.
                if best is None or value > best[0]:
                    best = (value, primary, secondary, group)
        if best is not None:
            value, primary, secondary, group = best
            policy = snap.groups[group].alloc_policy
            why = [f"group {group} ({policy})", f"primary {primary}"]
            if secondary:
                why.append(f"secondary {secondary}")
            why.append(f"score {value:.3f} (higher = more free memory, disk and CPU after)")
            return Placement(primary, secondary, value, tuple(why)), reasons.as_dict()
    return None, reasons.as_dict()


def place(
    snap: Snapshot, spec: InstanceRequest, only_nodes: Collection[str] | None = None
) -> Placement:
    """The best placement for a new instance, or PrerequisiteError with per-node reasons."""
    found, reasons = search(snap, spec, only_nodes)
    if found is None:
        raise no_fit_error(spec.name, reasons)
    return found


def no_fit_error(instance: str, reasons: Mapping[str, list[str]]) -> PrerequisiteError:
    """The error for "fits nowhere", listing every refused node with its reasons."""
    summary = "; ".join(f"{node}: {', '.join(why)}" for node, why in reasons.items())
    return PrerequisiteError(
        f"no node fits instance {instance}: {summary or 'no allocatable node group'}",
        instance=instance,
        reasons=dict(reasons),
    )


def relocate(snap: Snapshot, instance: str, only_nodes: Collection[str] | None = None) -> Placement:
    """A new secondary for a mirrored instance, in its primary's group (replace-disks)."""
    inst = snap.instance(instance)
    if not inst.spec.mirrored or inst.secondary is None:
        raise ValidationError("instance", instance, "a mirrored (drbd) instance with a secondary")
    return _new_secondary(snap, instance, exclude={inst.secondary}, only_nodes=only_nodes)


def _new_secondary(
    snap: Snapshot,
    instance: str,
    exclude: Collection[str],
    only_nodes: Collection[str] | None = None,
) -> Placement:
    inst = snap.instance(instance)
    without = snap.move(instance, inst.primary, None)
    group = without.nodes[inst.primary].group
    members = [
        n
        for n in _allowed((s.name for s in without.nodes.values() if s.group == group), only_nodes)
        if n not in exclude
    ]
    reasons = _Reasons()
    found = _best_secondary(without, inst.spec, inst.primary, members, reasons)
    if found is None:
        raise no_fit_error(instance, reasons.as_dict())
    score, secondary = found
    why = (f"group {group}", f"secondary {secondary} replaces {sorted(exclude)}")
    return Placement(inst.primary, secondary, score, why)


def evacuate(snap: Snapshot, node: str, mode: EvacMode = "all") -> EvacuationPlan:
    """Plan the moves that take every instance (of ``mode``) off ``node``.

    Moves are simulated one after another on the snapshot, so later moves see the
    capacity earlier ones used. Mirrored primaries fail over to their secondary and get a
    new secondary; other primaries move whole to the best node of the same group.
    Instances that cannot move are listed with reasons instead of failing the whole plan.
    """
    if mode not in EVAC_MODES:
        raise ValidationError("mode", mode, f"one of {list(EVAC_MODES)}")
    state = snap.node(node)
    moves: list[Move] = []
    failed: dict[str, tuple[str, ...]] = {}
    names = []
    if mode != "primary-only":
        names += [r.instance for r in state.secondary_instances]
    if mode != "secondary-only":
        names += list(state.primary_instances)
    for name in sorted(set(names)):
        try:
            snap, steps = _evacuate_one(snap, name, node)
        except PrerequisiteError as exc:
            failed[name] = tuple(
                f"{n}: {r}" for n, why in exc.details.get("reasons", {}).items() for r in why
            ) or (exc.message,)
            continue
        moves += steps
    return EvacuationPlan(node, tuple(moves), failed, snap)


def _evacuate_one(snap: Snapshot, name: str, node: str) -> tuple[Snapshot, list[Move]]:
    inst = snap.instance(name)
    if inst.secondary == node:
        new = _new_secondary(snap, name, exclude={node})
        return snap.move(name, inst.primary, new.secondary), [
            Move(name, "replace-secondary", node, str(new.secondary))
        ]
    if inst.secondary is not None:
        target = inst.secondary
        problems = primary_problems(snap.remove(name).nodes[target], inst.spec)
        if problems:
            raise PrerequisiteError(
                f"cannot fail {name} over to {target}",
                reasons={target: [f"as primary: {p}" for p in problems]},
            )
        failed_over = snap.move(name, target, node)
        new = _new_secondary(failed_over, name, exclude={node})
        return failed_over.move(name, target, new.secondary), [
            Move(name, "failover", node, target),
            Move(name, "replace-secondary", node, str(new.secondary)),
        ]
    without = snap.remove(name)
    group = snap.nodes[node].group
    spec = dataclasses.replace(inst.spec, group=group)
    others = [n for n in without.nodes if n != node]
    target = place(without, spec, only_nodes=others).primary
    return snap.move(name, target, None), [Move(name, "move", node, target)]
