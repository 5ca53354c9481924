"""An OpenAPI 3 description of API v1, generated from the router and the op catalog.

Generated, never written by hand, from the same two sources the server itself obeys (the
route table with its query parameters, and every op's ``PARAMS``), so the document
cannot promise a field the server refuses or hide one it accepts. Clients generate code
from it and schemathesis fuzzes the live master with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from herd.api.server import Route
from herd.jobs.job import FINAL, PRIO_MAX, PRIO_MIN, STATUSES, UNFINISHED
from herd.ops import exposure
from herd.ops.base import Op
from herd.ops.params import Param

_JSON_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}

#: The shapes of the query parameters the routes take (the server receives strings and
#: checks them itself; these say what it accepts).
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "status": {
        "type": "string",
        "enum": [*STATUSES, UNFINISHED],
        "description": f"{UNFINISHED!r}: any status not final (listing jobs only)",
    },
    "op": {"type": "string", "description": "only jobs with an op of this id"},
    "name": {"type": "string", "description": "with op: only where that op's name is this"},
    "limit": {"type": "integer", "minimum": 1},
    "log_since": {"type": "integer", "minimum": 0},
    "timeout": {"type": "number", "minimum": 0, "maximum": 60},
    "names": {"type": "string", "description": "comma-separated object names"},
    "live": {"type": "string", "enum": ["0", "1"]},
    "secrets": {"type": "string", "enum": ["0", "1"], "description": "1: unredacted (root only)"},
}

#: What a path group matches, as an OpenAPI path parameter.
_GROUP_PARAMS = {
    r"(\d+)": ("job_id", {"type": "integer", "minimum": 0}),
    r"([^/]+)": ("name", {"type": "string"}),
}
#: A path segment: a parenthesised group (which may itself hold a '/') or plain text.
_SEGMENT = re.compile(r"/(\([^)]*\)|[^/]+)")
_ALTERNATIVES = re.compile(r"^\(([a-z|]+)\)$")

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "details"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_STATUS_TEXT = {
    "400": "bad input: details name the field, the value and what is allowed",
    "401": "no or wrong credentials",
    "403": "the caller may not do this",
    "404": "no such object or path",
    "409": "the request contradicts the cluster's state",
    "429": "too many failed logins from this address; see Retry-After",
}


def param_schema(param: Param) -> dict[str, Any]:
    """The JSON schema of one op parameter, as strict as :meth:`Param.validate`."""
    schema: dict[str, Any] = {"type": _JSON_TYPES.get(param.type, "string")}
    if param.type is list:
        item: dict[str, Any] = {}
        if param.item_type is not None:
            item["type"] = _JSON_TYPES[param.item_type]
        if param.choices is not None:
            item["enum"] = list(param.choices)
        schema["items"] = item
    elif param.choices is not None:
        schema["enum"] = list(param.choices)
    if param.type in (int, float):
        if param.minimum is not None:
            schema["minimum"] = param.minimum
        if param.maximum is not None:
            schema["maximum"] = param.maximum
    text = param.doc or param.describe_allowed()
    if param.secret:
        text += " (secret: never shown in jobs or results)"
    schema["description"] = text
    if param.default is not None:
        schema["default"] = param.default
    return schema


def op_schema(op_id: str, cls: type[Op]) -> dict[str, Any]:
    """One op as a job entry: ``{"op": ID, ...params}`` and nothing else.

    What only root may do (:mod:`herd.ops.exposure`) is marked ``x-herd-local-only`` with
    the reason, so a client sees before it tries what a token will be refused.
    """
    properties = {p.name: param_schema(p) for p in cls.PARAMS}
    for name, rule in exposure.REMOTE_OPS.get(op_id, {}).items():
        properties[name]["x-herd-local-only"] = (
            rule if isinstance(rule, str) else {key: why for key, why in rule.local.items()}
        )
    schema: dict[str, Any] = {
        "type": "object",
        "title": op_id,
        "description": cls.SUMMARY,
        "required": ["op", *(p.name for p in cls.PARAMS if p.required)],
        "properties": {"op": {"type": "string", "enum": [op_id]}, **properties},
        "additionalProperties": False,
    }
    if op_id in exposure.LOCAL_OPS:
        schema["x-herd-local-only"] = exposure.LOCAL_OPS[op_id]
    return schema


def job_schema() -> dict[str, Any]:
    """A job: a non-empty list of ops plus priority, reason trail and dependencies."""
    return {
        "type": "object",
        "required": ["ops"],
        "properties": {
            "ops": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Op"}},
            "priority": {"type": "integer", "minimum": PRIO_MIN, "maximum": PRIO_MAX},
            "reason": {
                "type": "array",
                "items": {"type": "array", "minItems": 2, "maxItems": 3},
                "description": "[source, reason] or [source, reason, timestamp] entries",
            },
            "depends": {
                "type": "array",
                "items": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "prefixItems": [
                        {"type": "integer"},
                        {"type": "array", "items": {"enum": sorted(FINAL)}},
                    ],
                },
                "description": "[job_id, [final statuses]]; negative ids name earlier jobs "
                "of the same submission",
            },
        },
        "additionalProperties": False,
    }


def _submission_schema() -> dict[str, Any]:
    return {
        "anyOf": [
            {"$ref": "#/components/schemas/Job"},
            {
                "type": "object",
                "required": ["jobs"],
                "properties": {
                    "jobs": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"$ref": "#/components/schemas/Job"},
                    }
                },
                "additionalProperties": False,
            },
        ]
    }


def expand_path(pattern: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Turn a route's regular expression into OpenAPI paths with their path parameters.

    An alternation such as ``(nodes|instances)`` becomes one path per alternative, so the
    document lists real paths rather than a pattern a client would have to guess.
    """
    paths: list[tuple[str, list[dict[str, Any]]]] = [("", [])]
    for segment in _SEGMENT.findall(pattern.strip("^$")):
        alternatives = _ALTERNATIVES.match(segment)
        if alternatives:
            paths = [(f"{p}/{alt}", ps) for p, ps in paths for alt in alternatives[1].split("|")]
        elif segment in _GROUP_PARAMS:
            name, schema = _GROUP_PARAMS[segment]
            parameter = {"name": name, "in": "path", "required": True, "schema": schema}
            paths = [(f"{p}/{{{name}}}", [*ps, parameter]) for p, ps in paths]
        else:
            paths = [(f"{p}/{segment}", ps) for p, ps in paths]
    return paths


def _operation(route: Route, path: str, path_params: list[dict[str, Any]]) -> dict[str, Any]:
    doc = (route.fn.__doc__ or route.fn.__name__.replace("_", " ")).strip().splitlines()[0]
    operation: dict[str, Any] = {
        "operationId": route.method.lower() + re.sub(r"[^a-z0-9]+", "_", path),
        "summary": doc,
        "parameters": [
            *path_params,
            *(
                {"name": q, "in": "query", "required": False, "schema": QUERY_SCHEMAS[q]}
                for q in route.query
            ),
        ],
        "responses": {
            "200": {"description": "done", "content": {"application/json": {"schema": {}}}},
            **{
                code: {
                    "description": text,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code, text in _STATUS_TEXT.items()
            },
        },
    }
    if route.body:
        schema = _submission_schema() if route.fn.__name__ == "submit" else {"type": "object"}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def document(routes: Iterable[Route], ops: Mapping[str, type[Op]], version: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document for the given routes and op catalog."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        for path, params in expand_path(route.pattern.pattern):
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, path, params)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Herd master API", "version": version},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _ERROR,
                "Job": job_schema(),
                "Op": {
                    "anyOf": [{"$ref": f"#/components/schemas/{name}"} for name in sorted(ops)],
                    "discriminator": {"propertyName": "op"},
                },
                **{name: op_schema(name, cls) for name, cls in sorted(ops.items())},
            },
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "password": {"type": "http", "scheme": "basic"},
            },
        },
        "security": [{"token": []}, {"password": []}],
    }
