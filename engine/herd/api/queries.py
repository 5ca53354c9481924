"""Reads of the cluster's state: the stored objects, what nodes say right now, the dump.

None of these go through a job: a read must not wait behind a running op's locks.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from herd import __version__
from herd.api.context import ApiContext, Request, local_only
from herd.config.model import Instance, Node
from herd.config.store import Store, redact_dump
from herd.errors import HerdError, NotFoundError, ValidationError
from herd.ops.base import NodeServices
from herd.ops.instance_common import disk_arg

QUERY_KINDS = {"nodegroups": "nodegroup", "nodes": "node", "instances": "instance"}
#: Seconds a live query waits for one node answer: a dead node must not hang a read.
LIVE_TIMEOUT = 5.0
LIVE_WORKERS = 8
DRBD_FIELDS = (
    "role", "peer_role", "cstate", "disk", "peer_disk", "sync_percent", "degraded", "split_brain",
)  # fmt: skip


def live_state(services: NodeServices, inst: Instance, nodes: dict[str, Node]) -> dict[str, Any]:
    """What the nodes say right now about ``inst``: its run state and its DRBD disks.

    Read-only node actions called directly, not through a job: a query must not wait
    behind the instance's locks, and a state that is a few milliseconds old is all a
    reader can have anyway. A node that does not answer makes its part ``unknown`` and
    is named in ``live_errors`` rather than failing the whole query.
    """
    errors: list[str] = []
    primary = nodes[inst.primary_node]
    oper_state = "unknown"
    if primary.offline:
        errors.append(f"{primary.name}: node is offline")
    else:
        try:
            args = {"name": inst.name, "hypervisor": inst.hypervisor}
            found = services.call(primary, "instance_info", args, LIVE_TIMEOUT).get("instance")
            oper_state = "running" if found and found.get("state") == "running" else "stopped"
        except HerdError as exc:
            errors.append(f"{primary.name}: {exc}")
    out: dict[str, Any] = {"oper_state": oper_state}
    if inst.disk_template == "drbd":
        drbd: dict[str, list[dict[str, Any]]] = {}
        for node in (nodes[u] for u in [inst.primary_node, *inst.secondary_nodes]):
            if node.offline:
                continue
            try:
                answers = [
                    services.call(node, "drbd_status", {"disk": disk_arg(inst, i, d)}, LIVE_TIMEOUT)
                    for i, d in enumerate(inst.disks)
                ]
            except HerdError as exc:
                errors.append(f"{node.name}: {exc}")
                continue
            drbd[node.name] = [{k: a.get(k) for k in DRBD_FIELDS} for a in answers]
        out["drbd"] = drbd
    out["live_errors"] = errors
    return out


def _cluster_dict(store: Store) -> dict[str, Any] | None:
    clusters = store.list("cluster")
    return clusters[0].to_dict(redact=True) if clusters else None


def info(ctx: ApiContext, request: Request) -> dict[str, Any]:
    cluster = _cluster_dict(ctx.store)
    return {"version": __version__, "api": 1, "cluster": cluster["name"] if cluster else None}


def query_cluster(ctx: ApiContext, request: Request) -> dict[str, Any]:
    cluster = _cluster_dict(ctx.store)
    if cluster is None:
        raise NotFoundError("the cluster is not initialised yet")
    return cluster


def query_kind(ctx: ApiContext, request: Request, kind: str) -> dict[str, Any]:
    """Objects of one kind, secrets redacted.

    Each carries the names of what it points at (a node's group, an instance's nodes), so
    a reader needs no second query to show them; ``live=1`` adds what the nodes say now.
    """
    query = request.query
    wanted = [n for n in query.get("names", "").split(",") if n]
    groups = {g.uuid: g.name for g in ctx.store.list("nodegroup")}
    nodes = {n.uuid: n.name for n in ctx.store.list("node")}
    items = []
    for obj in ctx.store.list(QUERY_KINDS[kind]):
        if wanted and obj.name not in wanted:
            continue
        doc = obj.to_dict(redact=True)
        if isinstance(obj, Node):
            doc["group_name"] = groups.get(obj.group)
        elif isinstance(obj, Instance):
            doc["primary_node_name"] = nodes.get(obj.primary_node)
            doc["secondary_node_names"] = [nodes.get(u) for u in obj.secondary_nodes]
        items.append(doc)
    missing = sorted(set(wanted) - {i["name"] for i in items})
    if missing:
        raise NotFoundError(f"no such {QUERY_KINDS[kind]}: {', '.join(missing)}", names=missing)
    if query.get("live", "0") not in ("0", "1"):
        raise ValidationError("live", query["live"], "0 or 1")
    if query.get("live") == "1":
        if kind != "instances":
            raise ValidationError("live", query["live"], "0 for anything but instances")
        _add_live(ctx, items)
    return {"items": items}


def _add_live(ctx: ApiContext, items: list[dict[str, Any]]) -> None:
    """Ask about ``LIVE_WORKERS`` instances at once, so the timeouts of a dead node's
    instances overlap rather than add up."""
    services = ctx.services
    if services is None:
        raise HerdError("this API server has no node access for live queries")
    nodes = {n.uuid: n for n in ctx.store.list("node")}
    instances = [ctx.store.get("instance", i["uuid"]) for i in items]
    with ThreadPoolExecutor(max_workers=LIVE_WORKERS) as pool:
        states = pool.map(lambda inst: live_state(services, inst, nodes), instances)
        for doc, state in zip(items, states, strict=True):
            doc.update(state)


def dump(ctx: ApiContext, request: Request) -> dict[str, Any]:
    """The whole state, its secrets redacted unless root asks for them (``secrets=1``):
    only that full dump can be restored, and only root on the master may read it."""
    secrets = request.query.get("secrets", "0")
    if secrets not in ("0", "1"):
        raise ValidationError("secrets", secrets, "0 or 1")
    local_only(request.caller, "the whole-state dump is readable")
    return ctx.store.dump() if secrets == "1" else redact_dump(ctx.store.dump())


def lock_info(ctx: ApiContext, request: Request) -> dict[str, Any]:
    return {"items": ctx.locks.info()}
