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
from herd.node.actions.transfer import TRANSFER_ID
from herd.node.actions.transfer import _credentials as check_credentials
from herd.node.hv.base import (
    Hypervisor,
    MigrationTLS,
    check_boot_override,
    check_spec,
    hypervisor_for,
)
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
    ctx: NodeContext,
    spec: dict[str, Any],
    bind_ip: str,
    disk_paths: list[str] | None = None,
    migration_id: str | None = None,
    cert_pem: str | None = None,
    key_pem: str | None = None,
    ca_pem: str | None = None,
) -> dict[str, Any]:
    """Target side: wait for the instance on ``bind_ip``; returns the ``port`` to send to.

    ``bind_ip`` is one address of this node (the master sends its secondary IP), never
    the wildcard: the incoming stream must not be reachable from every network.
    """
    ip = _check_ip("bind_ip", bind_ip)
    if ip.is_unspecified:
        raise ValidationError("bind_ip", bind_ip, "one address of this node, not the wildcard")
    hv = _hv(ctx, spec.get("hypervisor"))
    spec = check_spec(spec, type(hv))
    tls = _migration_tls(migration_id, cert_pem, key_pem, ca_pem)
    paths = assemble_disks(ctx, spec) if disk_paths is None else disk_paths
    return hv.migration_accept(spec, paths, bind_ip, tls)


@action("instance_migrate")
def instance_migrate(
    ctx: NodeContext,
    hypervisor: str,
    name: str,
    target_ip: str,
    port: int,
    live: bool = True,
    migration_id: str | None = None,
    cert_pem: str | None = None,
    key_pem: str | None = None,
    ca_pem: str | None = None,
) -> dict[str, Any]:
    """Source side: send the instance; it stops here only after the target confirmed."""
    _check_ip("target_ip", target_ip)
    if not 0 < port < 65536:
        raise ValidationError("port", port, "1..65535")
    tls = _migration_tls(migration_id, cert_pem, key_pem, ca_pem)
    return _hv(ctx, hypervisor).migrate(name, target_ip, port, live, tls)


def _check_ip(field: str, value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValidationError(field, value, "an IP address") from exc


def _migration_tls(
    migration_id: str | None, cert_pem: str | None, key_pem: str | None, ca_pem: str | None
) -> MigrationTLS | None:
    """The migration's credentials, checked like a transfer's: issued by ``ca_pem`` for
    exactly ``migration_id``, so a mixed-up pair fails here rather than in qemu."""
    given = {"cert_pem": cert_pem, "key_pem": key_pem, "ca_pem": ca_pem}
    if migration_id is None:
        extra = [key for key, value in given.items() if value is not None]
        if extra:
            raise ValidationError(extra[0], "(given)", "nothing without migration_id")
        return None
    if not isinstance(migration_id, str) or not TRANSFER_ID.match(migration_id):
        raise ValidationError("migration_id", migration_id, "a DNS label (letters, digits, '-')")
    missing = [key for key, value in given.items() if not isinstance(value, str)]
    if missing or cert_pem is None or key_pem is None or ca_pem is None:
        raise ValidationError(missing[0], None, f"a PEM string for migration {migration_id}")
    files = check_credentials(migration_id, cert_pem, key_pem, ca_pem, None)
    return MigrationTLS(migration_id, files["cert.pem"], files["key.pem"], files["ca.pem"])


@action("instance_migration_finish")
def instance_migration_finish(
    ctx: NodeContext, hypervisor: str, name: str, success: bool
) -> dict[str, Any]:
    """Both sides: resume on the target or clean up; replays are ``changed: False``."""
    return _hv(ctx, hypervisor).migration_finish(name, success)
