"""``instance.modify``: change what an instance is, not where it runs.

Memory, vCPUs and hypervisor parameters take effect at the next start (the result says
so when the instance is running); disks can only grow, in place, on every node holding
them; NICs can be added, changed or removed by index. A stopped instance's disks convert
between ``plain`` and ``drbd`` (``herd.ops.disk_convert``) before the other changes apply.
"""

from __future__ import annotations

from typing import Any

from herd.config.model import Instance, Nic
from herd.errors import PrerequisiteError, ValidationError
from herd.hvparams import check_for_any_hypervisor, fill_hvparams
from herd.ops import disk_convert, drbd
from herd.ops.base import OpContext, register
from herd.ops.common import check_osparams, cluster_of, get_node
from herd.ops.instance_base import (
    InstanceOp,
    instance_name_param,
    require_online,
    require_secondary_candidate,
    require_stopped,
)
from herd.ops.instance_common import (
    check_nics,
    disk_arg,
    generate_mac,
    normalise_nics,
    parse_size,
    used_macs,
)
from herd.ops.levels import BEPARAMS, instance_param
from herd.ops.params import Param, check_tags

#: The templates a disk conversion goes between.
CONVERSIONS = (disk_convert.PLAIN, drbd.TEMPLATE)


def _check_hvparams(value: dict[str, Any], fname: str) -> dict[str, Any]:
    """A null resets a parameter to the cluster default: only its name is checked."""
    return check_for_any_hypervisor(value, fname, resettable=True)


@register
class InstanceModify(InstanceOp):
    OP_ID = "instance.modify"
    SUMMARY = "Change memory, vCPUs, parameters, tags, NICs, grow a disk, convert plain/drbd"
    PARAMS = (
        instance_name_param(),
        instance_param(BEPARAMS, "memory", "memory in MiB (next start)"),
        instance_param(BEPARAMS, "vcpus", "virtual CPUs (next start)"),
        Param(
            "hvparams",
            dict,
            structure=_check_hvparams,
            doc="hypervisor parameters to set (null value: back to the cluster default)",
        ),
        Param(
            "osparams",
            dict,
            structure=check_osparams,
            doc="OS parameters, replacing the current ones (rules as instance.add's)",
        ),
        Param(
            "tags", list, item_type=str, check=check_tags, doc="tags, replacing the current ones"
        ),
        Param(
            "nics",
            list,
            structure=check_nics,
            doc="the complete NIC list {mac, ip, mode, link, name}; "
            "entries without mac keep the MAC of the NIC at that index or get a new one",
        ),
        Param("disk_grow", dict, doc="{'index': N, 'size': '20G'}: grow disk N to this size"),
        Param(
            "disk_template",
            str,
            choices=CONVERSIONS,
            doc="convert a stopped instance's disks between plain and drbd, keeping the data",
        ),
        Param(
            "secondary_node",
            str,
            doc="conversion to drbd: the node that gets the mirror",
        ),
    )

    def extra_nodes(self, ctx: OpContext, inst: Instance) -> list[str]:
        if self.params["secondary_node"] is None:
            return []
        return [get_node(ctx, self.params["secondary_node"], "secondary_node").uuid]

    def converting(self, inst: Instance) -> bool:
        wanted = self.params["disk_template"]
        return wanted is not None and wanted != inst.disk_template

    def check_conversion(self, ctx: OpContext, inst: Instance) -> None:
        """Only plain <-> drbd, alone, on a stopped instance with a fitting secondary."""
        p = self.params
        if not self.converting(inst):
            if p["secondary_node"] is not None:
                raise ValidationError(
                    "secondary_node", p["secondary_node"], "only with a conversion to drbd"
                )
            return
        if inst.disk_template not in CONVERSIONS:
            raise ValidationError(
                "disk_template",
                p["disk_template"],
                f"no conversion: '{inst.disk_template}' converts to nothing",
            )
        if p["disk_grow"] is not None:
            raise ValidationError("disk_grow", p["disk_grow"], "nothing during a conversion")
        require_stopped(ctx, self, "convert its disks")
        if p["disk_template"] == disk_convert.PLAIN:
            if p["secondary_node"] is not None:
                raise ValidationError(
                    "secondary_node", p["secondary_node"], "nothing: plain has no secondary"
                )
            return
        if drbd.TEMPLATE not in cluster_of(ctx).enabled_disk_templates:
            raise PrerequisiteError("the drbd disk template is not enabled in this cluster")
        if p["secondary_node"] is None:
            raise ValidationError("secondary_node", None, "a node for the mirror")
        primary = self.primary(ctx, inst)
        secondary = get_node(ctx, p["secondary_node"], "secondary_node")
        if secondary.uuid == primary.uuid:
            raise ValidationError("secondary_node", secondary.name, "a node other than the primary")
        require_secondary_candidate(secondary, primary)

    def check(self, ctx: OpContext) -> None:
        inst = self.instance(ctx)
        self.check_conversion(ctx, inst)
        if self.params["hvparams"] is not None:
            current = {**inst.hvparams, **self.params["hvparams"]}
            fill_hvparams(inst.hypervisor, {k: v for k, v in current.items() if v is not None})
        grow = self.params["disk_grow"]
        if grow is not None:
            if (
                set(grow) != {"index", "size"}
                or not isinstance(grow["index"], int)
                or not 0 <= grow["index"] < len(inst.disks)
            ):
                raise ValidationError(
                    "disk_grow", grow, f"{{'index': 0..{len(inst.disks) - 1}, 'size': SIZE}}"
                )
            new = parse_size(grow["size"], "disk_grow.size")
            if new < inst.disks[grow["index"]].size_mib:
                raise ValidationError(
                    "disk_grow.size",
                    grow["size"],
                    "a size at least the "
                    f"current {inst.disks[grow['index']].size_mib} MiB: "
                    "disks never shrink",
                )
            for uuid in [inst.primary_node, *inst.secondary_nodes]:
                require_online(ctx.store.get("node", uuid), "grow disks")

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        inst = self.instance(ctx)
        changes: dict[str, Any] = {}

        def change(field: str, before: Any, after: Any) -> None:
            if before != after:
                changes[field] = {"before": before, "after": after}

        left_behind: list[str] = []
        if self.converting(inst):
            change("disk_template", inst.disk_template, p["disk_template"])
            if p["disk_template"] == drbd.TEMPLATE:
                secondary = get_node(ctx, p["secondary_node"], "secondary_node")
                inst = disk_convert.to_drbd(ctx, inst, secondary)
            else:
                inst, left_behind = disk_convert.to_plain(ctx, inst)

        beparams = dict(inst.beparams)
        for key in ("memory", "vcpus"):
            if p[key] is not None:
                change(key, beparams.get(key), p[key])
                beparams[key] = p[key]
        hvparams = dict(inst.hvparams)
        for key, value in (p["hvparams"] or {}).items():
            change(f"hvparams.{key}", hvparams.get(key), value)
            if value is None:
                hvparams.pop(key, None)
            else:
                hvparams[key] = value
        if p["osparams"] is not None:
            change("osparams", inst.osparams, p["osparams"])
        if p["tags"] is not None:
            change("tags", sorted(inst.tags), sorted(p["tags"]))
        nics = inst.nics
        if p["nics"] is not None:
            nics = self.new_nics(ctx, inst.nics, p["nics"])
            change("nics", [n.to_dict() for n in inst.nics], [n.to_dict() for n in nics])
        grow = p["disk_grow"]
        if grow is not None:
            new = parse_size(grow["size"], "disk_grow.size")
            disk = inst.disks[grow["index"]]
            change(f"disks[{grow['index']}].size_mib", disk.size_mib, new)
        if not changes:
            return {"changed": False, "changes": {}}
        if set(changes) == {"disk_template"}:
            return {"changed": True, "changes": changes, "cleanup_problems": left_behind}
        if grow is not None and new != disk.size_mib:
            if drbd.is_drbd(inst):
                drbd.grow(ctx, inst, grow["index"], new)
            else:
                for uuid in [inst.primary_node, *inst.secondary_nodes]:
                    ctx.services.call(
                        ctx.store.get("node", uuid),
                        "disk_grow",
                        {"disk": disk_arg(inst, grow["index"], disk), "size_mib": new},
                        timeout=600,
                    )
            disk.size_mib = new
            ctx.log(f"disk {grow['index']} of {inst.name} grown to {new} MiB")
        inst.beparams, inst.hvparams, inst.nics = beparams, hvparams, nics
        if p["osparams"] is not None:
            inst.osparams = p["osparams"]
        if p["tags"] is not None:
            inst.tags = p["tags"]
        with ctx.store.transaction() as txn:
            txn.update(inst)
        pending = sorted(
            k for k in changes if k in ("memory", "vcpus", "nics") or k.startswith("hvparams.")
        )
        if pending and inst.admin_state == "up":
            ctx.log(f"{', '.join(pending)} take effect when {inst.name} is restarted", "warning")
        return {
            "changed": True,
            "changes": changes,
            "pending_restart": pending if inst.admin_state == "up" else [],
            "cleanup_problems": left_behind,
        }

    @staticmethod
    def new_nics(ctx: OpContext, current: list[Nic], wanted: list[Any]) -> list[Nic]:
        """A MAC may move between the instance's own NICs (removing one by index shifts
        the rest) but not take another instance's; a new MAC avoids every MAC in use or
        asked for, and is never itself mistaken for one in use."""
        specs = normalise_nics(wanted, cluster_of(ctx).nicparams)
        in_use = used_macs(ctx.store.list("instance"))
        others = in_use - {n.mac for n in current}
        given = {s["mac"] for s in specs if s["mac"]}
        reserved = in_use | given
        out = []
        for index, spec in enumerate(specs):
            old = current[index] if index < len(current) else None
            mac = spec["mac"] or (old.mac if old and old.mac not in given else None)
            if old is not None and old.mac == mac:
                nic = Nic.from_dict(old.to_dict())
            elif mac in others:
                raise ValidationError(f"nics[{index}].mac", mac, "a MAC no other NIC uses")
            else:
                nic = Nic(
                    name=spec["name"],
                    mac=mac or generate_mac(cluster_of(ctx).mac_prefix, reserved),
                )
            nic.name, nic.ip, nic.mode, nic.link = (
                spec["name"],
                spec["ip"],
                spec["mode"],
                spec["link"],
            )
            out.append(nic)
        return out
