"""node_evacuate's pure parts: which instances a mode moves, which jobs are in flight."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.herd.cluster.plugins.modules.node_evacuate import on_node, touches

INSTANCES: list[dict[str, Any]] = [
    {"name": "web1", "primary_node_name": "a", "secondary_node_names": []},
    {"name": "db1", "primary_node_name": "b", "secondary_node_names": ["a"]},
    {"name": "db2", "primary_node_name": "a", "secondary_node_names": ["c"]},
    {"name": "far", "primary_node_name": "b", "secondary_node_names": ["c"]},
]


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("all", ["db1", "db2", "web1"]),
        ("primary-only", ["db2", "web1"]),
        ("secondary-only", ["db1"]),
    ],
)
def test_on_node_follows_the_mode(mode: str, names: list[str]) -> None:
    assert on_node(INSTANCES, "a", mode) == names
    assert on_node(INSTANCES, "d", mode) == []


def test_touches_only_instance_ops_on_the_named_instances() -> None:
    move = {"ops": [{"op": "instance.migrate", "params": {"name": "web1"}}]}
    same_name_node = {"ops": [{"op": "node.modify", "params": {"name": "web1"}}]}
    assert touches(move, {"web1", "db1"})
    assert not touches(move, {"db1"})
    assert not touches(same_name_node, {"web1"})
    assert not touches({"ops": []}, {"web1"})
