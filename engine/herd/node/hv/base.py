"""The hypervisor interface on a node.

The master sends a self-contained instance spec (docs/design.md) with hvparams already
filled cluster -> group -> instance.  Each hypervisor's ``PARAMETERS`` is its table in
``herd.hvparams``, the same data the master fills and checks them with *before* a job
runs, so a node refuses exactly what the master would.

``hypervisor_for(name)`` returns the class; a node instantiates it with its context.
Modules in ``HYPERVISOR_MODULES`` register on import.
"""

from __future__ import annotations

import builtins
import importlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from herd.errors import ValidationError
from herd.hvparams import HvParam, fill_hvparams
from herd.node.actions.registry import NodeContext

#: Modules that register hypervisors on import; kvm adds itself here.
HYPERVISOR_MODULES = ("herd.node.hv.fake", "herd.node.hv.kvm")

#: Instance names become file and process names on nodes: hostname characters only.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


@dataclass(frozen=True)
class MigrationTLS:
    """The throw-away credentials of one migration, issued by the master from the cluster CA.

    The certificate names ``migration_id`` (its CN and only SAN), so each end can demand
    exactly this migration's peer; a certificate from another migration is refused.
    """

    migration_id: str
    cert_pem: str
    key_pem: str
    ca_pem: str


class Hypervisor(ABC):
    """What a hypervisor must do on a node.  Every call is idempotent and says ``changed``."""

    name: ClassVar[str]
    PARAMETERS: ClassVar[Mapping[str, HvParam]]

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    @classmethod
    def fill_hvparams(cls, hvparams: Mapping[str, Any], field: str = "hvparams") -> dict[str, Any]:
        """Defaults plus ``hvparams``, each checked as the master checks them."""
        return fill_hvparams(cls.name, hvparams, field)

    @abstractmethod
    def start(
        self, spec: dict[str, Any], disk_paths: list[str], boot: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run the instance; already running with the same spec is ``changed: False``.

        ``boot`` (checked by ``check_boot_override``) boots it this once from another
        kernel and initrd, e.g. the zeroing helper, without touching its hvparams: the
        next plain start is the instance as configured again.
        """

    @abstractmethod
    def stop(self, name: str, timeout: float, force: bool) -> dict[str, Any]:
        """Shut down (ACPI, then kill after ``timeout``; at once if ``force``); reports how."""

    @abstractmethod
    def reboot(self, name: str, hard: bool) -> dict[str, Any]:
        """Soft: the guest reboots itself; hard: the hypervisor restarts it."""

    @abstractmethod
    def info(self, name: str) -> dict[str, Any] | None:
        """``{name, state, pid, memory, vcpus, …}`` or None if the instance is not here."""

    @abstractmethod
    def list(self) -> list[dict[str, Any]]:
        """``info`` of every instance this hypervisor knows on the node."""

    @abstractmethod
    def console(self, name: str) -> dict[str, Any]:
        """How to reach the console: ``{kind, …}`` (message, serial socket, vnc …)."""

    @abstractmethod
    def migration_accept(
        self,
        spec: dict[str, Any],
        disk_paths: builtins.list[str],
        bind_ip: str = "127.0.0.1",
        tls: MigrationTLS | None = None,
    ) -> dict[str, Any]:
        """Target side: listen on ``bind_ip`` for the instance; returns ``{port, …}``."""

    @abstractmethod
    def migrate(
        self, name: str, target_ip: str, port: int, live: bool, tls: MigrationTLS | None = None
    ) -> dict[str, Any]:
        """Source side: send the instance; the source stops only once the target confirms."""

    @abstractmethod
    def migration_finish(self, name: str, success: bool) -> dict[str, Any]:
        """Both sides: resume on the target or clean up, depending on ``success``."""


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(field, name, f"an instance name matching {NAME_RE.pattern}")
    return name


def check_spec(spec: Any, hypervisor: type[Hypervisor]) -> dict[str, Any]:
    """The spec with hvparams filled and checked against ``hypervisor``; names bad fields."""
    if not isinstance(spec, dict):
        raise ValidationError("spec", spec, "an instance spec object")
    check_name(spec.get("name"), "spec.name")
    if spec.get("hypervisor") != hypervisor.name:
        raise ValidationError("spec.hypervisor", spec.get("hypervisor"), hypervisor.name)
    for key in ("hvparams", "beparams"):
        if not isinstance(spec.get(key, {}), dict):
            raise ValidationError(f"spec.{key}", spec.get(key), "an object")
    if not isinstance(spec.get("disks", []), list):
        raise ValidationError("spec.disks", spec.get("disks"), "a list of disk specs")
    for key in ("memory", "vcpus"):
        value = spec.get("beparams", {}).get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValidationError(f"spec.beparams.{key}", value, "a positive integer")
    hvparams = hypervisor.fill_hvparams(spec.get("hvparams", {}), "spec.hvparams")
    return {**spec, "hvparams": hvparams}


def check_boot_override(boot: Any) -> dict[str, str]:
    """A one-off boot ``{kernel, initrd, cmdline}`` whose files exist on this node.

    Checked on the node because the image lives there: a node missing it must fail
    before anything boots, naming the path, rather than start a guest that cannot run.
    """
    keys = {"kernel", "initrd", "cmdline"}
    if not isinstance(boot, dict) or set(boot) != keys:
        raise ValidationError("boot", boot, "an object with exactly kernel, initrd and cmdline")
    for key in sorted(keys):
        if not isinstance(boot[key], str):
            raise ValidationError(f"boot.{key}", boot[key], "a string")
    for key in ("kernel", "initrd"):
        if not boot[key].startswith("/") or not os.path.isfile(boot[key]):
            raise ValidationError(f"boot.{key}", boot[key], "an existing file on the node")
    return dict(boot)


_HYPERVISORS: dict[str, type[Hypervisor]] = {}


def register_hypervisor(cls: type[Hypervisor]) -> type[Hypervisor]:
    """Class decorator: make ``cls`` the implementation of hypervisor ``cls.name``."""
    if cls.name in _HYPERVISORS:
        raise ValueError(f"hypervisor {cls.name!r} registered twice")
    _HYPERVISORS[cls.name] = cls
    return cls


def hypervisor_for(name: str) -> type[Hypervisor]:
    """The class for hypervisor ``name``; a ValidationError lists those that exist."""
    for module in HYPERVISOR_MODULES:
        importlib.import_module(module)
    if name not in _HYPERVISORS:
        raise ValidationError("hypervisor", name, f"one of {sorted(_HYPERVISORS)}")
    return _HYPERVISORS[name]
