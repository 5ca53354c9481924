"""The one call ops make to place an instance, whichever allocator does the work.

Opportunistic instance creation locks whatever nodes are free right now and asks for a
placement among them. When that fails, the op needs to know whether waiting can help:
if the instance would fit on the whole cluster, the failure is only about locks
(TemporarilyInfeasibleError, so Ansible retries); if it fits nowhere, retrying is
pointless (PrerequisiteError with the reasons per node).
"""

from __future__ import annotations

from collections.abc import Collection

from herd.alloc import builtin, iallocator
from herd.alloc.builtin import Placement
from herd.alloc.model import InstanceRequest, Snapshot
from herd.errors import PrerequisiteError, TemporarilyInfeasibleError, ValidationError


def allocate(
    snap: Snapshot,
    request: InstanceRequest,
    allocator: str | None = None,
    only_nodes: Collection[str] | None = None,
    timeout: float = iallocator.DEFAULT_TIMEOUT,
) -> Placement:
    """Place ``request`` with the built-in allocator, or the iallocator named ``allocator``.

    Nothing is written anywhere: the answer is a proposal the caller commits, or only
    shows for a dry run, so allocation itself needs no dry-run mode.
    """
    if only_nodes is not None:
        unknown = sorted(set(only_nodes) - set(snap.nodes))
        if unknown:
            raise ValidationError("only_nodes", unknown[0], "names of nodes in the snapshot")
    if allocator is None:
        found, reasons = builtin.search(snap, request, only_nodes)
        if found is not None:
            return found
        if only_nodes is not None:
            anywhere, _ = builtin.search(snap, request)
            if anywhere is not None:
                raise _temporarily(request, only_nodes, "builtin", anywhere.nodes)
        raise builtin.no_fit_error(request.name, reasons)
    return _external(allocator, snap, request, only_nodes, timeout)


def _external(
    allocator: str,
    snap: Snapshot,
    request: InstanceRequest,
    only_nodes: Collection[str] | None,
    timeout: float,
) -> Placement:
    nodes, info = iallocator.external_allocate(allocator, snap, request, only_nodes, timeout)
    if nodes is None:
        if only_nodes is not None:
            anywhere, _ = iallocator.external_allocate(allocator, snap, request, None, timeout)
            if anywhere is not None:
                raise _temporarily(request, only_nodes, allocator, tuple(anywhere))
        raise PrerequisiteError(
            f"iallocator {allocator} found no placement for {request.name}: {info}",
            allocator=allocator,
            instance=request.name,
        )
    primary = nodes[0]
    secondary = nodes[1] if len(nodes) > 1 else None
    score = builtin.score(snap, request, primary, secondary)
    return Placement(
        primary, secondary, score, (f"iallocator {allocator}: {info}",), allocator=allocator
    )


def _temporarily(
    request: InstanceRequest,
    only_nodes: Collection[str],
    allocator: str,
    would_use: tuple[str, ...],
) -> TemporarilyInfeasibleError:
    return TemporarilyInfeasibleError(
        f"instance {request.name} does not fit on the locked nodes {sorted(only_nodes)} "
        f"but would fit on {list(would_use)} ({allocator}); retry when they are free",
        instance=request.name,
        only_nodes=sorted(only_nodes),
        would_use=list(would_use),
    )
