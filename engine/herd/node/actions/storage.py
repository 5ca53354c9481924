"""Disk actions: the master's handle on the storage backends of a node.

Each takes the disk spec the master built (docs/design.md) and picks the backend by the
disk's template, so the master never needs to know how a template is implemented.  The
answer always carries the disk's ``info`` after the action, which saves the master a
second round trip to learn the path and size it now has.
"""

from __future__ import annotations

from typing import Any

from herd.node.actions.registry import NodeContext, action
from herd.node.storage.base import DiskSpec, StorageBackend, backend_for


def _open(ctx: NodeContext, disk: dict[str, Any]) -> tuple[StorageBackend, DiskSpec]:
    spec = DiskSpec.from_dict(disk)
    return backend_for(spec.template, ctx), spec


@action("disk_create")
def disk_create(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Create the disk; an existing one of the same size is ``changed: False``."""
    backend, spec = _open(ctx, disk)
    changed = backend.create(spec)
    return {"changed": changed, **backend.info(spec)}


@action("disk_remove")
def disk_remove(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Remove the disk and its data; a missing disk is ``changed: False``."""
    backend, spec = _open(ctx, disk)
    return {"changed": backend.remove(spec), **backend.info(spec)}


@action("disk_grow")
def disk_grow(ctx: NodeContext, disk: dict[str, Any], size_mib: int) -> dict[str, Any]:
    """Grow to ``size_mib``; growing to the current size again is ``changed: False``."""
    backend, spec = _open(ctx, disk)
    changed = backend.grow(spec, size_mib)
    return {"changed": changed, **backend.info(spec)}


@action("disk_assemble")
def disk_assemble(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Make the disk usable and say where: the path a hypervisor is given."""
    backend, spec = _open(ctx, disk)
    return {"changed": False, **backend.info(spec), **backend.assemble(spec)}


@action("disk_shutdown")
def disk_shutdown(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    """Deactivate the disk on this node (data stays)."""
    backend, spec = _open(ctx, disk)
    return {"changed": backend.shutdown(spec), **backend.info(spec)}


@action("disk_info")
def disk_info(ctx: NodeContext, disk: dict[str, Any]) -> dict[str, Any]:
    backend, spec = _open(ctx, disk)
    return {"changed": False, **backend.info(spec)}


@action("storage_space")
def storage_space(ctx: NodeContext, template: str = "file") -> dict[str, Any]:
    """Free and total MiB for ``template`` on this node, for placement and verify."""
    return {"changed": False, "template": template, **backend_for(template, ctx).space()}
