"""``instance.add``: place, create disks, install the OS, record, start.

Every step that makes something registers its undo first, so a create that fails at any
point (a node dying, a full disk, a broken OS script) leaves no disk, process or config
entry behind.
"""

from __future__ import annotations

from typing import Any, ClassVar

from herd.config.model import Disk, Instance, Nic, Node
from herd.errors import PrerequisiteError, ValidationError
from herd.hvparams import HYPERVISORS, check_for_any_hypervisor, fill_hvparams
from herd.ops import drbd
from herd.ops.base import ALL_LOCKS, LockSpec, Op, OpContext, register
from herd.ops.common import INSTANCE_DISK_TEMPLATES, check_osparams, cluster_of, get_node
from herd.ops.instance_base import (
    assemble_disks,
    set_admin_state,
    shutdown_disks,
    start_on,
    undo_start,
)
from herd.ops.instance_common import (
    MIRRORED,
    check_disks,
    check_nics,
    disk_arg,
    generate_mac,
    instance_spec,
    normalise_disks,
    normalise_nics,
    undo_disk_create,
    used_macs,
)
from herd.ops.levels import BEPARAMS, instance_param
from herd.ops.params import Param, check_name, check_os_name, check_tags
from herd.ops.placement import IALLOCATOR, place
from herd.ops.undo import instance_arg, node_arg, undo_handler


@register
class InstanceAdd(Op):
    OP_ID = "instance.add"
    SUMMARY = "Create an instance: place it, make its disks, install its OS, start it"
    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param(
            "name", str, required=True, check=check_name, cli_positional=True, doc="instance name"
        ),
        Param(
            "disk_template",
            str,
            required=True,
            choices=INSTANCE_DISK_TEMPLATES,
            doc="how disks are stored",
        ),
        Param(
            "disks",
            list,
            default=[],
            structure=check_disks,
            doc="disk sizes (MiB, or 512M/2G/1T) or {size, mode, name} mappings",
        ),
        Param(
            "nics",
            list,
            default=[{}],
            structure=check_nics,
            doc="NICs as {mac, ip, mode, link, name}; "
            "one NIC with the cluster's defaults when not given",
        ),
        Param("os", str, check=check_os_name, doc="OS definition, 'name+variant' (Ganeti OS API)"),
        Param("install", bool, default=True, doc="run the OS create script on the disks"),
        Param(
            "hypervisor",
            str,
            choices=HYPERVISORS,
            doc="hypervisor (default: the cluster's first enabled one)",
        ),
        Param(
            "hvparams",
            dict,
            default={},
            structure=check_for_any_hypervisor,
            doc="hypervisor parameters for this instance",
        ),
        instance_param(BEPARAMS, "memory", "memory in MiB (default: the cluster's)"),
        instance_param(BEPARAMS, "vcpus", "virtual CPUs (default: the cluster's)"),
        Param(
            "osparams",
            dict,
            default={},
            structure=check_osparams,
            doc="OS parameters (OSP_* variables): names of letters, digits and '_', "
            "values strings, numbers or booleans (passed as text)",
        ),
        Param("primary_node", str, doc="place here instead of asking the allocator"),
        Param("secondary_node", str, doc="DRBD secondary (with primary_node)"),
        IALLOCATOR,
        Param(
            "opportunistic",
            bool,
            default=False,
            doc="lock only the nodes free right now and place among them",
        ),
        Param(
            "opportunistic_tries",
            int,
            default=0,
            minimum=0,
            maximum=100,
            doc="opportunistic tries (implies opportunistic); a temporarily infeasible try "
            "puts the job back in the queue for the next one, and after the last a create "
            "with blocking locks runs (0: one try, no retry)",
        ),
        Param(
            "opportunistic_delay",
            float,
            default=5.0,
            minimum=0,
            maximum=3600,
            doc="seconds between opportunistic tries (each spread by +/-20%)",
        ),
        Param("start", bool, default=True, doc="start the instance once created"),
        Param("tags", list, default=[], item_type=str, check=check_tags, doc="instance tags"),
        Param("dry_run", bool, default=False, doc="only return where it would be placed"),
    )

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        # A hypervisor named in the request is known at submit: its own table, and its
        # checks across parameters (VNC's), refuse now what check() would refuse later.
        if self.params["hypervisor"] is not None:
            fill_hvparams(self.params["hypervisor"], self.params["hvparams"])

    def explicit_nodes(self, ctx: OpContext) -> list[Node]:
        p = self.params
        nodes = []
        if p["primary_node"] is not None:
            nodes.append(get_node(ctx, p["primary_node"], "primary_node"))
        if p["secondary_node"] is not None:
            if p["primary_node"] is None:
                raise ValidationError(
                    "secondary_node", p["secondary_node"], "only together with primary_node"
                )
            nodes.append(get_node(ctx, p["secondary_node"], "secondary_node"))
        return nodes

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level in ("node", "node-res"):
            explicit = self.explicit_nodes(ctx)
            if explicit:
                return LockSpec(tuple(sorted(n.uuid for n in explicit)))
            wanted = 2 if self.params["disk_template"] in MIRRORED else 1
            # node-res follows exactly the node locks obtained, so it is never opportunistic.
            if level == "node-res":
                return LockSpec(tuple(sorted(ctx.owned("node"))))
            return LockSpec(ALL_LOCKS, opportunistic=self.params["opportunistic"], min_count=wanted)
        return super().declare_locks(level, ctx)

    def check(self, ctx: OpContext) -> None:
        p = self.params
        c = cluster_of(ctx)
        if ctx.store.find("instance", p["name"]) is not None:
            raise PrerequisiteError(f"instance {p['name']} already exists", field="name")
        self.hypervisor = p["hypervisor"] or c.enabled_hypervisors[0]
        if self.hypervisor not in c.enabled_hypervisors:
            raise ValidationError(
                "hypervisor",
                self.hypervisor,
                "an enabled hypervisor: " + ", ".join(c.enabled_hypervisors),
            )
        template = p["disk_template"]
        if template != "diskless" and template not in c.enabled_disk_templates:
            raise ValidationError(
                "disk_template",
                template,
                "an enabled disk template: " + ", ".join(["diskless", *c.enabled_disk_templates]),
            )
        fill_hvparams(self.hypervisor, p["hvparams"])
        self.disks = normalise_disks(p["disks"])
        if template == "diskless" and self.disks:
            raise ValidationError("disks", p["disks"], "no disks for disk_template 'diskless'")
        if template != "diskless" and not self.disks:
            raise ValidationError("disks", p["disks"], "at least one disk")
        self.nics = normalise_nics(p["nics"], c.nicparams)
        if p["install"] and template != "diskless" and not p["os"]:
            raise ValidationError("os", None, "an OS name (or install: false)")
        explicit = self.explicit_nodes(ctx)
        if explicit and template in MIRRORED and len(explicit) != 2:
            raise ValidationError(
                "secondary_node",
                p["secondary_node"],
                f"a node other than the primary for '{template}'",
            )
        if explicit and template not in MIRRORED and len(explicit) != 1:
            raise ValidationError(
                "secondary_node", p["secondary_node"], f"nothing: '{template}' has no secondary"
            )
        if len({n.uuid for n in explicit}) != len(explicit):
            raise ValidationError(
                "secondary_node", p["secondary_node"], "a node other than the primary"
            )
        for node in explicit:
            if node.offline or node.drained:
                flag = "offline" if node.offline else "drained"
                raise PrerequisiteError(
                    f"node {node.name} is {flag}: no new instances go there", node=node.name
                )

    def beparams(self) -> dict[str, Any]:
        return {k: self.params[k] for k in ("memory", "vcpus") if self.params[k] is not None}

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        c = cluster_of(ctx)
        memory = p["memory"] or int(c.beparams.get("memory", 128))
        vcpus = p["vcpus"] or int(c.beparams.get("vcpus", 1))
        placement = place(
            ctx,
            name=p["name"],
            template=p["disk_template"],
            memory=memory,
            vcpus=vcpus,
            disks=[d["size_mib"] for d in self.disks],
            explicit=self.explicit_nodes(ctx),
            allocator=p["iallocator"],
            opportunistic=p["opportunistic"],
            hypervisor=self.hypervisor,
            os_name=p["os"] or "",
        )
        chosen = [placement.primary, *([placement.secondary] if placement.secondary else [])]
        keep = {n.uuid for n in chosen}
        unneeded = ctx.owned("node") - keep
        if unneeded:
            ctx.release_locks("node-res", unneeded & ctx.owned("node-res"))
            ctx.release_locks("node", unneeded)
        ctx.log(
            f"placement: primary {placement.primary.name}"
            + (f", secondary {placement.secondary.name}" if placement.secondary else "")
        )
        if p["dry_run"]:
            return {
                "changed": False,
                "primary_node": placement.primary.name,
                "secondary_node": placement.secondary.name if placement.secondary else None,
            }
        with drbd.reserved(ctx.owner):
            inst = self.build(
                c, used_macs(ctx.store.list("instance")), placement.primary, placement.secondary
            )
            self.create_disks(ctx, inst, chosen)
            self.fill_disks(ctx, inst, placement.primary)
            with ctx.store.transaction() as txn:
                clash = used_macs(txn.list("instance")) & {n.mac for n in inst.nics}
                if clash:
                    raise PrerequisiteError(
                        f"MAC address {sorted(clash)[0]} is already in use", field="nics"
                    )
                drbd.check_unique(txn, inst)
                txn.add(inst)
        ctx.undo(f"remove {inst.name} from the config", "instance.forget", uuid=inst.uuid)
        ctx.locks.register("instance", [inst.uuid])
        if p["start"]:
            self.undo_assembly(ctx, inst, placement.primary)
            undo_start(ctx, inst, placement.primary)
            start_on(ctx, inst, placement.primary)
            set_admin_state(ctx, inst, "up")
            ctx.log(f"instance {inst.name} started on {placement.primary.name}")
        return {
            "changed": True,
            "instance": inst.name,
            "uuid": inst.uuid,
            "primary_node": placement.primary.name,
            "secondary_node": placement.secondary.name if placement.secondary else None,
        }

    def fill_disks(self, ctx: OpContext, inst: Instance, primary: Node) -> None:
        """Put the first data on the new disks: the OS create script here; imports and
        moves fill them from a stream instead."""
        if not (self.params["install"] and inst.os):
            return
        self.undo_assembly(ctx, inst, primary)
        paths = assemble_disks(ctx, inst, primary)
        ctx.log(f"installing OS {inst.os}")
        ctx.services.call(
            primary,
            "os_create",
            {"spec": instance_spec(ctx, inst), "disk_paths": paths, "reinstall": False},
            timeout=3600,
        )
        shutdown_disks(ctx, inst, primary)

    def build(self, c: Any, macs: set[str], primary: Node, secondary: Node | None) -> Instance:
        p = self.params
        inst = Instance(
            name=p["name"],
            primary_node=primary.uuid,
            secondary_nodes=[secondary.uuid] if secondary else [],
            os=p["os"] or "",
            hypervisor=self.hypervisor,
            hvparams=p["hvparams"],
            beparams=self.beparams(),
            osparams=p["osparams"],
            disk_template=p["disk_template"],
            tags=p["tags"],
            admin_state="down",
        )
        nodes = [primary.uuid, *([secondary.uuid] if secondary else [])]
        inst.disks = [
            Disk(
                name=d["name"],
                size_mib=d["size_mib"],
                mode=d["mode"],
                template=p["disk_template"],
                nodes=nodes,
            )
            for d in self.disks
        ]
        inst.nics = [
            Nic(
                name=n["name"],
                mac=n["mac"] or generate_mac(c.mac_prefix, macs),
                ip=n["ip"],
                mode=n["mode"],
                link=n["link"],
            )
            for n in self.nics
        ]
        return inst

    def create_disks(self, ctx: OpContext, inst: Instance, nodes: list[Node]) -> None:
        if drbd.is_drbd(inst):
            primary, secondary = nodes
            drbd.assign_params(ctx, inst, primary, secondary)
            drbd.create(
                ctx, inst, primary, secondary, skip_sync=self.params["install"] and bool(inst.os)
            )
            return
        for node in nodes:
            for index, disk in enumerate(inst.disks):
                spec = disk_arg(inst, index, disk)
                undo_disk_create(
                    ctx, f"remove disk {index} of {inst.name} on {node.name}", node, spec
                )
                ctx.services.call(node, "disk_create", {"disk": spec}, timeout=3600)
        ctx.log(f"created {len(inst.disks)} disk(s) on " + ", ".join(n.name for n in nodes))

    @staticmethod
    def undo_assembly(ctx: OpContext, inst: Instance, node: Node) -> None:
        """Disks in use (a DRBD Primary) cannot be removed: take them down first."""
        ctx.undo(
            f"shut down the disks of {inst.name} on {node.name}",
            "instance.shutdown_disks",
            instance=instance_arg(inst),
            node=node_arg(node),
        )


@undo_handler("instance.forget")
def _forget(ctx: OpContext, args: dict[str, Any]) -> None:
    """Take a new instance out of the config again, and its lock with it: the lock
    exists exactly while the config holds the instance (a restarted master registers
    locks from the config), so a second run of this step finds neither."""
    with ctx.store.transaction() as txn:
        current = txn.find("instance", args["uuid"])
        if current is not None:
            txn.delete(current)
    if current is not None:
        ctx.locks.unregister("instance", [args["uuid"]])
