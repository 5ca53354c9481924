"""The storage backend interface every disk template implements on a node.

The master sends a self-contained disk spec (docs/design.md, "Instances on nodes") and
never a config object, so a node can act on a disk without knowing the cluster.  Every
method is idempotent, because the master retries after timeouts and a replay must not
destroy data: creating an existing disk of the right size is success, removing a
missing disk is success, and a grow never shrinks.

Backends register by template name; modules listed in ``BACKEND_MODULES`` are imported
on first use, so a node only pays for the backends it is asked about and a template
whose backend is missing is refused with the list of those that exist.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from herd.errors import ValidationError
from herd.node.actions.registry import NodeContext

#: Modules that register backends on import; plain and drbd add themselves here.
BACKEND_MODULES = (
    "herd.node.storage.file",
    "herd.node.storage.sharedfile",
    "herd.node.storage.plain",
    "herd.node.storage.drbd",
)

DISK_MODES = ("rw", "ro")


@dataclass(frozen=True)
class DiskSpec:
    """One disk as the master describes it; ``instance_uuid`` names the owning instance.

    The instance uuid is not part of the per-disk JSON in the instance spec (it is the
    spec's own ``uuid``), so instance actions pass it in; disk actions that run outside
    an instance spec carry it in the disk dict as ``instance_uuid``.
    """

    uuid: str
    index: int
    template: str
    size_mib: int
    mode: str = "rw"
    params: dict[str, Any] = field(default_factory=dict)
    instance_uuid: str | None = None

    @classmethod
    def from_dict(
        cls, data: Any, instance_uuid: str | None = None, field_name: str = "disk"
    ) -> DiskSpec:
        """Checked spec; a bad key is reported as ``<field_name>.<key>``."""
        if not isinstance(data, dict):
            raise ValidationError(field_name, data, "a disk spec object")

        def need(key: str, check: Callable[[Any], bool], allowed: str) -> Any:
            value = data.get(key)
            if not check(value):
                raise ValidationError(f"{field_name}.{key}", value, allowed)
            return value

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        owner = data.get("instance_uuid", instance_uuid)
        if owner is not None and not _is_name(owner):
            raise ValidationError(f"{field_name}.instance_uuid", owner, "a uuid string")
        return cls(
            uuid=need("uuid", _is_name, "a uuid string"),
            index=need("index", lambda v: is_int(v) and 0 <= v < 1024, "an integer 0..1023"),
            template=need("template", lambda v: isinstance(v, str) and v != "", "a template"),
            size_mib=need("size_mib", lambda v: is_int(v) and v > 0, "a positive integer"),
            mode=need("mode", lambda v: v in DISK_MODES, f"one of {list(DISK_MODES)}")
            if "mode" in data
            else "rw",
            params=need("params", lambda v: isinstance(v, dict), "an object")
            if "params" in data
            else {},
            instance_uuid=owner,
        )


def _is_name(value: Any) -> bool:
    """Uuids end up in file and device names: no separators, no dot-only names."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 128
        and value not in (".", "..")
        and all(c.isalnum() or c in "-_." for c in value)
    )


class StorageBackend(ABC):
    """What a disk template must do on a node; sizes are MiB throughout."""

    template: ClassVar[str]

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def create(self, disk: DiskSpec) -> bool:
        """Make the disk exist with ``disk.size_mib``; True if it was created now.

        An existing disk of the right size is success (a replayed create); one of another
        size is a ConflictError, since using it could lose or expose data.
        """

    @abstractmethod
    def remove(self, disk: DiskSpec) -> bool:
        """Make the disk not exist; a missing disk is success (False)."""

    @abstractmethod
    def grow(self, disk: DiskSpec, new_size_mib: int) -> bool:
        """Enlarge to ``new_size_mib``; same size is a no-op, smaller is a ValidationError."""

    @abstractmethod
    def assemble(self, disk: DiskSpec) -> dict[str, Any]:
        """Make the disk usable by a hypervisor; returns at least ``{"path": ...}``."""

    @abstractmethod
    def shutdown(self, disk: DiskSpec) -> bool:
        """Undo ``assemble``; True if something was deactivated."""

    @abstractmethod
    def info(self, disk: DiskSpec) -> dict[str, Any]:
        """``{exists, size_mib, path, allocated_mib}`` (size and allocation None if missing)."""

    @abstractmethod
    def space(self) -> dict[str, int]:
        """``{total_mib, free_mib}`` of the storage this backend allocates from."""


_BACKENDS: dict[str, type[StorageBackend]] = {}


def register_backend(cls: type[StorageBackend]) -> type[StorageBackend]:
    """Class decorator: make ``cls`` the backend for its ``template``."""
    if cls.template in _BACKENDS:
        raise ValueError(f"storage backend for {cls.template!r} registered twice")
    _BACKENDS[cls.template] = cls
    return cls


def available_templates() -> list[str]:
    for module in BACKEND_MODULES:
        importlib.import_module(module)
    return sorted(_BACKENDS)


def backend_for(template: str, ctx: NodeContext) -> StorageBackend:
    """The backend for ``template`` on this node, or a ValidationError listing the others."""
    available = available_templates()
    if template not in _BACKENDS:
        raise ValidationError(
            "template",
            template,
            f"one of {available}",
            f"disk template {template!r} has no storage backend on this node; "
            f"available: {available}",
        )
    return _BACKENDS[template](ctx)
