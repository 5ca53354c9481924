"""Argument validation derived from action signatures."""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import HerdError, ValidationError
from herd.node.actions.registry import Action, NodeContext, Param, dispatch


def make(*params: Param) -> Action:
    return Action("t", lambda ctx, **kw: {"changed": False, **kw}, params)


SAMPLE = make(
    Param("name", str, True, None),
    Param("count", int, False, 1),
    Param("ratio", float, False, 0.5),
    Param("tags", list[str], False, None),
    Param("note", str | None, False, None),
)


def field_of(args: Any) -> str:
    with pytest.raises(ValidationError) as err:
        SAMPLE.validate(args)
    return str(err.value.details["field"])


def test_defaults_fill_in_and_ints_widen_to_float() -> None:
    assert SAMPLE.validate({"name": "a", "ratio": 2}) == {
        "name": "a",
        "count": 1,
        "ratio": 2.0,
        "tags": None,
        "note": None,
    }


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({}, "name"),
        ({"name": 3}, "name"),
        ({"name": "a", "count": True}, "count"),
        ({"name": "a", "count": "2"}, "count"),
        ({"name": "a", "tags": ["x", 2]}, "tags[1]"),
        ({"name": "a", "note": 5}, "note"),
        ({"name": "a", "colour": "red"}, "colour"),
        ("not a dict", "args"),
    ],
)
def test_bad_input_names_the_field(args: Any, field: str) -> None:
    assert field_of(args) == field


def test_dispatch_refuses_results_that_do_not_say_what_changed(tmp_path: Any) -> None:
    from herd.node.actions import registry

    registry._REGISTRY["test_silent"] = Action("test_silent", lambda ctx: {"ok": 1}, ())
    try:
        with pytest.raises(HerdError, match="changed"):
            dispatch(NodeContext(tmp_path), "test_silent", None)
    finally:
        del registry._REGISTRY["test_silent"]


def test_unsupported_parameter_types_fail_at_registration() -> None:
    from herd.node.actions.registry import action

    def needs_bytes(ctx: NodeContext, blob: bytes) -> dict[str, Any]:
        return {"changed": False}

    with pytest.raises(TypeError, match="unsupported"):
        action("test_bytes")(needs_bytes)
