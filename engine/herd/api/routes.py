"""API version 1: the route table. Nothing here changes the cluster except by a job.

The same table serves the root-only socket and HTTPS; what differs is decided per request
from the :class:`Caller`: remote callers cannot run local-only ops or set local-only
parameters (:mod:`herd.ops.exposure` says which), read the secret-bearing state dump, or
manage API credentials. The handlers live by subject (:mod:`herd.api.job_handlers`,
:mod:`herd.api.queries`, :mod:`herd.api.credentials`); this module only says which
request reaches which of them, in what shape, and who may send it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from herd import __version__
from herd.api import openapi
from herd.api.context import ApiContext, Request, local_only
from herd.api.credentials import create_credential, list_credentials, remove_credential
from herd.api.job_handlers import (
    cancel_job,
    get_job,
    list_jobs,
    queue_info,
    queue_set,
    submit,
    wait_job,
)
from herd.api.queries import dump, info, lock_info, query_cluster, query_kind
from herd.api.server import Caller, Handler, Router
from herd.auth import AuthStore
from herd.config.store import Store
from herd.jobs.queue import JobQueue
from herd.locking import LockManager
from herd.ops.base import NodeServices, registry


@dataclass(frozen=True)
class Endpoint:
    """One row of the table. ``handler`` takes ``(ctx, request, *path_groups)``.

    ``local_only`` names what a remote caller is refused, before the handler runs. Two
    handlers read ``request.caller`` themselves: job submission, which checks and marks a
    remote caller's jobs, and the dump, which refuses a malformed ``secrets`` before it
    refuses a remote caller.
    """

    method: str
    pattern: str
    handler: Handler
    query: tuple[str, ...] = ()
    body: bool = False
    local_only: str | None = None


def ops_info(ctx: ApiContext, request: Request) -> dict[str, Any]:
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


def openapi_doc(ctx: ApiContext, request: Request) -> dict[str, Any]:
    """This API as an OpenAPI 3.1 document, generated from the route table and the ops."""
    return openapi.document(router_for(ctx).routes, registry(), __version__)


#: What a remote caller is refused on the credential endpoints, as its 403 words it.
CREDENTIALS = "API credentials are managed"
ENDPOINTS = (
    Endpoint("GET", "/v1/info", info),
    Endpoint("POST", "/v1/jobs", submit, body=True),
    Endpoint("GET", "/v1/jobs", list_jobs, ("status", "limit", "op", "name")),
    Endpoint("GET", r"/v1/jobs/(\d+)", get_job, ("log_since",)),
    Endpoint("GET", r"/v1/jobs/(\d+)/wait", wait_job, ("log_since", "timeout", "status")),
    Endpoint("POST", r"/v1/jobs/(\d+)/cancel", cancel_job),
    Endpoint("GET", "/v1/query/cluster", query_cluster),
    Endpoint("GET", r"/v1/query/(nodegroups|nodes|instances)", query_kind, ("names", "live")),
    Endpoint("GET", "/v1/config", dump, ("secrets",)),
    Endpoint("GET", "/v1/queue", queue_info),
    Endpoint("PUT", "/v1/queue", queue_set, body=True),
    Endpoint("GET", "/v1/locks", lock_info),
    Endpoint("GET", "/v1/ops", ops_info),
    Endpoint("GET", "/v1/openapi.json", openapi_doc),
    Endpoint("GET", "/v1/auth/(tokens|users)", list_credentials, local_only=CREDENTIALS),
    Endpoint(
        "POST", "/v1/auth/(tokens|users)", create_credential, body=True, local_only=CREDENTIALS
    ),
    Endpoint(
        "DELETE", "/v1/auth/(tokens|users)/([^/]+)", remove_credential, local_only=CREDENTIALS
    ),
)
"""The whole v1 API, in the order the router tries the patterns."""


def _bind(ctx: ApiContext, endpoint: Endpoint) -> Handler:
    """``endpoint``'s handler as the router calls it, refusing a remote caller first where
    the endpoint is local-only. It keeps the handler's name and docstring: the OpenAPI
    document takes each operation's summary from them."""

    def handle(*groups: str, query: dict[str, str], body: Any, caller: Caller) -> Any:
        if endpoint.local_only is not None:
            local_only(caller, endpoint.local_only)
        return endpoint.handler(ctx, Request(query, body, caller), *groups)

    return functools.update_wrapper(handle, endpoint.handler)


def router_for(ctx: ApiContext) -> Router:
    """A router serving :data:`ENDPOINTS` against ``ctx``."""
    router = Router()
    for e in ENDPOINTS:
        router.add(e.method, e.pattern, _bind(ctx, e), e.query, e.body, caller=True)
    return router


def build_router(
    store: Store,
    queue: JobQueue,
    locks: LockManager,
    auth: AuthStore,
    services: NodeServices | None = None,
) -> Router:
    """The v1 router for the master's parts; ``services`` only for live instance queries."""
    return router_for(ApiContext(store, queue, locks, auth, services))
