"""instance_info.select: the named instances, and the names that matched none."""

from __future__ import annotations

from ansible_collections.herd.cluster.plugins.modules.instance_info import select

ALL = [{"name": "db1", "primary_node_name": "n2"}, {"name": "web1", "primary_node_name": "n1"}]


def test_all_instances_when_no_names_are_given() -> None:
    assert select(ALL, None) == (ALL, [])


def test_named_instances_and_the_missing_names() -> None:
    assert select(ALL, ["web1", "web9", "web1"]) == ([ALL[1]], ["web9"])
    assert select(ALL, []) == ([], [])
