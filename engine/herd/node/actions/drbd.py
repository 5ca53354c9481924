"""DRBD replication actions: the master's handle on connection, roles and sync.

Creating, assembling and removing a drbd disk go through the generic disk actions and
the storage backend registry; these are the steps only replicated disks have, which the
master sequences across the two nodes (connect both, skip or wait for the sync, promote
one; for live migration allow two primaries, migrate, drop back to one).  Each is
idempotent and answers with the resource status after the step, so the master can
decide its next move without another round trip.
"""

from __future__ import annotations

from typing import Any

from herd.errors import ValidationError
from herd.node.actions.registry import NodeContext, action
from herd.node.storage.base import DiskSpec
from herd.node.storage.drbd import DrbdStorage


def _open(ctx: NodeContext, disk: dict[str, Any]) -> tuple[DrbdStorage, DiskSpec]:
    spec = DiskSpec.from_dict(disk)
    if spec.template != "drbd":
        raise ValidationError("disk.template", spec.template, "drbd")
    return DrbdStorage(ctx), spec


def _answer(backend: DrbdStorage, spec: DiskSpec, changed: bool) -> dict[str, Any]:
    return {"changed": changed, **backend.status(backend.resource(spec)).to_dict()}


@action("drbd_attach_net")
def drbd_attach_net(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Connect to the peer (bringing the resource up first if it is down)."""
    backend, spec = _open(ctx, disk)
    return _answer(backend, spec, backend.attach_net(spec))


@action("drbd_disconnect")
def drbd_disconnect(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Stop replicating to the peer; the local disk stays attached."""
    backend, spec = _open(ctx, disk)
    return _answer(backend, spec, backend.disconnect(spec))


@action("drbd_primary")
def drbd_primary(ctx: NodeContext, disk: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Promote; without ``force`` only a connected node with an UpToDate disk may."""
    backend, spec = _open(ctx, disk)
    return _answer(backend, spec, backend.make_primary(spec, force))


@action("drbd_secondary")
def drbd_secondary(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    backend, spec = _open(ctx, disk)
    return _answer(backend, spec, backend.make_secondary(spec))


@action("drbd_release")
def drbd_release(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Take the resource down and remove its metadata, keeping the data LV (to plain)."""
    backend, spec = _open(ctx, disk)
    return _answer(backend, spec, backend.release(spec))


@action("drbd_skip_initial_sync")
def drbd_skip_initial_sync(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Mark a freshly created, still empty pair as in sync (run on one node only)."""
    backend, spec = _open(ctx, disk)
    return _answer(backend, spec, backend.skip_initial_sync(spec))


@action("drbd_status")
def drbd_status(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    backend, spec = _open(ctx, disk)
    return _answer(backend, spec, False)


@action("drbd_wait_sync")
def drbd_wait_sync(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """One poll of the resync: ``done`` once both copies are UpToDate.

    It does not block: the master polls, so a long resync never holds an RPC session
    and the job log can show progress (percent, rate, ETA) between polls.
    """
    backend, spec = _open(ctx, disk)
    answer = _answer(backend, spec, False)
    return {**answer, "done": not answer["degraded"]}


@action("drbd_allow_dual_primary")
def drbd_allow_dual_primary(
    ctx: NodeContext, disk: dict[str, Any], enabled: bool
) -> dict[str, Any]:
    """Allow (for a live migration) or forbid two Primaries; persists across adjust."""
    backend, spec = _open(ctx, disk)
    changed = backend.set_dual_primary(spec, enabled)
    return {**_answer(backend, spec, changed), "dual_primary": enabled}
