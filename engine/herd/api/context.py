"""What every v1 handler is given: the master's parts it may use and the request it serves.

Handlers are plain module-level functions of ``(ctx, request, *path_groups)``, so each can
be read, typed and called in a test on its own, without a router or a socket; the route
table (:mod:`herd.api.routes`) binds them to one :class:`ApiContext`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herd.api.server import Caller
from herd.auth import AuthStore
from herd.config.store import Store
from herd.errors import ForbiddenError
from herd.jobs.queue import JobQueue
from herd.locking import LockManager
from herd.ops.base import NodeServices


@dataclass(frozen=True)
class ApiContext:
    """The master's parts the API reads and drives; built once per router.

    ``services`` (the master's node RPC) is only needed for live instance queries, so a
    router that never answers those (tests, the OpenAPI document) may leave it out.
    """

    store: Store
    queue: JobQueue
    locks: LockManager
    auth: AuthStore
    services: NodeServices | None = None


@dataclass(frozen=True)
class Request:
    """One request as the router checked it: query parameters it accepts, the body if the
    route takes one, and who sent it (the same handler serves the socket and HTTPS)."""

    query: dict[str, str]
    body: Any
    caller: Caller


def local_only(caller: Caller, what: str) -> None:
    """Refuse ``what`` to a remote caller, in the one wording every such refusal uses."""
    if caller.remote:
        raise ForbiddenError(f"{what} only as root on the master, over the local socket")
