"""The cluster model: plain dataclasses that the store persists as JSON documents.

Objects carry their own identity (``uuid``), version (``serial``) and timestamps so that
optimistic concurrency works the same whichever backend stores them. ``from_dict`` is
strict (unknown keys and wrong types are refused with a ``ValidationError`` naming the
field) because it is the gate every document passes on the way back in: a restore from a
backup, a read from the store, a future etcd watch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from herd.errors import ValidationError
from herd.redact import REDACTED, scrub

AllocPolicy = Literal["preferred", "last_resort", "unallocable"]
DiskMode = Literal["rw", "ro"]
NicMode = Literal["bridged", "routed", "openvswitch"]
AdminState = Literal["up", "down"]

#: Fields without which a document cannot be restored faithfully: a default would invent a
#: new identity instead of refusing the damaged document.
_REQUIRED = ("uuid", "name")

#: Fields the store manages; they are not part of what "changed" means for nested objects.
VERSION_FIELDS = ("serial", "ctime", "mtime")

_JSON_SCALARS = (str, int, float, bool, type(None))


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


def secret(default: str = "") -> Any:
    """Declare a field that ``to_dict(redact=True)`` hides (API answers, dumps, logs)."""
    return field(default=default, metadata={"secret": True})


def secret_keys(*keys: str) -> dict[str, frozenset[str]]:
    """Field metadata declaring the keys of a mapping field that hold secrets, hidden by
    ``to_dict(redact=True)`` like a ``secret()`` field."""
    return {"secret_keys": frozenset(keys)}


@dataclass(kw_only=True)
class ConfigObject:
    """Identity, version and timestamps shared by every stored object, nested ones too."""

    #: Fields this kind once had, with why they went: a document written before their
    #: removal (a config dump, a stored row) still loads, the field dropped, instead of
    #: being refused as unknown.
    RETIRED: ClassVar[Mapping[str, str]] = {}

    name: str
    uuid: str = field(default_factory=_new_uuid)
    serial: int = 0
    ctime: float = 0.0
    mtime: float = 0.0

    def __setattr__(self, attr: str, value: Any) -> None:
        # The uuid is the key other objects refer to (node.group, instance.primary_node);
        # changing it in place would silently orphan those references.
        if attr == "uuid" and "uuid" in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.uuid is immutable")
        super().__setattr__(attr, value)

    def to_dict(self, redact: bool = False) -> dict[str, Any]:
        """A JSON-safe deep copy; ``redact`` hides the declared secrets (see herd.redact)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = _plain(getattr(self, f.name), redact)
            if redact and f.metadata.get("secret"):
                value = REDACTED
            elif redact and "secret_keys" in f.metadata:
                value = scrub(value, f.metadata["secret_keys"])
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Build an object from a document, refusing anything that does not fit the model."""
        return cls._from_dict(data, "")

    @classmethod
    def _from_dict(cls, data: Any, path: str) -> Self:
        if not isinstance(data, dict):
            where = path.removesuffix(".") or cls.__name__
            raise ValidationError(where, data, f"a {cls.__name__} object")
        hints = _hints(cls)
        data = {key: value for key, value in data.items() if key not in cls.RETIRED}
        unknown = sorted(set(data) - set(hints), key=str)
        if unknown:
            raise ValidationError(
                f"{path}{unknown[0]}", data[unknown[0]], f"one of the keys {sorted(hints)}"
            )
        for key in _REQUIRED:
            if key not in data:
                raise ValidationError(f"{path}{key}", None, "a value (the field is required)")
        values = {key: _check(value, hints[key], f"{path}{key}") for key, value in data.items()}
        try:
            uuidlib.UUID(values["uuid"])
        except ValueError:
            raise ValidationError(f"{path}uuid", values["uuid"], "a UUID string") from None
        if values.get("serial", 0) < 0:
            raise ValidationError(f"{path}serial", values["serial"], "an integer >= 0")
        return cls(**values)


def _plain(value: Any, redact: bool) -> Any:
    if isinstance(value, ConfigObject):
        return value.to_dict(redact)
    if isinstance(value, (list, tuple)):
        return [_plain(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, redact) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def _check(value: Any, hint: Any, path: str) -> Any:
    """Validate ``value`` against a type hint and return it in the model's own shape."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _check_json(value, path)
    if origin is Literal:
        if value not in args or not isinstance(value, str):
            raise ValidationError(path, value, f"one of {list(args)}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check(value, inner, path)
    if origin is list:
        if not isinstance(value, list):
            raise ValidationError(path, value, "a list")
        return [_check(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValidationError(path, value, f"a list of {len(args)} items")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_check(v, a, f"{path}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValidationError(path, value, "an object with string keys")
        return {_check_text(k, path): _check(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, ConfigObject):
        return hint._from_dict(value, f"{path}.")
    return _check_scalar(value, hint, path)


def _check_scalar(value: Any, hint: type, path: str) -> Any:
    # bool is a subclass of int in Python but never a valid count, port or size here.
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, str):
        return _check_text(value, path)
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ValidationError(path, value, f"a value of type {hint.__name__}")


def _check_text(value: str, path: str) -> str:
    """Lone surrogates cannot be stored as UTF-8 (SQLite, etcd, the API all need it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(path, value, "valid Unicode text") from None
    return value


def _check_json(value: Any, path: str) -> Any:
    """Free-form parameters must still survive a JSON round trip unchanged."""
    if isinstance(value, float) and value != value:
        raise ValidationError(path, value, "a finite number")
    if isinstance(value, str):
        return _check_text(value, path)
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, list):
        return [_check_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {_check_text(k, path): _check_json(v, f"{path}.{k}") for k, v in value.items()}
    raise ValidationError(path, value, "a JSON value (string, number, bool, null, list, object)")


DEFAULT_BEPARAMS: dict[str, Any] = {"memory": 128, "vcpus": 1, "auto_balance": True}
DEFAULT_NICPARAMS: dict[str, Any] = {"mode": "bridged", "link": "br0"}


@dataclass(kw_only=True)
class Cluster(ConfigObject):
    """Cluster-wide settings and the defaults every group, node and instance inherits."""

    KIND: ClassVar[str] = "cluster"
    RETIRED: ClassVar[Mapping[str, str]] = {
        "file_storage_dir": "no node ever read it: file disks live under each node's own "
        "<node root>/file-storage (HERD_NODE_ROOT, default /var/lib/herd-node)",
    }

    master_node: str = ""
    enabled_hypervisors: list[str] = field(default_factory=lambda: ["kvm"])
    enabled_disk_templates: list[str] = field(default_factory=lambda: ["drbd", "plain", "file"])
    hvparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    beparams: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BEPARAMS))
    ndparams: dict[str, Any] = field(default_factory=dict)
    diskparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    nicparams: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NICPARAMS))
    compression_tools: list[str] = field(default_factory=lambda: ["gzip", "gzip-fast", "gzip-slow"])
    allow_cipher_bypassing: bool = False
    #: Directory on every node holding the zeroing helper (``vmlinuz`` + ``initrd.img``,
    #: built by lab/build-zeroing-image.py); empty: zeroing free space is unavailable.
    zeroing_image: str = ""
    zeroing_timeout_fixed: float = 300.0
    zeroing_timeout_per_gib: float = 60.0
    drbd_port_range: tuple[int, int] = (11000, 14999)
    mac_prefix: str = "aa:00:00"
    candidate_pool_size: int = 10
    max_running_jobs: int = 20
    domain_secret: str = secret()
    ssh_public_key: str = ""
    ca_cert_pem: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class NodeGroup(ConfigObject):
    """A set of nodes that share parameters and between which DRBD may replicate."""

    KIND: ClassVar[str] = "nodegroup"

    ndparams: dict[str, Any] = field(default_factory=dict)
    diskparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    hvparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    alloc_policy: AllocPolicy = "preferred"
    tags: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Node(ConfigObject):
    """A physical host; hardware facts are recorded at add time for placement."""

    KIND: ClassVar[str] = "node"

    primary_ip: str = ""
    #: Replication network address; empty means DRBD uses ``primary_ip``.
    secondary_ip: str = ""
    group: str = ""
    master_candidate: bool = False
    drained: bool = False
    offline: bool = False
    vm_capable: bool = True
    ssh_port: int = 22
    #: The SSH host key pinned at node add, as "type base64".
    host_key: str = ""
    ndparams: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    total_memory_mib: int = 0
    total_disk_mib: int = 0
    cpus: int = 0


@dataclass(kw_only=True)
class Disk(ConfigObject):
    """One instance disk; versioned on its own so a resize shows up without a diff."""

    size_mib: int = 0
    template: str = "drbd"
    mode: DiskMode = "rw"
    #: Template specific: file path, LV name, DRBD port, minors and secret.
    params: dict[str, Any] = field(default_factory=dict, metadata=secret_keys("secret"))
    nodes: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Nic(ConfigObject):
    """One instance network interface."""

    mac: str = ""
    ip: str | None = None
    mode: NicMode = "bridged"
    link: str = ""


@dataclass(kw_only=True)
class Instance(ConfigObject):
    """A virtual machine with its disks and NICs nested inside it."""

    KIND: ClassVar[str] = "instance"

    primary_node: str = ""
    secondary_nodes: list[str] = field(default_factory=list)
    os: str = ""
    hypervisor: str = "kvm"
    hvparams: dict[str, Any] = field(default_factory=dict)
    beparams: dict[str, Any] = field(default_factory=dict)
    osparams: dict[str, Any] = field(default_factory=dict)
    disk_template: str = "drbd"
    disks: list[Disk] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    admin_state: AdminState = "down"
    tags: list[str] = field(default_factory=list)


TopObject = Cluster | NodeGroup | Node | Instance

#: Kind string -> class, in the order a dump lists them (referenced before referencing).
KINDS: dict[str, type[TopObject]] = {cls.KIND: cls for cls in (Cluster, NodeGroup, Node, Instance)}


def _declared_secret_keys() -> frozenset[str]:
    """Every name under which a stored object keeps a secret: the key set that hides
    secrets in free-form documents (job results, log data) that copy parts of objects."""
    keys: set[str] = set()
    for cls in (*KINDS.values(), Disk, Nic):
        for f in dataclasses.fields(cls):
            if f.metadata.get("secret"):
                keys.add(f.name)
            keys |= f.metadata.get("secret_keys", frozenset())
    return frozenset(keys)


SECRET_KEYS = _declared_secret_keys()


def kind_class(kind: Any) -> type[TopObject]:
    """The class for a kind string; a bad kind is bad input, so it is a ValidationError."""
    if kind not in KINDS:
        raise ValidationError("kind", kind, f"one of {list(KINDS)}")
    return KINDS[kind]
