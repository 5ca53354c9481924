"""API version 1: jobs in, state out. Nothing here changes the cluster except by a job."""

from __future__ import annotations

from typing import Any

from herd import __version__
from herd.api.server import Router
from herd.config.store import Store
from herd.errors import NotFoundError, ValidationError
from herd.jobs.job import STATUSES
from herd.jobs.queue import JobQueue
from herd.locking import LockManager
from herd.ops.base import registry

QUERY_KINDS = {"nodegroups": "nodegroup", "nodes": "node", "instances": "instance"}
MAX_WAIT = 60.0


def _int(query: dict[str, str], key: str, default: int | None, minimum: int = 0) -> int | None:
    if key not in query:
        return default
    try:
        value = int(query[key])
    except ValueError:
        raise ValidationError(key, query[key], f"an integer of at least {minimum}") from None
    if value < minimum:
        raise ValidationError(key, value, f"an integer of at least {minimum}")
    return value


def _float(query: dict[str, str], key: str, default: float, maximum: float) -> float:
    try:
        value = float(query.get(key, default))
    except ValueError:
        raise ValidationError(key, query[key], f"a number from 0 to {maximum:g}") from None
    if not 0 <= value <= maximum:
        raise ValidationError(key, value, f"a number from 0 to {maximum:g}")
    return value


def build_router(store: Store, queue: JobQueue, locks: LockManager) -> Router:
    """Wire every v1 endpoint; handlers are closures so the router stays a plain table."""
    r = Router()

    def cluster_dict() -> dict[str, Any] | None:
        clusters = store.list("cluster")
        return clusters[0].to_dict(redact=True) if clusters else None

    def info(query: dict[str, str], body: Any) -> dict[str, Any]:
        cluster = cluster_dict()
        return {"version": __version__, "api": 1, "cluster": cluster["name"] if cluster else None}

    def submit(query: dict[str, str], body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValidationError("body", body, "a job object {'ops': [...]} or {'jobs': [...]}")
        if "jobs" in body:
            if not isinstance(body["jobs"], list) or not body["jobs"] or len(body) != 1:
                raise ValidationError("jobs", body.get("jobs"), "a non-empty list of job objects")
            return {"job_ids": queue.submit_many(body["jobs"])}
        return {"job_id": queue.submit(body)}

    def job_id(raw: str) -> int:
        return int(raw)

    def list_jobs(query: dict[str, str], body: Any) -> dict[str, Any]:
        return {"items": queue.list(query.get("status"), _int(query, "limit", None, 1))}

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
            doc = obj.to_dict()
            if kind == "nodes":
                doc["group_name"] = groups.get(obj.group)
            elif kind == "instances":
                doc["primary_node_name"] = nodes.get(obj.primary_node)
                doc["secondary_node_names"] = [nodes.get(u) for u in obj.secondary_nodes]
            items.append(doc)
        missing = sorted(set(wanted) - {i["name"] for i in items})
        if missing:
            raise NotFoundError(f"no such {QUERY_KINDS[kind]}: {', '.join(missing)}", names=missing)
        return {"items": items}

    def dump(query: dict[str, str], body: Any) -> dict[str, Any]:
        return store.dump()

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

    r.add("GET", "/v1/info", info)
    r.add("POST", "/v1/jobs", submit, body=True)
    r.add("GET", "/v1/jobs", list_jobs, query=("status", "limit"))
    r.add("GET", r"/v1/jobs/(\d+)", get_job, query=("log_since",))
    r.add("GET", r"/v1/jobs/(\d+)/wait", wait_job, query=("log_since", "timeout", "status"))
    r.add("POST", r"/v1/jobs/(\d+)/cancel", cancel_job)
    r.add("GET", "/v1/query/cluster", query_cluster)
    r.add("GET", r"/v1/query/(nodegroups|nodes|instances)", query_kind, query=("names",))
    r.add("GET", "/v1/config", dump)
    r.add("GET", "/v1/queue", queue_info)
    r.add("PUT", "/v1/queue", queue_set, body=True)
    r.add("GET", "/v1/locks", lock_info)
    r.add("GET", "/v1/ops", ops_info)
    return r
