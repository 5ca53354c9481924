"""The v1 route table: module-level handlers bound to one context, who may call each, and
the OpenAPI document generated from the very table the router serves.

No socket and no master: the router is dispatched directly with fakes in the context, so
what is checked is the table and its binding, not HTTP (tests/engine/api/test_server.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import openapi
from herd.api.context import ApiContext
from herd.api.routes import ENDPOINTS, build_router, router_for
from herd.api.server import LOCAL, Caller, Router
from herd.auth import Principal
from herd.errors import ForbiddenError, ValidationError

REMOTE = Caller("https", Principal("tokens", "ci", read_only=False), "192.0.2.9")


class FakeAuth:
    """Records what the credential handlers asked of the auth store."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def list(self, kind: str) -> list[dict[str, Any]]:
        self.calls.append(("list", kind))
        return [{"name": "admin"}]

    def create_token(self, name: str, read_only: bool) -> str:
        self.calls.append(("create_token", name))
        return "herd_new"

    def remove(self, kind: str, name: str) -> None:
        self.calls.append(("remove", kind, name))


class FakeQueue:
    """Answers the queue's reads with what it was asked, so a test sees the parsed args."""

    max_running = 2

    def counts(self) -> dict[str, int]:
        return {"queued": 1}

    def view(self, job_id: int, log_since: int | None) -> dict[str, Any]:
        return {"id": job_id, "log_since": log_since}


@pytest.fixture
def auth() -> FakeAuth:
    return FakeAuth()


@pytest.fixture
def router(auth: FakeAuth) -> Router:
    ctx = ApiContext(store=None, queue=FakeQueue(), locks=None, auth=auth)  # type: ignore[arg-type]
    return router_for(ctx)


def test_the_router_serves_exactly_the_table(router: Router) -> None:
    served = [(r.method, r.pattern.pattern, r.query, r.body) for r in router.routes]
    table = [(e.method, f"^{e.pattern}$", e.query, e.body) for e in ENDPOINTS]
    assert served == table


def test_every_handler_is_a_module_level_function() -> None:
    for endpoint in ENDPOINTS:
        handler = endpoint.handler
        assert handler.__qualname__ == handler.__name__, (endpoint.pattern, handler.__qualname__)
        assert handler.__module__.startswith("herd.api."), handler.__module__


def test_a_bound_handler_keeps_the_name_and_docstring_openapi_reads(router: Router) -> None:
    for route, endpoint in zip(router.routes, ENDPOINTS, strict=True):
        assert route.fn.__name__ == endpoint.handler.__name__
        assert route.fn.__doc__ == endpoint.handler.__doc__


def test_path_groups_and_query_reach_the_handler(router: Router) -> None:
    assert router.dispatch("GET", "/v1/jobs/7", {"log_since": "3"}, None) == {
        "id": 7,
        "log_since": 3,
    }
    assert router.dispatch("GET", "/v1/queue", {}, None) == {
        "max_running": 2,
        "counts": {"queued": 1},
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/auth/tokens", None),
        ("POST", "/v1/auth/tokens", {"name": "sneaky"}),
        ("DELETE", "/v1/auth/users/admin", None),
    ],
)
def test_local_only_endpoints_refuse_a_remote_caller_before_the_handler(
    router: Router, auth: FakeAuth, method: str, path: str, body: Any
) -> None:
    with pytest.raises(ForbiddenError, match="API credentials are managed only as root"):
        router.dispatch(method, path, {}, body, REMOTE)
    assert auth.calls == []
    router.dispatch(method, path, {}, body, LOCAL)
    assert len(auth.calls) == 1


def test_the_request_shape_is_checked_before_who_is_asking(router: Router) -> None:
    with pytest.raises(ValidationError) as err:
        router.dispatch("GET", "/v1/auth/tokens", {"all": "1"}, None, REMOTE)
    assert err.value.details["field"] == "all"


def test_the_openapi_endpoint_describes_the_table_it_is_served_from(router: Router) -> None:
    doc = router.dispatch("GET", "/v1/openapi.json", {}, None)
    expected = {
        (path, e.method.lower()) for e in ENDPOINTS for path, _ in openapi.expand_path(e.pattern)
    }
    assert {(p, m) for p, ops in doc["paths"].items() for m in ops} == expected
    submission = doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/Job"} in submission["schema"]["anyOf"]


def test_build_router_wires_the_masters_parts_into_one_context(auth: FakeAuth) -> None:
    router = build_router(None, FakeQueue(), None, auth)  # type: ignore[arg-type]
    assert router.dispatch("GET", "/v1/auth/users", {}, None) == {"items": [{"name": "admin"}]}
    assert router.dispatch("GET", "/v1/jobs/1", {}, None) == {"id": 1, "log_since": 0}
