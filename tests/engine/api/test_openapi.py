"""The OpenAPI document is generated from the route table and the op catalog: it must
describe every path, query parameter and op field the server accepts, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import openapi
from herd.api.routes import build_router
from herd.ops.base import registry
from herd.ops.params import Param


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    router = build_router(None, None, None, None)  # type: ignore[arg-type]
    return openapi.document(router.routes, registry(), "test")


def test_every_route_is_a_path_with_its_method(doc: dict[str, Any]) -> None:
    router = build_router(None, None, None, None)  # type: ignore[arg-type]
    for route in router.routes:
        for path, _ in openapi.expand_path(route.pattern.pattern):
            assert route.method.lower() in doc["paths"][path]


def test_alternatives_and_groups_become_real_paths() -> None:
    paths = dict(openapi.expand_path(r"/v1/auth/(tokens|users)/([^/]+)"))
    assert sorted(paths) == ["/v1/auth/tokens/{name}", "/v1/auth/users/{name}"]
    assert paths["/v1/auth/users/{name}"][0]["in"] == "path"
    assert dict(openapi.expand_path(r"/v1/jobs/(\d+)/wait"))["/v1/jobs/{job_id}/wait"][0][
        "schema"
    ] == {"type": "integer", "minimum": 0}


def test_every_query_parameter_is_described() -> None:
    router = build_router(None, None, None, None)  # type: ignore[arg-type]
    used = {q for route in router.routes for q in route.query}
    assert used <= set(openapi.QUERY_SCHEMAS), used - set(openapi.QUERY_SCHEMAS)


def test_every_op_and_every_field_is_in_the_job_schema(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    refs = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["Op"]["anyOf"]}
    assert refs == set(registry())
    for op_id, cls in registry().items():
        props = schemas[op_id]["properties"]
        assert set(props) == {"op", *(p.name for p in cls.PARAMS)}
        assert schemas[op_id]["additionalProperties"] is False
        assert set(schemas[op_id]["required"]) == {
            "op",
            *(p.name for p in cls.PARAMS if p.required),
        }


def test_a_param_schema_is_as_strict_as_the_param() -> None:
    count = Param("count", int, minimum=1, maximum=8, doc="how many")
    assert openapi.param_schema(count) == {
        "type": "integer",
        "minimum": 1,
        "maximum": 8,
        "description": "how many",
    }
    modes = Param("modes", list, item_type=str, choices=("a", "b"))
    assert openapi.param_schema(modes)["items"] == {"type": "string", "enum": ["a", "b"]}
    secret = openapi.param_schema(Param("key", str, secret=True))
    assert "secret" in secret["description"]


def test_schemathesis_loads_the_document(doc: dict[str, Any]) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    loaded = schemathesis.openapi.from_dict(doc)
    assert all(op.ok() for op in loaded.get_all_operations())


def test_what_only_root_may_do_is_marked(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "x-herd-local-only" in schemas["config.restore"]
    assert "x-herd-local-only" not in schemas["instance.start"]
    modify = schemas["cluster.modify"]["properties"]
    assert modify["domain_secret"]["x-herd-local-only"]
    assert "kernel_path" in modify["hvparams"]["x-herd-local-only"]
