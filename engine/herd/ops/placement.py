"""Where a new instance goes: live node facts in, the allocator's choice out.

Facts are read from every online node (a read needs no lock), so the allocator can tell
"does not fit on the nodes this job could lock" (temporarily infeasible: retry) from
"fits nowhere" (a real error). Placement itself is restricted to the nodes this op holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from herd.alloc import InstanceRequest, allocate, builtin, iallocator, snapshot
from herd.alloc.model import POOLS
from herd.config.model import Node, TopObject
from herd.errors import PrerequisiteError
from herd.ops.base import OpContext
from herd.ops.params import Param

#: Every op's ``iallocator``: a *name* looked up in fixed directories, checked when the
#: job is submitted, so no API caller can have the master execute a path of its choice.
IALLOCATOR = Param(
    "iallocator",
    str,
    check=iallocator.allocator_problem,
    doc="name of an external iallocator (Ganeti protocol) installed in "
    + " or ".join(str(d) for d in iallocator.SEARCH_PATH)
    + ", instead of the built-in allocator",
)
#: The same for a move to another cluster: only the name is checked here, the
#: destination looks it up in its own directories when it receives the instance.
DEST_IALLOCATOR = dataclasses.replace(
    IALLOCATOR,
    name="dest_iallocator",
    check=iallocator.name_problem,
    doc="name of an external iallocator installed on the destination cluster",
)


@dataclass(frozen=True)
class Chosen:
    primary: Node
    secondary: Node | None
    reasons: tuple[str, ...] = ()


def node_facts(ctx: OpContext, nodes: list[Node], template: str) -> dict[str, dict[str, Any]]:
    """Memory, CPUs and the template's storage space of each reachable node."""
    online = [n for n in nodes if not n.offline]
    infos = ctx.services.call_many(online, "node_info", timeout=30)
    spaces = (
        ctx.services.call_many(online, "storage_space", {"template": template}, timeout=30)
        if template in POOLS
        else {}
    )
    facts = {}
    for node in online:
        info = infos[node.name]
        if not info.ok:
            ctx.log(f"node {node.name}: no facts ({info.error}); not considered", "warning")
            continue
        fact = dict(info.result or {})
        space = spaces.get(node.name)
        # A call's outcome is a result or an error: no error means a result.
        if space is not None and space.result is not None:
            fact["storage"] = {
                template: {
                    "total_mib": space.result["total_mib"],
                    "free_mib": space.result["free_mib"],
                }
            }
        facts[node.name] = fact
    return facts


def _check_explicit(snap: Any, request: InstanceRequest, explicit: list[Node]) -> Chosen:
    """The operator chose the nodes: check them by the allocator's rules, N+1 included."""
    primary = explicit[0]
    secondary = explicit[1] if len(explicit) > 1 else None
    problems = [
        f"{primary.name}: {p}" for p in builtin.primary_problems(snap.node(primary.name), request)
    ]
    if secondary is not None:
        problems += [
            f"{secondary.name}: {p}"
            for p in builtin.secondary_problems(snap.node(secondary.name), request, primary.name)
        ]
    if problems:
        raise PrerequisiteError(
            f"cannot place {request.name} as asked: " + "; ".join(problems), problems=problems
        )
    return Chosen(primary, secondary, ("nodes given explicitly",))


def place(
    ctx: OpContext,
    *,
    name: str,
    template: str,
    memory: int,
    vcpus: int,
    disks: list[int],
    explicit: list[Node],
    allocator: str | None,
    opportunistic: bool,
    hypervisor: str,
    os_name: str,
) -> Chosen:
    """Explicit nodes are checked by the allocator's rules; otherwise the allocator chooses
    among the nodes this op could lock (all of them, unless it locked opportunistically)."""
    nodes = ctx.store.list("node")
    by_uuid = {n.uuid: n for n in nodes}
    objects: list[TopObject] = [
        *ctx.store.list("cluster"),
        *ctx.store.list("nodegroup"),
        *nodes,
        *ctx.store.list("instance"),
    ]
    snap = snapshot(objects, node_facts(ctx, nodes, template))
    request = InstanceRequest(
        name=name,
        memory=memory,
        vcpus=vcpus,
        disks=tuple(disks),
        disk_template=template,
        hypervisor=hypervisor,
        os=os_name,
    )
    if explicit:
        return _check_explicit(snap, request, explicit)
    held = sorted(by_uuid[u].name for u in ctx.owned("node") if u in by_uuid)
    if not held:
        raise PrerequisiteError("no node could be locked for the new instance")
    placement = allocate(
        snap, request, allocator=allocator, only_nodes=held if len(held) < len(nodes) else None
    )
    by_name = {n.name: n for n in nodes}
    return Chosen(
        by_name[placement.primary],
        by_name[placement.secondary] if placement.secondary else None,
        tuple(placement.reasons),
    )
