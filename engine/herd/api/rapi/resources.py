"""RAPI v2's route table and handlers: Ganeti's resources over Herd's store and queue.

Reads come from the same store ``/v1`` reads; every write is one Herd op submitted
through :func:`herd.api.job_handlers.submit`, so a RAPI caller is held to exactly the
rules (exposure, reason trail) of a ``/v1`` caller. What Herd cannot do as asked is
refused with the parameter named, never ignored.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from herd import __version__
from herd.api.context import ApiContext, Request
from herd.api.job_handlers import _parse_int, submit
from herd.api.queries import LIVE_TIMEOUT, LIVE_WORKERS, live_state
from herd.api.rapi import jobs, shapes
from herd.api.server import LOCAL, Caller, Handler, Router
from herd.config.model import Cluster, Instance, Node
from herd.errors import ConflictError, HerdError, NotFoundError, ValidationError
from herd.jobs.status import FINAL

RAPI_VERSION = 2
#: What Ganeti's clients match to tell "no such resource" from other 404s.
NOT_FOUND = "Nothing matches the given URI"
#: Ganeti's job wait returns after this long without a change (its client loops).
WAIT_TIMEOUT = 10.0
#: Optional request formats this server speaks; Ganeti's client probes them. None yet:
#: instance creation, reinstall and node evacuation are not served in this version.
FEATURES: list[str] = []
NAME = "([^/]+)"
RapiHandler = Callable[..., Any]


def _flag(query: dict[str, str], key: str) -> bool:
    """A boolean query parameter as Ganeti's client sends one (``1``, ``True`` …)."""
    raw = query.get(key, "0")
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no", ""):
        return False
    raise ValidationError(key, raw, "0 or 1")


def _refuse_flags(query: dict[str, str], op: str, *keys: str) -> None:
    """Ganeti options Herd's ``op`` has no equivalent for: refused when set, so "not
    supported" never looks like "done"."""
    for key in keys:
        if _flag(query, key):
            raise ValidationError(key, query[key], f"0: Herd's {op} has no {key} option")


def _cluster(ctx: ApiContext) -> Cluster | None:
    clusters = ctx.store.list("cluster")
    return clusters[0] if clusters else None


def _find(ctx: ApiContext, kind: str, name: str) -> Any:
    obj = ctx.store.find(kind, name)
    if obj is None:
        raise NotFoundError(f"{kind} '{name}' not known", name=name)
    return obj


def _listing(items: list[str], resource: str, key: str) -> list[dict[str, str]]:
    """The non-bulk answer: each object's name and where to read it."""
    return [{key: name, "uri": f"/{RAPI_VERSION}/{resource}/{name}"} for name in sorted(items)]


# ---- cluster ---------------------------------------------------------------------------


def root(ctx: ApiContext, request: Request) -> None:
    """Ganeti answers the root resource with nothing; clients use it as a ping."""


def version(ctx: ApiContext, request: Request) -> int:
    return RAPI_VERSION


def info(ctx: ApiContext, request: Request) -> dict[str, Any]:
    return shapes.cluster_info(_cluster(ctx), __version__)


def features(ctx: ApiContext, request: Request) -> list[str]:
    return FEATURES


def operating_systems(ctx: ApiContext, request: Request) -> list[str]:
    """The OSes valid on every online VM-capable node, a variant as ``NAME+VARIANT``.

    A node that cannot be asked fails the request, naming it: a list from only some
    nodes would offer an OS that another node cannot install.
    """
    services = ctx.services
    if services is None:
        raise HerdError("this API server has no node access to list operating systems")
    nodes = [n for n in ctx.store.list("node") if not n.offline and n.vm_capable]
    with ThreadPoolExecutor(max_workers=LIVE_WORKERS) as pool:
        listed = list(pool.map(lambda n: services.call(n, "os_list", None, LIVE_TIMEOUT), nodes))
    common: set[str] | None = None
    for answer in listed:
        names = {full for d in answer["os"] if d["valid"] for full in _os_names(d)}
        common = names if common is None else common & names
    return sorted(common or ())


def _os_names(definition: dict[str, Any]) -> list[str]:
    variants = definition["variants"]
    return [f"{definition['name']}+{v}" for v in variants] if variants else [definition["name"]]


# ---- instances, nodes, groups ----------------------------------------------------------


def _oper_state(ctx: ApiContext, inst: Instance, nodes: dict[str, Node]) -> bool | None:
    """Whether ``inst`` runs, as its primary says now; ``None`` when it cannot say."""
    primary = nodes.get(inst.primary_node)
    if ctx.services is None or primary is None or primary.offline:
        return None
    state = live_state(ctx.services, inst, nodes)["oper_state"]
    return None if state == "unknown" else state == "running"


def _instances(ctx: ApiContext, found: Sequence[Instance]) -> list[dict[str, Any]]:
    """Instances in Ganeti's shape, their primaries asked ``LIVE_WORKERS`` at a time so
    the timeouts of a dead node's instances overlap rather than add up."""
    node_list: list[Node] = ctx.store.list("node")
    nodes = {n.uuid: n for n in node_list}
    names = shapes.Names.of(node_list, ctx.store.list("nodegroup"))
    cluster = _cluster(ctx)
    with ThreadPoolExecutor(max_workers=LIVE_WORKERS) as pool:
        states = list(pool.map(lambda inst: _oper_state(ctx, inst, nodes), found))
    return [
        shapes.instance_shape(inst, cluster, names, oper, nodes.get(inst.primary_node))
        for inst, oper in zip(found, states, strict=True)
    ]


def instances(ctx: ApiContext, request: Request) -> list[dict[str, Any]]:
    found: list[Instance] = ctx.store.list("instance")
    if not _flag(request.query, "bulk"):
        return _listing([i.name for i in found], "instances", "id")
    return _instances(ctx, sorted(found, key=lambda i: i.name))


def instance(ctx: ApiContext, request: Request, name: str) -> dict[str, Any]:
    return _instances(ctx, [_find(ctx, "instance", name)])[0]


def nodes(ctx: ApiContext, request: Request) -> list[dict[str, Any]]:
    found: list[Node] = ctx.store.list("node")
    if not _flag(request.query, "bulk"):
        return _listing([n.name for n in found], "nodes", "id")
    return _nodes(ctx, sorted(found, key=lambda n: n.name))


def _nodes(ctx: ApiContext, found: Sequence[Node]) -> list[dict[str, Any]]:
    cluster, placed = _cluster(ctx), ctx.store.list("instance")
    names = shapes.Names.of(ctx.store.list("node"), ctx.store.list("nodegroup"))
    return [shapes.node_shape(n, cluster, names, placed) for n in found]


def node(ctx: ApiContext, request: Request, name: str) -> dict[str, Any]:
    return _nodes(ctx, [_find(ctx, "node", name)])[0]


def groups(ctx: ApiContext, request: Request) -> list[dict[str, Any]]:
    found = ctx.store.list("nodegroup")
    if not _flag(request.query, "bulk"):
        return _listing([g.name for g in found], "groups", "name")
    members = ctx.store.list("node")
    cluster = _cluster(ctx)
    return [shapes.group_shape(g, cluster, members) for g in sorted(found, key=lambda g: g.name)]


def group(ctx: ApiContext, request: Request, name: str) -> dict[str, Any]:
    return shapes.group_shape(_find(ctx, "nodegroup", name), _cluster(ctx), ctx.store.list("node"))


# ---- instance writes: each one Herd op, answered with the bare job id --------------------


def _submit(ctx: ApiContext, request: Request, op: str, params: dict[str, Any]) -> int:
    """Queue ``op`` as ``/v1`` would, with Ganeti's ``reason`` in the trail."""
    spec: dict[str, Any] = {"ops": [{"op": op, **params}]}
    if request.query.get("reason"):
        spec["reason"] = [["rapi:reason", request.query["reason"]]]
    answer = submit(ctx, Request({}, spec, request.caller))
    return int(answer["job_id"])


def _body(request: Request, allowed: dict[str, str]) -> dict[str, Any]:
    """The request body's keys renamed to the op's parameters; any other key refused."""
    body = request.body if request.body is not None else {}
    if not isinstance(body, dict):
        raise ValidationError("body", body, "a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        keys = ", ".join(sorted(allowed)) or "none"
        raise ValidationError("body", unknown, f"body keys {keys}")
    return {allowed[k]: v for k, v in body.items()}


def startup(ctx: ApiContext, request: Request, name: str) -> int:
    _refuse_flags(request.query, "instance.start", "dry-run", "no_remember", "force")
    _body(request, {})
    return _submit(ctx, request, "instance.start", {"name": name})


def shutdown(ctx: ApiContext, request: Request, name: str) -> int:
    _refuse_flags(request.query, "instance.stop", "dry-run", "no_remember")
    params = _body(request, {"timeout": "shutdown_timeout"})
    return _submit(ctx, request, "instance.stop", {"name": name, **params})


def reboot(ctx: ApiContext, request: Request, name: str) -> int:
    _refuse_flags(request.query, "instance.reboot", "dry-run", "ignore_secondaries")
    # Ganeti's default: its client sends ``type`` only when the caller names one.
    kind = request.query.get("type", "hard")
    if kind not in ("soft", "hard"):
        raise ValidationError("type", kind, "soft or hard (Herd has no 'full' reboot)")
    _body(request, {})
    return _submit(ctx, request, "instance.reboot", {"name": name, "type": kind})


def remove(ctx: ApiContext, request: Request, name: str) -> int:
    _refuse_flags(request.query, "instance.remove", "dry-run")
    params = _body(
        request, {"shutdown_timeout": "shutdown_timeout", "ignore_failures": "ignore_failures"}
    )
    return _submit(ctx, request, "instance.remove", {"name": name, **params})


# ---- jobs -----------------------------------------------------------------------------


def job_list(ctx: ApiContext, request: Request) -> list[dict[str, Any]]:
    ids = [j["id"] for j in ctx.queue.list()]
    if not _flag(request.query, "bulk"):
        return [{"id": i, "uri": f"/{RAPI_VERSION}/jobs/{i}"} for i in ids]
    return [jobs.job_shape(ctx.queue.view(i, None), jobs.BULK_FIELDS) for i in ids]


def job(ctx: ApiContext, request: Request, raw: str) -> dict[str, Any]:
    return jobs.job_shape(ctx.queue.view(_parse_int("job_id", raw)), jobs.DETAIL_FIELDS)


def job_cancel(ctx: ApiContext, request: Request, raw: str) -> list[Any]:
    """Ganeti's ``(success, message)``: a job past cancelling is a false, not an error."""
    _refuse_flags(request.query, "job cancel", "dry-run")
    job_id = _parse_int("job_id", raw)
    try:
        answer = ctx.queue.cancel(job_id)
    except ConflictError as exc:
        return [False, exc.message]
    return [True, f"job {job_id} is {answer['status']}"]


def job_wait(ctx: ApiContext, request: Request, raw: str) -> dict[str, Any] | None:
    """Ganeti's long poll: answer once any of ``fields`` differs from
    ``previous_job_info``, a log entry newer than ``previous_log_serial`` exists or the
    job is final; ``None`` (Ganeti's "no change") after :data:`WAIT_TIMEOUT`."""
    body = request.body if isinstance(request.body, dict) else {}
    fields = jobs.wait_fields(body.get("fields"))
    previous = body.get("previous_job_info")
    since = body.get("previous_log_serial") or 0
    if not isinstance(since, int) or isinstance(since, bool) or since < 0:
        raise ValidationError("previous_log_serial", since, "a log serial, 0 or more")
    job_id = _parse_int("job_id", raw)
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        view = ctx.queue.view(job_id, since)
        shaped = jobs.job_shape(view, fields)
        current = [shaped[f] for f in fields]
        if view["log"] or current != previous or view["status"] in FINAL:
            return {"job_info": current, "log_entries": [jobs.log_entry(x) for x in view["log"]]}
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ctx.queue.wait(job_id, since, left, view["status"])


# ---- the table --------------------------------------------------------------------------

ROUTES: tuple[tuple[str, str, RapiHandler, tuple[str, ...], bool], ...] = (
    ("GET", "/", root, (), False),
    ("GET", "/version", version, (), False),
    ("GET", "/2/info", info, (), False),
    ("GET", "/2/features", features, (), False),
    ("GET", "/2/os", operating_systems, (), False),
    ("GET", "/2/instances", instances, ("bulk",), False),
    ("GET", f"/2/instances/{NAME}", instance, (), False),
    ("DELETE", f"/2/instances/{NAME}", remove, ("dry-run",), True),
    ("PUT", f"/2/instances/{NAME}/startup", startup, ("dry-run", "no_remember", "force"), True),
    ("PUT", f"/2/instances/{NAME}/shutdown", shutdown, ("dry-run", "no_remember"), True),
    (
        "POST",
        f"/2/instances/{NAME}/reboot",
        reboot,
        ("dry-run", "type", "ignore_secondaries"),
        True,
    ),
    ("GET", "/2/nodes", nodes, ("bulk",), False),
    ("GET", f"/2/nodes/{NAME}", node, (), False),
    ("GET", "/2/groups", groups, ("bulk",), False),
    ("GET", f"/2/groups/{NAME}", group, (), False),
    ("GET", "/2/jobs", job_list, ("bulk",), False),
    ("GET", r"/2/jobs/(\d+)", job, (), False),
    ("DELETE", r"/2/jobs/(\d+)", job_cancel, ("dry-run",), False),
    ("GET", r"/2/jobs/(\d+)/wait", job_wait, (), True),
)
"""(method, path, handler, query parameters besides ``reason`` (which every resource
takes, as Ganeti's do), whether it takes a body). Ganeti's client sends a body on a job
wait (a GET) and ``{}`` on instance writes, DELETE included; writes check its keys."""


class RapiRouter(Router):
    """A router whose unknown paths get Ganeti's 404 wording, which clients match."""

    def dispatch(
        self, method: str, path: str, query: dict[str, str], body: Any, caller: Caller = LOCAL
    ) -> Any:
        try:
            return super().dispatch(method, path, query, body, caller)
        except NotFoundError as exc:
            if exc.details.get("path") == path:
                raise NotFoundError(NOT_FOUND, path=path) from None
            raise


def _bind(ctx: ApiContext, fn: RapiHandler) -> Handler:
    def handle(*groups: str, query: dict[str, str], body: Any, caller: Caller) -> Any:
        return fn(ctx, Request(query, body, caller), *groups)

    return functools.update_wrapper(handle, fn)


def rapi_router(ctx: ApiContext) -> Router:
    """The RAPI v2 table served against the same parts as ``/v1``."""
    router = RapiRouter()
    for method, pattern, fn, query, body in ROUTES:
        router.add(method, pattern, _bind(ctx, fn), (*query, "reason"), body=body, caller=True)
    return router
