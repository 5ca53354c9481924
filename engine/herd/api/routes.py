"""API version 1: jobs in, state out. Nothing here changes the cluster except by a job.

The same table serves the root-only socket and HTTPS; what differs is decided per request
from the :class:`Caller`: remote callers cannot run local-only ops or set local-only
parameters (:mod:`herd.ops.exposure` says which), read the secret-bearing state dump, or
manage API credentials.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from herd import __version__
from herd.api import openapi
from herd.api.server import Caller, Router
from herd.auth import AuthStore
from herd.config.model import Instance, Node
from herd.config.store import Store, redact_dump
from herd.errors import ForbiddenError, HerdError, NotFoundError, ValidationError
from herd.jobs.job import STATUSES
from herd.jobs.queue import JobQueue
from herd.locking import LockManager
from herd.ops import exposure
from herd.ops.base import NodeServices, registry
from herd.ops.instance_common import disk_arg
from herd.ops.params import INT_MAX

QUERY_KINDS = {"nodegroups": "nodegroup", "nodes": "node", "instances": "instance"}
MAX_WAIT = 60.0
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


def _int(query: dict[str, str], key: str, default: int | None, minimum: int = 0) -> int | None:
    return default if key not in query else _parse_int(key, query[key], minimum)


def _parse_int(key: str, raw: str, minimum: int = 0) -> int:
    """An integer the job store can look up: SQLite's INTEGER ends at 2**63-1."""
    allowed = f"an integer from {minimum} to {INT_MAX}"
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(key, raw, allowed) from None
    if not minimum <= value <= INT_MAX:
        raise ValidationError(key, value, allowed)
    return value


def _float(query: dict[str, str], key: str, default: float, maximum: float) -> float:
    try:
        value = float(query.get(key, default))
    except ValueError:
        raise ValidationError(key, query[key], f"a number from 0 to {maximum:g}") from None
    if not 0 <= value <= maximum:
        raise ValidationError(key, value, f"a number from 0 to {maximum:g}")
    return value


def _remote_job(spec: Any, caller: Caller, now: float) -> Any:
    """Add who sent a remotely submitted job to its reason trail, which also marks its
    origin: the runner holds jobs it spawns to the same rules (``herd.ops.exposure``)."""
    if not isinstance(spec, dict):
        return spec
    assert caller.principal is not None
    reason = spec.get("reason", [])
    entry = [exposure.REMOTE_SOURCE, f"{caller.principal.describe()} from {caller.address}", now]
    return {**spec, "reason": [*reason, entry] if isinstance(reason, list) else reason}


def _local_only(caller: Caller, what: str) -> None:
    if caller.remote:
        raise ForbiddenError(f"{what} only as root on the master, over the local socket")


def build_router(
    store: Store,
    queue: JobQueue,
    locks: LockManager,
    auth: AuthStore,
    services: NodeServices | None = None,
) -> Router:
    """Wire every v1 endpoint; handlers are closures so the router stays a plain table.

    ``services`` (the master's node RPC) is only needed for live instance queries.
    """
    r = Router()

    def cluster_dict() -> dict[str, Any] | None:
        clusters = store.list("cluster")
        return clusters[0].to_dict(redact=True) if clusters else None

    def info(query: dict[str, str], body: Any) -> dict[str, Any]:
        cluster = cluster_dict()
        return {"version": __version__, "api": 1, "cluster": cluster["name"] if cluster else None}

    def submit(query: dict[str, str], body: Any, caller: Caller) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValidationError("body", body, "a job object {'ops': [...]} or {'jobs': [...]}")
        now = time.time()
        if "jobs" in body:
            if not isinstance(body["jobs"], list) or not body["jobs"] or len(body) != 1:
                raise ValidationError("jobs", body.get("jobs"), "a non-empty list of job objects")
            specs = body["jobs"]
            if caller.remote:
                exposure.refuse_remote_jobs(specs, "jobs")
                specs = [_remote_job(s, caller, now) for s in specs]
            return {"job_ids": queue.submit_many(specs)}
        if caller.remote:
            exposure.refuse_remote_jobs([body])
            body = _remote_job(body, caller, now)
        return {"job_id": queue.submit(body)}

    def job_id(raw: str) -> int:
        return _parse_int("job_id", raw)

    def list_jobs(query: dict[str, str], body: Any) -> dict[str, Any]:
        limit = _int(query, "limit", None, 1)
        return {"items": queue.list(query.get("status"), limit, query.get("op"), query.get("name"))}

    def get_job(raw: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        return queue.view(job_id(raw), _int(query, "log_since", 0))

    def wait_job(raw: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        known = query.get("status")
        if known is not None and known not in STATUSES:
            raise ValidationError("status", known, "one of " + ", ".join(STATUSES))
        return queue.wait(
            job_id(raw),
            _int(query, "log_since", 0) or 0,
            _float(query, "timeout", 10.0, MAX_WAIT),
            known,
        )

    def cancel_job(raw: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        return queue.cancel(job_id(raw))

    def query_cluster(query: dict[str, str], body: Any) -> dict[str, Any]:
        cluster = cluster_dict()
        if cluster is None:
            raise NotFoundError("the cluster is not initialised yet")
        return cluster

    def query_kind(kind: str, query: dict[str, str], body: Any) -> dict[str, Any]:
        wanted = [n for n in query.get("names", "").split(",") if n]
        groups = {g.uuid: g.name for g in store.list("nodegroup")}
        nodes = {n.uuid: n.name for n in store.list("node")}
        items = []
        for obj in store.list(QUERY_KINDS[kind]):
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
            add_live(items)
        return {"items": items}

    def add_live(items: list[dict[str, Any]]) -> None:
        if services is None:
            raise HerdError("this API server has no node access for live queries")
        nodes = {n.uuid: n for n in store.list("node")}
        instances = [store.get("instance", i["uuid"]) for i in items]
        with ThreadPoolExecutor(max_workers=LIVE_WORKERS) as pool:
            states = pool.map(lambda inst: live_state(services, inst, nodes), instances)
            for doc, state in zip(items, states, strict=True):
                doc.update(state)

    def dump(query: dict[str, str], body: Any, caller: Caller) -> dict[str, Any]:
        """The whole state, its secrets redacted unless root asks for them (``secrets=1``):
        only that full dump can be restored, and only root on the master may read it."""
        secrets = query.get("secrets", "0")
        if secrets not in ("0", "1"):
            raise ValidationError("secrets", secrets, "0 or 1")
        _local_only(caller, "the whole-state dump is readable")
        return store.dump() if secrets == "1" else redact_dump(store.dump())

    def queue_info(query: dict[str, str], body: Any) -> dict[str, Any]:
        return {"max_running": queue.max_running, "counts": queue.counts()}

    def queue_set(query: dict[str, str], body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) != {"max_running"}:
            raise ValidationError("body", body, "{'max_running': N}")
        queue.set_max_running(body["max_running"])
        return queue_info(query, body)

    def lock_info(query: dict[str, str], body: Any) -> dict[str, Any]:
        return {"items": locks.info()}

    def ops_info(query: dict[str, str], body: Any) -> dict[str, Any]:
        return {
            "items": [
                {
                    "op": name,
                    "summary": cls.SUMMARY,
                    "params": [
                        {
                            "name": p.name,
                            "type": p.type.__name__,
                            "required": p.required,
                            "allowed": p.describe_allowed(),
                            "doc": p.doc,
                        }
                        for p in cls.PARAMS
                    ],
                }
                for name, cls in sorted(registry().items())
            ]
        }

    def openapi_doc(query: dict[str, str], body: Any) -> dict[str, Any]:
        """This API as an OpenAPI 3.1 document, generated from the route table and the ops."""
        return openapi.document(r.routes, registry(), __version__)

    def list_credentials(kind: str, query: dict[str, str], body: Any, caller: Caller) -> Any:
        _local_only(caller, "API credentials are managed")
        return {"items": auth.list(kind)}

    def create_credential(kind: str, query: dict[str, str], body: Any, caller: Caller) -> Any:
        _local_only(caller, "API credentials are managed")
        fields = {"name", "read_only", *(("password",) if kind == "users" else ())}
        if not isinstance(body, dict) or not {"name"} <= set(body) <= fields:
            raise ValidationError("body", "<hidden>", "an object with " + ", ".join(sorted(fields)))
        read_only = body.get("read_only", False)
        if not isinstance(read_only, bool):
            raise ValidationError("read_only", read_only, "true or false")
        out = {"name": body["name"], "read_only": read_only}
        if kind == "tokens":
            return out | {"token": auth.create_token(body["name"], read_only)}
        # A missing password is refused by add_user, as an empty one is.
        auth.add_user(body["name"], body.get("password", ""), read_only)
        return out

    def remove_credential(
        kind: str, name: str, query: dict[str, str], body: Any, caller: Caller
    ) -> dict[str, Any]:
        _local_only(caller, "API credentials are managed")
        auth.remove(kind, name)
        return {"name": name, "removed": True}

    r.add("GET", "/v1/info", info)
    r.add("POST", "/v1/jobs", submit, body=True, caller=True)
    r.add("GET", "/v1/jobs", list_jobs, query=("status", "limit", "op", "name"))
    r.add("GET", r"/v1/jobs/(\d+)", get_job, query=("log_since",))
    r.add("GET", r"/v1/jobs/(\d+)/wait", wait_job, query=("log_since", "timeout", "status"))
    r.add("POST", r"/v1/jobs/(\d+)/cancel", cancel_job)
    r.add("GET", "/v1/query/cluster", query_cluster)
    r.add("GET", r"/v1/query/(nodegroups|nodes|instances)", query_kind, query=("names", "live"))
    r.add("GET", "/v1/config", dump, query=("secrets",), caller=True)
    r.add("GET", "/v1/queue", queue_info)
    r.add("PUT", "/v1/queue", queue_set, body=True)
    r.add("GET", "/v1/locks", lock_info)
    r.add("GET", "/v1/ops", ops_info)
    r.add("GET", "/v1/openapi.json", openapi_doc)
    r.add("GET", "/v1/auth/(tokens|users)", list_credentials, caller=True)
    r.add("POST", "/v1/auth/(tokens|users)", create_credential, body=True, caller=True)
    r.add("DELETE", "/v1/auth/(tokens|users)/([^/]+)", remove_credential, caller=True)
    return r
