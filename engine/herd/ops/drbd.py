"""The master's side of DRBD disks: what to allocate, and in which order to drive two nodes.

Nodes only do single, idempotent steps (``disk_create``, ``drbd_primary`` …); whether a
step is safe depends on what the *other* node is doing, which only the master knows.
So this module owns the sequencing rules that keep data safe:

* a port, a minor per node and a secret are chosen here and stored in the disk's params,
  held in an in-process reservation until the config write that records them (the
  master is one process, so two jobs placing disks at the same time never pick the same
  port or minor), and checked once more inside that write transaction;
* a node is promoted only once its peer is connected and its copy is UpToDate, unless
  the caller says the peer is gone (``force``): promoting an isolated copy is how split
  brains are made;
* a resync is polled (never waited for inside one RPC), so its progress reaches the job
  log and a cancel can stop the wait.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from herd.config.model import Cluster, Disk, Instance, Node, NodeGroup
from herd.config.params import fill_params
from herd.config.store import Transaction
from herd.errors import ConflictError, HerdError, PrerequisiteError
from herd.ops.base import OpContext
from herd.ops.instance_common import config_has_disk, disk_arg, undo_disk_create
from herd.ops.undo import instance_arg, instance_of, node_arg, node_of, undo_handler

TEMPLATE = "drbd"
DEFAULT_VG = "herd"
#: Local disk states a copy may be read from (the source of a resync or a conversion).
GOOD_COPY = frozenset({"UpToDate", "Consistent"})
#: How long the nodes of a disk get to find each other before a promotion is refused.
CONNECT_TIMEOUT = 60.0
SYNC_POLL_SECONDS = 1.0
#: A resync that makes no progress for this long is reported instead of waited for.
SYNC_STALL_TIMEOUT = 300.0


def is_drbd(inst: Instance) -> bool:
    return inst.disk_template == TEMPLATE


# -- allocation --------------------------------------------------------------------------


def used_resources(instances: Iterable[Instance]) -> tuple[set[int], dict[str, set[int]]]:
    """Ports and per-node minors held by the DRBD disks in ``instances``.

    A removed disk's port and minors are free again simply because no disk in the
    config names them any more: there is no separate free list to get out of step.
    """
    ports: set[int] = set()
    minors: dict[str, set[int]] = {}
    for inst in instances:
        for disk in inst.disks:
            if disk.template != TEMPLATE or "port" not in disk.params:
                continue
            ports.add(disk.params["port"])
            for node, minor in disk.params.get("minors", {}).items():
                minors.setdefault(node, set()).add(minor)
    return ports, minors


def lowest_free(used: set[int], low: int, high: int, what: str) -> int:
    for value in range(low, high + 1):
        if value not in used:
            return value
    raise PrerequisiteError(f"no free DRBD {what} left in {low}..{high}", resource=what)


class Reservations:
    """Ports and minors chosen by running jobs but not yet in the config, per job.

    Without it, two jobs creating disks at once both see the same lowest free port,
    build resources on the nodes, and one of them fails only at its final config write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ports: dict[str, set[int]] = {}
        self._minors: dict[str, dict[str, set[int]]] = {}

    def allocate(
        self,
        owner: str,
        instances: Iterable[Instance],
        port_range: tuple[int, int],
        nodes: Iterable[str],
        port: int | None = None,
    ) -> tuple[int, dict[str, int]]:
        """A port (``port`` when the disk keeps its own) and the lowest free minor per node."""
        with self._lock:
            ports, minors = used_resources(instances)
            for held in self._ports.values():
                ports |= held
            for held_minors in self._minors.values():
                for node, values in held_minors.items():
                    minors.setdefault(node, set()).update(values)
            if port is None:
                port = lowest_free(ports, port_range[0], port_range[1], "port")
                self._ports.setdefault(owner, set()).add(port)
            chosen = {}
            for node in nodes:
                chosen[node] = lowest_free(minors.get(node, set()), 0, 1048575, f"minor on {node}")
                self._minors.setdefault(owner, {}).setdefault(node, set()).add(chosen[node])
            return port, chosen

    def keep(self, owner: str, port: int, minors: dict[str, int]) -> None:
        """Hold resources outside the config: a DRBD resource left on a node."""
        with self._lock:
            self._ports.setdefault(owner, set()).add(port)
            for node, minor in minors.items():
                self._minors.setdefault(owner, {}).setdefault(node, set()).add(minor)

    def release(self, owner: str) -> None:
        with self._lock:
            self._ports.pop(owner, None)
            self._minors.pop(owner, None)

    def held(self, owner: str) -> tuple[set[int], dict[str, set[int]]]:
        with self._lock:
            return set(self._ports.get(owner, ())), {
                n: set(m) for n, m in self._minors.get(owner, {}).items()
            }


RESERVATIONS = Reservations()


@contextmanager
def reserved(owner: str, table: Reservations = RESERVATIONS) -> Iterator[Reservations]:
    """Hold what ``owner`` allocates until the block ends (by then it is in the config)."""
    try:
        yield table
    finally:
        table.release(owner)


def volume_group(c: Cluster, g: NodeGroup) -> str:
    """The drbd diskparam ``vg_name``, else the plain one, group over cluster, else "herd"."""
    for template in (TEMPLATE, "plain"):
        filled = fill_params(c.diskparams.get(template), g.diskparams.get(template), None)
        if filled.get("vg_name"):
            return str(filled["vg_name"])
    return DEFAULT_VG


def replication_ip(node: Node) -> str:
    return node.secondary_ip or node.primary_ip


def plain_location(index: int, disk: Disk) -> tuple[str, str]:
    """Volume group and LV of a ``plain`` disk, as the node's plain backend finds them."""
    params = disk.params
    vg = params.get("vg", params.get("vg_name", DEFAULT_VG))
    return str(vg), str(params.get("lv", f"{disk.uuid}.disk{index}"))


def assign_params(
    ctx: OpContext,
    inst: Instance,
    primary: Node,
    secondary: Node,
    table: Reservations = RESERVATIONS,
    adopt_plain: bool = False,
) -> None:
    """Give every disk of a new instance its port, minors, secret and LV names.

    With ``adopt_plain`` the disks are still ``plain`` ones: their LV becomes the DRBD
    data LV, in its own volume group, so converting keeps the data where it is.
    """
    clusters = ctx.store.list("cluster")
    c = clusters[0]
    g = ctx.store.get("nodegroup", primary.group)
    tuning = fill_params(c.diskparams.get(TEMPLATE), g.diskparams.get(TEMPLATE), None)
    vg = volume_group(c, g)
    for index, disk in enumerate(inst.disks):
        disk_vg, data_lv = (
            plain_location(index, disk) if adopt_plain else (vg, f"{disk.uuid}.disk{index}_data")
        )
        port, minors = table.allocate(
            ctx.owner,
            ctx.store.list("instance"),
            c.drbd_port_range,
            [primary.name, secondary.name],
        )
        disk.params = {
            "port": port,
            "minors": minors,
            "secret": secrets.token_urlsafe(24),
            "nodes": [primary.name, secondary.name],
            "addresses": {
                primary.name: replication_ip(primary),
                secondary.name: replication_ip(secondary),
            },
            "vg": disk_vg,
            "data_lv": data_lv,
            "meta_lv": f"{disk.uuid}.disk{index}_meta",
            **{
                k: tuning[k]
                for k in ("protocol", "resync_rate", "net_options", "disk_options")
                if k in tuning
            },
        }


def check_unique(txn: Transaction, inst: Instance) -> None:
    """The last word on clashes, inside the write that records ``inst``'s disks."""
    others = [i for i in txn.list("instance") if i.uuid != inst.uuid]
    ports, minors = used_resources(others)
    mine_ports: set[int] = set()
    mine_minors: dict[str, set[int]] = {}
    for disk in inst.disks:
        if disk.template != TEMPLATE:
            continue
        port = disk.params["port"]
        if port in ports or port in mine_ports:
            raise ConflictError(f"DRBD port {port} is already in use", field="port", value=port)
        mine_ports.add(port)
        for node, minor in disk.params["minors"].items():
            taken = minors.get(node, set()) | mine_minors.get(node, set())
            if minor in taken:
                raise ConflictError(
                    f"DRBD minor {minor} is already in use on {node}", field="minor", value=minor
                )
            mine_minors.setdefault(node, set()).add(minor)


# -- driving the nodes -------------------------------------------------------------------


def peer_of(ctx: OpContext, inst: Instance, node: Node) -> Node:
    """The other node holding ``inst``'s disks."""
    for uuid in [inst.primary_node, *inst.secondary_nodes]:
        if uuid != node.uuid:
            return ctx.store.get("node", uuid)
    raise PrerequisiteError(f"instance {inst.name} has no second node", instance=inst.name)


def each_disk(
    ctx: OpContext,
    inst: Instance,
    node: Node,
    action: str,
    args: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    return [
        ctx.services.call(node, action, {"disk": disk_arg(inst, i, d), **(args or {})}, timeout)
        for i, d in enumerate(inst.disks)
    ]


def statuses(ctx: OpContext, inst: Instance, node: Node) -> list[dict[str, Any]]:
    return each_disk(ctx, inst, node, "drbd_status")


def wait_connected(ctx: OpContext, inst: Instance, node: Node, timeout: float) -> bool:
    """Poll until every disk on ``node`` sees its peer; False if that did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        ctx.check_cancel()
        if all(s["connected"] for s in statuses(ctx, inst, node)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def require_connected(ctx: OpContext, inst: Instance, node: Node) -> None:
    if not wait_connected(ctx, inst, node, CONNECT_TIMEOUT):
        states = ", ".join(s["cstate"] for s in statuses(ctx, inst, node))
        raise PrerequisiteError(
            f"DRBD disks of {inst.name} on {node.name} did not connect to their peer "
            f"({states}); if the peer is dead, mark its node offline or use the op's "
            "force/ignore option",
            instance=inst.name,
            node=node.name,
        )


def wait_sync(ctx: OpContext, inst: Instance, node: Node) -> None:
    """Poll until both copies of every disk are UpToDate, logging percent, rate and ETA."""
    for index, disk in enumerate(inst.disks):
        arg = {"disk": disk_arg(inst, index, disk)}
        best, since = -1.0, time.monotonic()
        while True:
            ctx.check_cancel()
            state = ctx.services.call(node, "drbd_wait_sync", arg)
            if state["done"]:
                break
            percent = state.get("sync_percent")
            if percent is not None and percent > best:
                best, since = percent, time.monotonic()
                rate, eta = state.get("sync_rate_kib"), state.get("sync_eta_s")
                ctx.progress(
                    f"disk {index} of {inst.name}: resync {percent:.1f}%"
                    + (f", {rate / 1024:.1f} MiB/s" if rate else "")
                    + (f", ETA {eta} s" if eta is not None else ""),
                    disk=index,
                    percent=percent,
                    rate_kib=rate,
                    eta_s=eta,
                )
            if time.monotonic() - since > SYNC_STALL_TIMEOUT:
                raise PrerequisiteError(
                    f"resync of disk {index} of {inst.name} made no progress for "
                    f"{SYNC_STALL_TIMEOUT:.0f} s (connection {state['cstate']}, disks "
                    f"{state['disk']}/{state['peer_disk']})",
                    instance=inst.name,
                )
            time.sleep(SYNC_POLL_SECONDS)
    ctx.log(f"disks of {inst.name} are in sync")


def promote(ctx: OpContext, inst: Instance, node: Node, force: bool = False) -> None:
    each_disk(ctx, inst, node, "drbd_primary", {"force": force})


def demote(ctx: OpContext, inst: Instance, node: Node) -> None:
    each_disk(ctx, inst, node, "drbd_secondary")


def undo_promote(ctx: OpContext, inst: Instance, node: Node) -> None:
    """Before a promotion: the step that demotes ``node`` again."""
    ctx.undo(
        f"demote {inst.name}'s disks on {node.name}",
        "drbd.demote",
        instance=instance_arg(inst),
        node=node_arg(node),
    )


@undo_handler("disk.remove")
def _remove_disk(ctx: OpContext, args: dict[str, Any]) -> None:
    """Remove a disk an op created, of any template.

    Never one the config places on that node: a master that died between an op's config
    commit and the end of its journal must not undo a finished op. A DRBD disk that
    cannot be removed (its node is unreachable) keeps its port and minor reserved for as
    long as this master runs, so no new disk is given what the orphan still holds.
    """
    node, disk = node_of(args), args["disk"]
    if config_has_disk(ctx, disk["instance_uuid"], disk["uuid"], node.uuid):
        ctx.log(f"kept disk {disk['index']} on {node.name}: the config uses it", "warning")
        return
    try:
        ctx.services.call(node, "disk_remove", {"disk": disk})
    except HerdError:
        params = disk["params"]
        if disk["template"] == TEMPLATE and "port" in params:
            minors = {n: m for n, m in params["minors"].items() if n == node.name}
            RESERVATIONS.keep(f"orphan:{disk['uuid']}", params["port"], minors)
        raise


@undo_handler("drbd.demote")
def _demote(ctx: OpContext, args: dict[str, Any]) -> None:
    demote(ctx, instance_of(args), node_of(args))


@undo_handler("drbd.release")
def _release(ctx: OpContext, args: dict[str, Any]) -> None:
    ctx.services.call(node_of(args), "drbd_release", {"disk": args["disk"]})


def create(
    ctx: OpContext,
    inst: Instance,
    primary: Node,
    secondary: Node,
    skip_sync: bool,
    adopt: bool = False,
) -> None:
    """LVs and resources on both nodes, connected, then either declared or made in sync.

    ``skip_sync`` is for brand-new disks that are about to be overwritten by an OS
    install: copying their old LV contents to the peer would only cost time. ``adopt``
    means the primary's data LVs exist and hold the data (a conversion from plain): they
    are the sync source, and an undo takes DRBD off them instead of removing them.
    """
    for node in (primary, secondary):
        for index, disk in enumerate(inst.disks):
            arg = disk_arg(inst, index, disk)
            if adopt and node is primary:
                ctx.undo(
                    f"take DRBD off disk {index} of {inst.name} on {node.name}, keeping its data",
                    "drbd.release",
                    node=node_arg(node),
                    disk=arg,
                )
                continue
            undo_disk_create(ctx, f"remove disk {index} of {inst.name} on {node.name}", node, arg)
    for index, disk in enumerate(inst.disks):
        answers = ctx.services.call_many(
            [primary, secondary], "disk_create", {"disk": disk_arg(inst, index, disk)}, 3600
        )
        for answer in answers.values():
            if answer.error is not None:
                raise answer.error
    require_connected(ctx, inst, primary)
    if skip_sync:
        each_disk(ctx, inst, primary, "drbd_skip_initial_sync")
        ctx.log(f"new disks of {inst.name}: initial sync skipped (empty, OS install follows)")
        return
    # Both copies start Inconsistent: forcing the primary up makes it the sync source.
    undo_promote(ctx, inst, primary)
    promote(ctx, inst, primary, force=True)
    wait_sync(ctx, inst, primary)
    demote(ctx, inst, primary)


def assemble(
    ctx: OpContext, inst: Instance, node: Node, force: bool = False
) -> dict[str, list[str]]:
    """Bring the disks up on both nodes and make ``node`` Primary; the /dev/drbdN paths
    per node name (only ``node``'s when the peer is left out).

    The peer is skipped when it is marked offline; with ``force`` also when it cannot be
    reached or does not connect, and the promotion is then forced.
    """
    paths = {node.name: [a["path"] for a in each_disk(ctx, inst, node, "disk_assemble")]}
    peer = peer_of(ctx, inst, node)
    isolated = peer.offline
    if not isolated:
        try:
            answers = each_disk(ctx, inst, peer, "disk_assemble")
            paths[peer.name] = [a["path"] for a in answers]
        except HerdError as exc:
            if not force:
                raise
            ctx.log(f"peer {peer.name} of {inst.name} unusable, going on alone: {exc}", "warning")
            isolated = True
    if not isolated:
        if force:
            isolated = not wait_connected(ctx, inst, node, CONNECT_TIMEOUT / 4)
        else:
            require_connected(ctx, inst, node)
    if isolated:
        ctx.log(f"disks of {inst.name} on {node.name} run without their peer", "warning")
    promote(ctx, inst, node, force=isolated)
    return paths


def shutdown(ctx: OpContext, inst: Instance, node: Node) -> bool:
    """Demote on ``node`` and take the resources down on every reachable node; True if
    anything was still up."""
    answers = each_disk(ctx, inst, node, "drbd_secondary")
    for holder in (node, peer_of(ctx, inst, node)):
        if not holder.offline:
            answers += each_disk(ctx, inst, holder, "disk_shutdown")
    return any(a["changed"] for a in answers)


def require_good_copy(ctx: OpContext, inst: Instance, source: Node) -> None:
    """The copy that survives must hold the data: never rebuild from a stale one."""
    each_disk(ctx, inst, source, "disk_assemble")
    for index, state in enumerate(statuses(ctx, inst, source)):
        if state["disk"] not in GOOD_COPY:
            raise PrerequisiteError(
                f"disk {index} of {inst.name} on {source.name} is {state['disk']}: it "
                "cannot be the source of a resync",
                node=source.name,
                disk=state["disk"],
            )


def set_dual_primary(ctx: OpContext, inst: Instance, nodes: list[Node], enabled: bool) -> None:
    for node in nodes:
        if not enabled:
            await_one_primary_seen(ctx, inst, node)
        each_disk(ctx, inst, node, "drbd_allow_dual_primary", {"enabled": enabled})


def await_one_primary_seen(ctx: OpContext, inst: Instance, node: Node) -> None:
    """Wait (bounded) until ``node`` no longer sees both sides Primary.

    DRBD refuses to forbid two primaries until then, and after its peer was demoted
    over a cut link it keeps its old view until its next ping notices the loss: a
    migration rolled back in that window would otherwise leave two primaries allowed.
    Past the bound the call goes ahead and fails with DRBD's own reason.
    """
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while time.monotonic() < deadline and any(
        s["role"] == "Primary" and s["peer_role"] == "Primary" for s in statuses(ctx, inst, node)
    ):
        time.sleep(SYNC_POLL_SECONDS)


@undo_handler("drbd.single_primary")
def _single_primary(ctx: OpContext, args: dict[str, Any]) -> None:
    set_dual_primary(ctx, instance_of(args), [Node.from_dict(n) for n in args["nodes"]], False)


def migration_prepare(ctx: OpContext, inst: Instance, source: Node, target: Node) -> list[str]:
    """Both copies in sync, two primaries allowed, the target promoted: its device paths.

    Each step registers its undo, so a migration that fails leaves the source as the
    only Primary with dual-primary off again.
    """
    paths = [a["path"] for a in each_disk(ctx, inst, target, "disk_assemble")]
    require_connected(ctx, inst, target)
    wait_sync(ctx, inst, source)
    nodes = [source, target]
    ctx.undo(
        f"forbid two primaries for {inst.name}",
        "drbd.single_primary",
        instance=instance_arg(inst),
        nodes=[node_arg(n) for n in nodes],
    )
    set_dual_primary(ctx, inst, nodes, True)
    undo_promote(ctx, inst, target)
    promote(ctx, inst, target)
    ctx.log(f"disks of {inst.name} are Primary on {source.name} and {target.name}")
    return paths


def migration_done(ctx: OpContext, inst: Instance, source: Node, target: Node) -> None:
    demote(ctx, inst, source)
    set_dual_primary(ctx, inst, [source, target], False)


def grow(ctx: OpContext, inst: Instance, index: int, new_size_mib: int) -> None:
    """Secondary first, primary last: DRBD's size is the smaller backing device, and the
    primary's resize (run while connected) is what makes the new size visible."""
    primary = ctx.store.get("node", inst.primary_node)
    secondary = peer_of(ctx, inst, primary)
    running = inst.admin_state == "up"
    if not running:
        for node in (primary, secondary):
            each_disk(ctx, inst, node, "disk_assemble")
    require_connected(ctx, inst, primary)
    disk = disk_arg(inst, index, inst.disks[index])
    for node in (secondary, primary):
        ctx.services.call(node, "disk_grow", {"disk": disk, "size_mib": new_size_mib}, 600)
    if not running:
        for node in (primary, secondary):
            each_disk(ctx, inst, node, "disk_shutdown")


# -- reporting ---------------------------------------------------------------------------


def verify(
    ctx: OpContext, inst: Instance, nodes: dict[str, Node]
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Live state of ``inst``'s DRBD disks per node and the problems found in it.

    Problems are ``(node, severity, message)``: split brain and StandAlone are errors
    (nothing replicates and a human must decide), a degraded or resyncing pair is a
    warning, and disks that are down while the instance should run are an error.
    """
    report: dict[str, Any] = {}
    problems: list[tuple[str, str, str]] = []
    for uuid in [inst.primary_node, *inst.secondary_nodes]:
        node = nodes[uuid]
        if node.offline:
            continue
        try:
            found = statuses(ctx, inst, node)
        except HerdError as exc:
            problems.append((node.name, "error", f"{inst.name}: no DRBD status: {exc}"))
            continue
        report[node.name] = found
        for index, state in enumerate(found):
            what = f"{inst.name} disk {index}"
            if state["split_brain"]:
                problems.append((node.name, "error", f"{what}: split brain (StandAlone)"))
            elif state["cstate"] == "StandAlone":
                problems.append((node.name, "error", f"{what}: StandAlone, not replicating"))
            elif not state["configured"]:
                if inst.admin_state == "up":
                    problems.append((node.name, "error", f"{what}: not active"))
            elif state["degraded"]:
                extra = (
                    f" {state['sync_percent']:.1f}%" if state["sync_percent"] is not None else ""
                )
                problems.append(
                    (
                        node.name,
                        "warning",
                        f"{what}: degraded ({state['cstate']}{extra}, disks "
                        f"{state['disk']}/{state['peer_disk']})",
                    )
                )
    return report, problems
