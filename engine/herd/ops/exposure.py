"""Which ops, parameters and hypervisor keys a remote API caller may use.

The master serves one API on two doors: the root-only Unix socket and HTTPS with tokens.
A token is a credential that can leak, be shared with AWX or live in a CI variable, so
it must not be able to change what the cluster *trusts*: its keys and secrets, which
hosts its root SSH key logs into, which node files qemu boots as root, which local
socket the master talks to. Those stay with root on the master, over the socket.

This module is the one place that says so. Every op of the catalog is listed exactly
once, in :data:`LOCAL_OPS` or :data:`REMOTE_OPS`, and a unit test fails when an op is
added without being listed; an op missing here anyway is refused to remote callers
(fail closed). For remote ops, :data:`REMOTE_OPS` names the parameters only root may set,
and :class:`Keys` the keys inside mapping parameters (``hvparams``) only root may set;
every hypervisor parameter is listed in :data:`LOCAL_HVPARAMS` or
:data:`REMOTE_HVPARAMS`, checked by the same test.

A job's origin is the ``api:https`` entry of its reason trail: the API appends it to
every job that comes over HTTPS, after whatever the caller wrote, and jobs that an op
spawns inherit the trail, so they are held to the same rules (see the runner).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from herd.errors import ForbiddenError
from herd.ops.base import registry

#: Reason-trail source of every job submitted over HTTPS.
REMOTE_SOURCE = "api:https"
HOW = "as root on the master, over the local socket (the herd CLI there)"

_BOOTED_AS_ROOT = "it names a file on the nodes that qemu, running as root, boots"

#: Hypervisor parameters that only root may set: they name files or devices on the nodes.
LOCAL_HVPARAMS: Mapping[str, str] = {
    "kernel_path": _BOOTED_AS_ROOT,
    "initrd_path": _BOOTED_AS_ROOT,
    "vnc_password_file": "it names a file on the nodes that herd-node reads as root and "
    "hands to qemu as the console password",
}

#: Hypervisor parameters any writer may set; listed so that a new one is classified too.
REMOTE_HVPARAMS = frozenset(
    {
        "acceleration",
        "acpi",
        "boot_order",
        "cpu_type",
        "disk_cache",
        "heartbeat_interval",
        "kernel_args",
        "machine_type",
        "migration_bandwidth",
        "migration_downtime",
        "migration_image_mib",
        "reboot_behavior",
        "serial_console",
        "vnc_bind_address",
    }
)


@dataclass(frozen=True)
class Keys:
    """Keys of a mapping parameter that only root may set.

    ``per_hypervisor``: the mapping is keyed by hypervisor first (cluster and group
    ``hvparams``: ``{"kvm": {"kernel_path": …}}``), not by parameter (an instance's).
    """

    local: Mapping[str, str]
    per_hypervisor: bool = False


#: Ops only root may run, each with the reason quoted in the refusal.
LOCAL_OPS: Mapping[str, str] = {
    "cluster.init": "it creates the cluster's SSH key, CA and domain secret",
    "cluster.destroy": "it deletes the cluster's keys, CA and state",
    "config.restore": "it replaces the whole state: the domain secret, node addresses and "
    "pinned host keys, that is which hosts the master's root SSH key logs into",
    "node.add": "it pins a host key and gives the host the cluster's SSH key and a node "
    "certificate of the cluster CA",
    "instance.receive": "another cluster's master submits it over this socket; it builds an "
    "instance from a whole signed description, hvparams included, past the rules here",
}

_HV_NESTED = Keys(LOCAL_HVPARAMS, per_hypervisor=True)
#: Disk parameters (per template) only root may set: found in review, a token could turn
#: off DRBD's peer authentication or its split-brain refusal, or point LVs elsewhere.
LOCAL_DISKPARAMS: Mapping[str, str] = {
    "net_options": "DRBD network options decide peer authentication and what happens "
    "after a split brain (data may be discarded)",
    "disk_options": "DRBD disk options decide whether writes are flushed to stable storage",
    "vg_name": "it names the volume group on every node where disks are made",
}
_DISK_NESTED = Keys(LOCAL_DISKPARAMS, per_hypervisor=True)
_HV_FLAT = Keys(LOCAL_HVPARAMS)
#: Ops remote callers may run, each with the parameters (or keys) only root may set.
REMOTE_OPS: Mapping[str, Mapping[str, str | Keys]] = {
    "cluster.modify": {
        "domain_secret": "it is the trust between clusters: whoever knows it can move "
        "instances in and out",
        "allow_cipher_bypassing": "it weakens the TLS of moves (Ganeti: never reachable from RAPI)",
        "zeroing_image": "it names the directory on every node whose kernel and initrd "
        "qemu, running as root, boots",
        "hvparams": _HV_NESTED,
        "diskparams": _DISK_NESTED,
    },
    "cluster.verify": {},
    "debug.delay": {},
    "export.list": {},
    "export.remove": {},
    "group.add": {"hvparams": _HV_NESTED, "diskparams": _DISK_NESTED},
    "group.modify": {"hvparams": _HV_NESTED, "diskparams": _DISK_NESTED},
    "group.remove": {},
    "group.rename": {},
    "instance.activate_disks": {},
    "instance.add": {"hvparams": _HV_FLAT},
    "instance.deactivate_disks": {},
    "instance.export": {},
    "instance.failover": {},
    "instance.import": {},
    "instance.migrate": {},
    "instance.modify": {"hvparams": _HV_FLAT},
    "instance.move": {
        "dest_cluster": "it is a path to a local socket the master connects to as root",
    },
    "instance.reboot": {},
    "instance.reinstall": {},
    "instance.remove": {},
    "instance.rename": {},
    "instance.replace_disks": {},
    "instance.start": {},
    "instance.stop": {},
    "node.evacuate": {},
    "node.modify": {
        "secondary_ip": "it points the node's replication traffic (DRBD, disk transfers) at "
        "an address of the caller's choosing",
    },
    "node.remove": {},
}


def came_remotely(reason: Any) -> bool:
    """Whether a job's reason trail shows it (or the job that spawned it) came over HTTPS.

    Anyone may write such an entry themselves; that only makes their own job stricter.
    """
    return isinstance(reason, list) and any(
        isinstance(entry, list) and entry[:1] == [REMOTE_SOURCE] for entry in reason
    )


def refuse_remote_jobs(specs: Any, list_field: str | None = None) -> None:
    """Raise ForbiddenError for the first thing in ``specs`` (job objects) only root may use.

    ``list_field`` names the list in field names (``jobs[1].ops[0].…``), as the queue's
    own errors do. Shapes are left to the queue's validation: this looks only at what
    it recognises, so a malformed job still gets its 400 from there.
    """
    for index, spec in enumerate(specs if isinstance(specs, list) else []):
        prefix = f"{list_field}[{index}]." if list_field else ""
        if isinstance(spec, dict):
            refuse_remote_ops(spec.get("ops"), prefix)


def refuse_remote_ops(ops: Any, prefix: str = "") -> None:
    """Raise ForbiddenError for the first op, parameter or key in ``ops`` only root may use."""
    known = registry()
    for index, raw in enumerate(ops if isinstance(ops, list) else []):
        op_id = raw.get("op") if isinstance(raw, dict) else None
        if not isinstance(op_id, str) or op_id not in known:
            continue
        where = f"{prefix}ops[{index}]"
        rules = REMOTE_OPS.get(op_id)
        if rules is None:
            why = LOCAL_OPS.get(op_id, "it is not classified for remote use")
            what = f"op '{op_id}' ({where}) is local-only: {why}"
            raise _refusal(what, "run", f"{where}.op", op_id)
        for name, rule in rules.items():
            if raw.get(name) is not None:
                _check_param(op_id, f"{where}.{name}", raw[name], rule)


def _check_param(op_id: str, field: str, value: Any, rule: str | Keys) -> None:
    if isinstance(rule, str):
        _refuse_field(op_id, field, rule)
    elif rule.per_hypervisor:
        for hv, inner in value.items() if isinstance(value, dict) else ():
            _check_keys(op_id, f"{field}.{hv}", inner, rule.local)
    else:
        _check_keys(op_id, field, value, rule.local)


def _check_keys(op_id: str, field: str, value: Any, local: Mapping[str, str]) -> None:
    for key, why in local.items():
        if isinstance(value, dict) and value.get(key) is not None:
            _refuse_field(op_id, f"{field}.{key}", why)


def _refuse_field(op_id: str, field: str, why: str) -> None:
    what = f"field '{field}' of op '{op_id}' is local-only: {why}"
    raise _refusal(what, "set", field, op_id)


def _refusal(what: str, verb: str, field: str, op_id: str) -> ForbiddenError:
    """The value is left out on purpose: it may be a secret (``domain_secret``)."""
    return ForbiddenError(
        f"{what}; remote API callers may not {verb} it: {verb} it {HOW}", field=field, op=op_id
    )
