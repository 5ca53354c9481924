"""Hypervisor parameters as data: what each hypervisor accepts, its defaults and checks.

The master fills and checks hvparams when a job is submitted (``herd.ops.levels``,
``instance.add``, ``instance.modify``) and a node checks them again before it starts a
guest (``herd.node.hv``). Both read these tables, so the two cannot disagree, and the
master reads them without importing any hypervisor's node code (qemu, QMP, processes).
An option silently ignored would be a VM running with settings nobody asked for: unknown
or mistyped parameters are refused with a ValidationError naming the parameter and the
hypervisor.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from herd.errors import ValidationError


@dataclass(frozen=True)
class HvParam:
    """One hypervisor parameter: its JSON type, default and (optionally) allowed values."""

    type: type
    default: Any
    doc: str
    allowed: tuple[Any, ...] | None = None

    def check(self, field: str, value: Any, hypervisor: str) -> Any:
        ok = isinstance(value, self.type) and not (
            self.type is not bool and isinstance(value, bool)
        )
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if ok and (self.allowed is None or value in self.allowed):
            return value
        allowed = f"one of {list(self.allowed)}" if self.allowed else self.type.__name__
        raise ValidationError(field, value, f"{allowed} (hypervisor {hypervisor})")


def _str_param(default: str, doc: str) -> HvParam:
    return HvParam(str, default, doc)


KVM: Mapping[str, HvParam] = {
    "acceleration": HvParam(
        str, "kvm", "kvm: hardware virtualisation (/dev/kvm); tcg: emulation", ("kvm", "tcg")
    ),
    "cpu_type": _str_param("", "qemu -cpu model; empty: host (kvm) or max (tcg)"),
    "machine_type": _str_param("pc", "qemu -machine type, e.g. pc, q35, pc-i440fx-7.2"),
    "kernel_path": _str_param("", "kernel to boot directly; empty: boot from the disks"),
    "initrd_path": _str_param("", "initrd for kernel_path; empty: none"),
    "kernel_args": _str_param("ro console=ttyS0", "kernel command line for kernel_path"),
    "boot_order": HvParam(
        str, "disk", "first boot device without kernel_path", ("disk", "cdrom", "network")
    ),
    "disk_cache": HvParam(
        str,
        "default",
        "qemu cache mode of every disk; default: qemu's own choice",
        ("default", "none", "writethrough", "writeback", "directsync", "unsafe"),
    ),
    "serial_console": HvParam(bool, True, "serial port on a Unix socket plus serial.log"),
    "vnc_bind_address": _str_param(
        "",
        "IP address for a VNC display; empty: no VNC; other than loopback "
        "only with vnc_password_file",
    ),
    "vnc_password_file": _str_param(
        "", "file on the node whose first line is the VNC password; empty: no password"
    ),
    "acpi": HvParam(bool, True, "ACPI for the guest; off: a clean stop is impossible"),
    "reboot_behavior": HvParam(
        str,
        "reboot",
        "guest-initiated reboot: reboot in place, or exit qemu",
        ("reboot", "exit"),
    ),
    "migration_bandwidth": HvParam(int, 32, "MiB/s a migration may use"),
    "migration_downtime": HvParam(int, 30, "longest pause (ms) at the migration switch-over"),
}

FAKE: Mapping[str, HvParam] = {
    "acpi": HvParam(bool, True, "guest honours the power button; off: stop must kill"),
    "heartbeat_interval": HvParam(float, 1.0, "seconds between guest status updates"),
    "migration_image_mib": HvParam(
        int, 4, "MiB of memory stand-in a migration sends", (1, 2, 4, 8, 16, 32, 64)
    ),
}


def _check_kvm(filled: Mapping[str, Any], field: str) -> None:
    """A VNC display on the network needs a password; loopback is for local tools."""
    address = filled["vnc_bind_address"]
    password_file = filled["vnc_password_file"]
    if password_file and not password_file.startswith("/"):
        raise ValidationError(
            f"{field}.vnc_password_file", password_file, "an absolute path on the node"
        )
    if not address:
        return
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise ValidationError(
            f"{field}.vnc_bind_address",
            address,
            "an IP address of the node (127.0.0.1: local access only), or empty for no VNC",
        ) from exc
    if not ip.is_loopback and not password_file:
        raise ValidationError(
            f"{field}.vnc_bind_address",
            address,
            "a loopback address (127.0.0.1, ::1) unless vnc_password_file is set: "
            "a VNC console reachable from the network needs a password",
        )


#: Every hypervisor's table, in the order ``enabled_hypervisors`` lists them.
TABLES: Mapping[str, Mapping[str, HvParam]] = {"kvm": KVM, "fake": FAKE}
HYPERVISORS = tuple(TABLES)

#: Checks across a hypervisor's parameters, or of a value's form, once each is typed.
_CHECKS: Mapping[str, Callable[[Mapping[str, Any], str], None]] = {"kvm": _check_kvm}


def parameters_of(hypervisor: str) -> Mapping[str, HvParam]:
    """The parameters of ``hypervisor``; a ValidationError lists the hypervisors there are."""
    if hypervisor not in TABLES:
        raise ValidationError("hypervisor", hypervisor, f"one of {sorted(TABLES)}")
    return TABLES[hypervisor]


def fill_hvparams(
    hypervisor: str, hvparams: Mapping[str, Any], field: str = "hvparams"
) -> dict[str, Any]:
    """Defaults plus ``hvparams``, each checked; unknown names are refused, not ignored."""
    params = parameters_of(hypervisor)
    filled = {key: p.default for key, p in params.items()}
    for key, value in hvparams.items():
        param = params.get(key)
        if param is None:
            raise ValidationError(
                f"{field}.{key}",
                value,
                f"one of {sorted(params)}",
                f"hypervisor {hypervisor} does not support parameter '{field}.{key}'",
            )
        filled[key] = param.check(f"{field}.{key}", value, hypervisor)
    check = _CHECKS.get(hypervisor)
    if check is not None:
        check(filled, field)
    return filled


def check_for_any_hypervisor(
    hvparams: Mapping[str, Any], field: str = "hvparams", resettable: bool = False
) -> dict[str, Any]:
    """Each parameter one some hypervisor has, with a value that hypervisor accepts.

    An instance's own hvparams reach the master before its hypervisor is known: the
    cluster's first enabled one (``instance.add`` naming none) or the stored one
    (``instance.modify``) are read from the config when the job runs. Refusing here what
    no hypervisor would take makes most mistakes a 400 at submit; the job checks again,
    with ``fill_hvparams`` against the actual hypervisor, before it makes anything.
    ``resettable``: a null value (back to the inherited one) is kept, its name checked.
    """
    out: dict[str, Any] = {}
    for key, value in hvparams.items():
        having = [name for name, table in TABLES.items() if key in table]
        if not having:
            known = "; ".join(f"{name}: {', '.join(sorted(t))}" for name, t in TABLES.items())
            raise ValidationError(
                f"{field}.{key}",
                value,
                f"a parameter of a hypervisor ({known})",
                f"no hypervisor has parameter '{field}.{key}'; they have {known}",
            )
        if value is None and resettable:
            out[key] = None
            continue
        problems = []
        for name in having:
            try:
                out[key] = TABLES[name][key].check(f"{field}.{key}", value, name)
                break
            except ValidationError as exc:
                problems.append(exc)
        else:
            raise problems[0]
    return out
