"""Instance actions: start, stop, inspect and migrate instances through their hypervisor.

Start and migration-accept take the instance spec (docs/design.md); when the master
does not pass ``disk_paths`` the disks are assembled here from the spec, so one call
brings an instance up.  Actions on a running instance name it and its hypervisor, since
the node keeps no config of its own that could say which hypervisor runs it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from herd.errors import ValidationError
from herd.node.actions.registry import NodeContext, action
from herd.node.hv.base import Hypervisor, check_boot_override, check_spec, hypervisor_for
from herd.node.storage.base import DiskSpec, backend_for


def _hv(ctx: NodeContext, name: Any) -> Hypervisor:
    return hypervisor_for(name)(ctx)


def assemble_disks(ctx: NodeContext, spec: dict[str, Any]) -> list[str]:
    """Assemble every disk of ``spec`` and return their paths in disk order."""
    disks = spec.get("disks", [])
    if not isinstance(disks, list):
        raise ValidationError("spec.disks", disks, "a list of disk specs")
    paths = []
    for i, raw in enumerate(disks):
        disk = DiskSpec.from_dict(
            raw, instance_uuid=spec.get("uuid"), field_name=f"spec.disks[{i}]"
        )
        paths.append(backend_for(disk.template, ctx).assemble(disk)["path"])
    return paths


@action("instance_start")
def instance_start(
    ctx: NodeContext,
    spec: dict[str, Any],
    disk_paths: list[str] | None = None,
    boot: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the instance; already running with this spec is ``changed: False``.

    ``boot`` (``{kernel, initrd, cmdline}``) boots it once from a helper image instead.
    """
    hv = _hv(ctx, spec.get("hypervisor"))
    spec = check_spec(spec, type(hv))  # refuse a bad spec before touching any disk
    override = None if boot is None else check_boot_override(boot)
    paths = assemble_disks(ctx, spec) if disk_paths is None else disk_paths
    return hv.start(spec, paths, override)


@action("instance_stop")
def instance_stop(
    ctx: NodeContext, hypervisor: str, name: str, timeout: float = 60.0, force: bool = False
) -> dict[str, Any]:
    """Shut down; reports ``method`` (acpi, kill, kill-after-timeout, crashed or null)."""
    if timeout < 0:
        raise ValidationError("timeout", timeout, "seconds >= 0")
    return _hv(ctx, hypervisor).stop(name, timeout, force)


@action("instance_reboot")
def instance_reboot(
    ctx: NodeContext, hypervisor: str, name: str, hard: bool = False
) -> dict[str, Any]:
    return _hv(ctx, hypervisor).reboot(name, hard)


@action("instance_info")
def instance_info(ctx: NodeContext, hypervisor: str, name: str) -> dict[str, Any]:
    """``instance`` is null when the instance is not on this node."""
    return {"changed": False, "instance": _hv(ctx, hypervisor).info(name)}


@action("instance_list")
def instance_list(ctx: NodeContext, hypervisor: str) -> dict[str, Any]:
    return {"changed": False, "instances": _hv(ctx, hypervisor).list()}


@action("instance_console")
def instance_console(ctx: NodeContext, hypervisor: str, name: str) -> dict[str, Any]:
    return _hv(ctx, hypervisor).console(name)


@action("instance_migration_accept")
def instance_migration_accept(
    ctx: NodeContext, spec: dict[str, Any], disk_paths: list[str] | None = None
) -> dict[str, Any]:
    """Target side: wait for the instance; returns the ``port`` the source must send to."""
    hv = _hv(ctx, spec.get("hypervisor"))
    spec = check_spec(spec, type(hv))
    paths = assemble_disks(ctx, spec) if disk_paths is None else disk_paths
    return hv.migration_accept(spec, paths)


@action("instance_migrate")
def instance_migrate(
    ctx: NodeContext, hypervisor: str, name: str, target_ip: str, port: int, live: bool = True
) -> dict[str, Any]:
    """Source side: send the instance; it stops here only after the target confirmed."""
    try:
        ipaddress.ip_address(target_ip)
    except ValueError as exc:
        raise ValidationError("target_ip", target_ip, "an IP address") from exc
    if not 0 < port < 65536:
        raise ValidationError("port", port, "1..65535")
    return _hv(ctx, hypervisor).migrate(name, target_ip, port, live)


@action("instance_migration_finish")
def instance_migration_finish(
    ctx: NodeContext, hypervisor: str, name: str, success: bool
) -> dict[str, Any]:
    """Both sides: resume on the target or clean up; replays are ``changed: False``."""
    return _hv(ctx, hypervisor).migration_finish(name, success)
