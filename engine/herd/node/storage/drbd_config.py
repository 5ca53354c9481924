"""DRBD resource files for Herd disks, for DRBD 8.4 and DRBD 9, from the master's params.

Herd drives DRBD through ``drbdadm`` and a generated resource file per disk rather than
raw ``drbdsetup`` calls (Ganeti's way), so an operator on a node can inspect and repair a
resource with the ordinary tools.  Every value that reaches the file is checked against
a strict character set first: the file is parsed by drbdadm, which runs handlers through
a shell, so a quote smuggled in through a parameter would be code execution as root.

Both versions get the same topology: two ``on`` sections named like the master's nodes,
one device per node with its own minor, data on one LV and flexible external metadata on
another.  DRBD 9 additionally needs node ids (the position in ``nodes``) and a volume
number and gets an explicit two-host ``connection`` section.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.errors import ValidationError
from herd.node.storage.plain import lvm_name

FIELD = "disk.params"
META_SIZE_MIB = 128
PROTOCOLS = ("A", "B", "C")
#: Ganeti's split-brain policy: resolve automatically only when one side wrote nothing,
#: otherwise stop replicating and let an operator choose which data survives.
DEFAULT_NET_OPTIONS: dict[str, str] = {
    "cram-hmac-alg": "sha256",
    "after-sb-0pri": "discard-zero-changes",
    "after-sb-1pri": "consensus",
    "after-sb-2pri": "disconnect",
    "rr-conflict": "disconnect",
}
_OPTION_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
_OPTION_VALUE = re.compile(r"[A-Za-z0-9._:/+-]{1,128}")
_SECRET = re.compile(r"[A-Za-z0-9._+/=-]{1,64}")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_RESOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Options Herd sets itself; a params override would silently break an invariant.
_RESERVED = frozenset({"shared-secret", "protocol", "allow-two-primaries"})
MAX_MINOR = 1048575


@dataclass(frozen=True)
class DrbdHost:
    name: str
    address: str
    minor: int
    node_id: int

    @property
    def endpoint(self) -> str:
        ip = ipaddress.ip_address(self.address)
        return f"ipv6 [{ip}]" if ip.version == 6 else f"ipv4 {ip}"


@dataclass(frozen=True)
class DrbdResource:
    """Everything a resource file says; built by ``from_params`` from checked input."""

    name: str
    port: int
    secret: str
    hosts: tuple[DrbdHost, DrbdHost]
    vg: str
    data_lv: str
    meta_lv: str
    protocol: str = "C"
    resync_rate: str | None = None
    net_options: Mapping[str, str] = field(default_factory=dict)
    disk_options: Mapping[str, str] = field(default_factory=dict)
    allow_two_primaries: bool = False
    split_brain_marker: str | None = None

    @property
    def data_dev(self) -> str:
        return f"/dev/{self.vg}/{self.data_lv}"

    @property
    def meta_dev(self) -> str:
        return f"/dev/{self.vg}/{self.meta_lv}"

    def host(self, node_name: str) -> DrbdHost:
        for host in self.hosts:
            if host.name == node_name:
                return host
        raise ValidationError(
            f"{FIELD}.nodes",
            [h.name for h in self.hosts],
            f"a list naming this node ({node_name})",
        )

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Any], default_vg: str) -> DrbdResource:
        """Check the master's disk params; each bad value is a ValidationError naming it."""
        if not _RESOURCE.fullmatch(name):
            raise ValidationError("disk.uuid", name, "letters, digits and ._- (for a resource)")
        nodes = params.get("nodes")
        if (
            not isinstance(nodes, list)
            or len(nodes) != 2
            or len(set(map(str, nodes))) != 2
            or not all(isinstance(n, str) and _NODE_NAME.fullmatch(n) for n in nodes)
        ):
            raise ValidationError(f"{FIELD}.nodes", nodes, "two distinct node names")
        minors = _mapping(params, "minors")
        addresses = _mapping(params, "addresses")
        hosts = tuple(
            DrbdHost(
                name=node,
                address=_address(f"{FIELD}.addresses.{node}", addresses.get(node)),
                minor=_int(f"{FIELD}.minors.{node}", minors.get(node), 0, MAX_MINOR),
                node_id=index,
            )
            for index, node in enumerate(nodes)
        )
        if hosts[0].address == hosts[1].address:
            raise ValidationError(
                f"{FIELD}.addresses", dict(addresses), "a different address per node"
            )
        secret = params.get("secret")
        if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
            raise ValidationError(f"{FIELD}.secret", "<hidden>", "1-64 of A-Za-z0-9._+/=-")
        protocol = params.get("protocol", "C")
        if protocol not in PROTOCOLS:
            raise ValidationError(f"{FIELD}.protocol", protocol, f"one of {list(PROTOCOLS)}")
        rate = params.get("resync_rate")
        return cls(
            name=name,
            port=_int(f"{FIELD}.port", params.get("port"), 1, 65535),
            secret=secret,
            hosts=(hosts[0], hosts[1]),
            vg=lvm_name(f"{FIELD}.vg", params.get("vg", params.get("vg_name", default_vg))),
            data_lv=lvm_name(f"{FIELD}.data_lv", params.get("data_lv", f"{name}.data")),
            meta_lv=lvm_name(f"{FIELD}.meta_lv", params.get("meta_lv", f"{name}.meta")),
            protocol=protocol,
            resync_rate=None if rate is None else option_value(f"{FIELD}.resync_rate", rate),
            net_options=drbd_options(f"{FIELD}.net_options", params.get("net_options", {})),
            disk_options=drbd_options(f"{FIELD}.disk_options", params.get("disk_options", {})),
        )


def render(res: DrbdResource, version: int) -> str:
    """The resource file for a DRBD ``version`` (8 or 9) kernel module."""
    if version not in (8, 9):
        raise ValidationError("drbd_version", version, "8 or 9")
    net = {
        "protocol": res.protocol,
        **DEFAULT_NET_OPTIONS,
        **res.net_options,
        "shared-secret": f'"{res.secret}"',
        "allow-two-primaries": "yes" if res.allow_two_primaries else "no",
    }
    disk = dict(res.disk_options)
    if res.resync_rate is not None:
        disk["resync-rate"] = res.resync_rate
    lines = [f"# generated by herd-node for disk {res.name}; edits are overwritten", ""]
    lines.append(f"resource {res.name} {{")
    lines += _section("net", net)
    if disk:
        lines += _section("disk", disk)
    if res.split_brain_marker is not None:
        command = f"touch {shlex.quote(res.split_brain_marker)}"
        lines += _section("handlers", {"split-brain": f'"{command}"'})
    for host in res.hosts:
        lines.append(f"  on {host.name} {{")
        if version == 9:
            lines += [
                f"    node-id {host.node_id};",
                "    volume 0 {",
                f"      device minor {host.minor};",
                f"      disk {res.data_dev};",
                f"      meta-disk {res.meta_dev};",
                "    }",
            ]
        else:
            lines += [
                f"    device /dev/drbd{host.minor} minor {host.minor};",
                f"    disk {res.data_dev};",
                f"    meta-disk {res.meta_dev};",
            ]
        lines.append(f"    address {host.endpoint}:{res.port};")
        lines.append("  }")
    if version == 9:
        lines.append("  connection {")
        lines += [f"    host {h.name} address {h.endpoint}:{res.port};" for h in res.hosts]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _section(name: str, options: Mapping[str, str]) -> list[str]:
    return [f"  {name} {{", *(f"    {k} {v};" for k, v in options.items()), "  }"]


def _mapping(params: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = params.get(key)
    if not isinstance(value, dict):
        raise ValidationError(f"{FIELD}.{key}", value, "an object keyed by node name")
    return value


def _int(field_name: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationError(field_name, value, f"an integer {low}..{high}")
    return value


def _address(field_name: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValidationError(field_name, value, "an IPv4 or IPv6 address") from exc


def option_value(field_name: str, value: Any) -> str:
    """One DRBD option value; public so the master checks diskparams by the same rule."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value) if isinstance(value, int) else value
    if not isinstance(text, str) or not _OPTION_VALUE.fullmatch(text):
        raise ValidationError(field_name, value, "a number, yes/no or a word of A-Za-z0-9._:/+-")
    return text


def drbd_options(field_name: str, options: Any) -> dict[str, str]:
    """DRBD ``net``/``disk`` options; public so the master checks diskparams by this rule."""
    if not isinstance(options, dict):
        raise ValidationError(field_name, options, "an object of DRBD options")
    checked = {}
    for name, value in options.items():
        if not _OPTION_NAME.fullmatch(name) or name in _RESERVED:
            raise ValidationError(
                field_name, name, f"a DRBD option name other than {sorted(_RESERVED)}"
            )
        checked[name] = option_value(f"{field_name}.{name}", value)
    return checked
