"""Parameters set at several levels: cluster defaults, group overrides, the instance itself.

Each kind (beparams, nicparams, diskparams, hvparams, ndparams) has one table here, and
every level checks its values against that same table when the job is submitted. A
cluster default is therefore always a value an instance could have set itself:
``beparams.memory="lots"`` is refused by ``cluster.modify`` instead of breaking every
later ``instance.add``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from herd.errors import ValidationError
from herd.hvparams import fill_hvparams, parameters_of
from herd.node.storage.drbd_config import PROTOCOLS, drbd_options, option_value
from herd.node.storage.plain import lvm_name
from herd.ops.params import Param, check_ip

#: 4 TiB: beyond any host Herd places on, so a larger value is a typo, not a wish.
MAX_MEMORY_MIB = 4 * 1024 * 1024
MAX_VCPUS = 256
NIC_MODES = ("bridged", "routed", "openvswitch")
_LINK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_ITEM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _from_raiser(fn: Callable[[str, Any], Any]) -> Callable[[Any], str | None]:
    """A ``Param.check`` from a node-side checker that raises, so both sides share a rule."""

    def check(value: Any) -> str | None:
        try:
            fn("", value)
        except ValidationError as exc:
            return str(exc.details["allowed"])
        return None

    return check


def _drbd_options(value: Any, fname: str) -> Any:
    """``Param.structure`` by the node's own rule for DRBD options."""
    drbd_options(fname, value)
    return value


def check_link(value: str) -> str | None:
    """A NIC link: a Linux interface (bridge, switch) name, or empty for none."""
    if value == "" or _LINK_RE.match(value):
        return None
    return "an interface name of up to 15 letters, digits and _.:- (or empty)"


def check_mac(value: str) -> str | None:
    return None if _MAC_RE.match(value) else "a lower-case MAC address aa:bb:cc:dd:ee:ff"


def check_item_name(value: str) -> str | None:
    """Names of disks and NICs inside one instance."""
    if _ITEM_NAME_RE.match(value):
        return None
    return "a name of up to 63 letters, digits and ._- (starting with a letter or digit)"


BEPARAMS: Mapping[str, Param] = {
    p.name: p
    for p in (
        Param("memory", int, minimum=16, maximum=MAX_MEMORY_MIB, doc="memory in MiB"),
        Param("vcpus", int, minimum=1, maximum=MAX_VCPUS, doc="virtual CPUs"),
        Param("auto_balance", bool, doc="the balancer may move the instance"),
    )
}

NICPARAMS: Mapping[str, Param] = {
    p.name: p
    for p in (
        Param("mode", str, choices=NIC_MODES, doc="how the NIC reaches the network"),
        Param("link", str, check=check_link, doc="bridge or switch the NIC attaches to"),
    )
}

#: Node parameters Herd honours: none yet. Nothing reads Ganeti's (oob_program,
#: spindle_count, exclusive_storage, ovs, ovs_name, ovs_link, ssh_port, cpu_speed): a
#: node's SSH port is node.add's ``ssh_port``, storage is never exclusive, there is no
#: out-of-band program. Stored, such a key would look honoured; one joins this table
#: together with the code that reads it.
NDPARAMS: Mapping[str, Param] = {}

#: One NIC of an instance: the cluster's nicparams plus what only an instance has.
NIC_FIELDS: Mapping[str, Param] = {
    **NICPARAMS,
    **{
        p.name: p
        for p in (
            Param("mac", str, check=check_mac, doc="MAC address (default: a new one)"),
            Param("ip", str, check=check_ip, doc="IP address, informational"),
            Param("name", str, check=check_item_name, doc="NIC name"),
        )
    },
}

_VG_NAME = Param("vg_name", str, check=_from_raiser(lvm_name), doc="LVM volume group")

#: Disk parameters by template; templates without any take none (file, sharedfile).
DISKPARAMS: Mapping[str, Mapping[str, Param]] = {
    "drbd": {
        p.name: p
        for p in (
            _VG_NAME,
            Param("protocol", str, choices=PROTOCOLS, doc="DRBD replication protocol"),
            Param(
                "resync_rate",
                object,
                check=_from_raiser(option_value),
                allowed="a number, or a word of A-Za-z0-9._:/+- such as 100M",
                doc="DRBD resync-rate (KiB/s), e.g. 61440 or 100M",
            ),
            Param("net_options", dict, structure=_drbd_options, doc="extra DRBD net options"),
            Param("disk_options", dict, structure=_drbd_options, doc="extra DRBD disk options"),
        )
    },
    "plain": {_VG_NAME.name: _VG_NAME},
    "file": {},
    "sharedfile": {},
}


def check_level(table: Mapping[str, Param], value: Mapping[str, Any], fname: str) -> dict[str, Any]:
    """Every key known to ``table`` and every value valid for it; errors name ``fname.key``.

    Only the keys given are kept: a level stores what it overrides, nothing more.
    """
    out = {}
    for key, item in value.items():
        param = table.get(key)
        if param is None:
            allowed = ", ".join(sorted(table)) or "no parameters"
            raise ValidationError(
                f"{fname}.{key}",
                item,
                allowed,
                message=f"unknown field '{fname}.{key}'; allowed fields: {allowed}",
            )
        out[key] = param.validate(item, prefix=f"{fname}.")
    return out


def check_beparams(value: Mapping[str, Any], fname: str) -> dict[str, Any]:
    return check_level(BEPARAMS, value, fname)


def check_nicparams(value: Mapping[str, Any], fname: str) -> dict[str, Any]:
    return check_level(NICPARAMS, value, fname)


def check_ndparams(value: Mapping[str, Any], fname: str) -> dict[str, Any]:
    return check_level(NDPARAMS, value, fname)


def check_diskparams(value: Mapping[str, Any], fname: str) -> dict[str, Any]:
    """``{template: {param: value}}``; the templates and their params from DISKPARAMS."""
    out = {}
    for template, inner in value.items():
        where = f"{fname}.{template}"
        table = DISKPARAMS.get(template)
        if table is None:
            raise ValidationError(where, inner, f"a disk template: one of {sorted(DISKPARAMS)}")
        out[template] = check_level(table, _mapping(inner, where), where)
    return out


def check_hvparams(value: Mapping[str, Any], fname: str) -> dict[str, Any]:
    """``{hypervisor: {param: value}}``, against each hypervisor's own PARAMETERS table."""
    out = {}
    for name, params in value.items():
        try:
            parameters_of(name)
        except ValidationError as exc:
            raise ValidationError(f"{fname}.{name}", params, str(exc.details["allowed"])) from None
        inner = _mapping(params, f"{fname}.{name}")
        fill_hvparams(name, inner, f"{fname}.{name}")
        out[name] = dict(inner)
    return out


def instance_param(table: Mapping[str, Param], name: str, doc: str) -> Param:
    """An op's own parameter that is also a level param, e.g. instance.add's ``memory``."""
    return replace(table[name], doc=doc)


def _mapping(value: Any, fname: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(fname, value, "a mapping of parameter names to values")
    return value
