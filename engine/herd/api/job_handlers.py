"""Jobs in and their state out: submit, list, view, long-poll, cancel; the queue's limit.

This is the only way the API changes the cluster: every change is an op in a job.
"""

from __future__ import annotations

import time
from typing import Any

from herd.api.context import ApiContext, Request
from herd.api.server import Caller
from herd.errors import ValidationError
from herd.jobs.job import STATUSES
from herd.ops import exposure
from herd.ops.params import INT_MAX

#: The longest long-poll a caller may ask for, in seconds.
MAX_WAIT = 60.0


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


def submit(ctx: ApiContext, request: Request) -> dict[str, Any]:
    """Queue one job, or several that may depend on each other.

    A remote caller's jobs are refused whole if any op or field in them is local-only,
    and each carries the caller in its reason trail.
    """
    body, caller = request.body, request.caller
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
        return {"job_ids": ctx.queue.submit_many(specs)}
    if caller.remote:
        exposure.refuse_remote_jobs([body])
        body = _remote_job(body, caller, now)
    return {"job_id": ctx.queue.submit(body)}


def list_jobs(ctx: ApiContext, request: Request) -> dict[str, Any]:
    query = request.query
    limit = _int(query, "limit", None, 1)
    return {"items": ctx.queue.list(query.get("status"), limit, query.get("op"), query.get("name"))}


def get_job(ctx: ApiContext, request: Request, raw: str) -> dict[str, Any]:
    return ctx.queue.view(_parse_int("job_id", raw), _int(request.query, "log_since", 0))


def wait_job(ctx: ApiContext, request: Request, raw: str) -> dict[str, Any]:
    """Long-poll one job until it changes.

    ``status`` is the one the caller last saw, so a change it missed answers at once
    rather than after the timeout.
    """
    query = request.query
    known = query.get("status")
    if known is not None and known not in STATUSES:
        raise ValidationError("status", known, "one of " + ", ".join(STATUSES))
    return ctx.queue.wait(
        _parse_int("job_id", raw),
        _int(query, "log_since", 0) or 0,
        _float(query, "timeout", 10.0, MAX_WAIT),
        known,
    )


def cancel_job(ctx: ApiContext, request: Request, raw: str) -> dict[str, Any]:
    return ctx.queue.cancel(_parse_int("job_id", raw))


def queue_info(ctx: ApiContext, request: Request) -> dict[str, Any]:
    return {"max_running": ctx.queue.max_running, "counts": ctx.queue.counts()}


def queue_set(ctx: ApiContext, request: Request) -> dict[str, Any]:
    """Set how many jobs run at once.

    Answers like ``GET /v1/queue``, so the caller sees the new limit beside the counts
    it applies to.
    """
    body = request.body
    if not isinstance(body, dict) or set(body) != {"max_running"}:
        raise ValidationError("body", body, "{'max_running': N}")
    ctx.queue.set_max_running(body["max_running"])
    return queue_info(ctx, request)
