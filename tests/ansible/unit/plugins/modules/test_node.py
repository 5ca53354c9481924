"""node.plan: which ops a task submits, given the node the master reports."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdApiError
from ansible_collections.herd.cluster.plugins.modules.node import plan

NODE = {
    "name": "n2",
    "primary_ip": "192.0.2.12",
    "secondary_ip": "198.51.100.12",
    "group": "5f0c-uuid",
    "group_name": "default",
    "master_candidate": True,
    "drained": False,
    "offline": False,
    "ssh_port": 22,
    "host_key": "ssh-ed25519 AAAAkey1 root@n2",
    "tags": ["rack1"],
}


def params(**given: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(
        (
            "primary_ip",
            "secondary_ip",
            "ssh_port",
            "host_key",
            "group",
            "master_candidate",
            "drained",
            "offline",
            "tags",
        ),
    )
    return {**base, "name": "n2", "state": "present", **given}


def test_new_node_is_added_with_declared_fields_only() -> None:
    ops, diff = plan(None, params(primary_ip="192.0.2.12", group="rack2"))
    assert ops == [{"op": "node.add", "name": "n2", "primary_ip": "192.0.2.12", "group": "rack2"}]
    assert diff == {
        "before": {},
        "after": {"name": "n2", "primary_ip": "192.0.2.12", "group": "rack2"},
    }


def test_new_drained_node_is_added_and_drained_in_one_job() -> None:
    ops, _ = plan(None, params(drained=True, offline=False))
    assert ops == [
        {"op": "node.add", "name": "n2"},
        {"op": "node.modify", "name": "n2", "drained": True},
    ]


def test_matching_node_needs_nothing() -> None:
    same = params(primary_ip="192.0.2.12", group="default", tags=["rack1"], drained=False)
    assert plan(NODE, same) == ([], {})


def test_group_is_compared_by_name_and_only_differences_are_sent() -> None:
    ops, diff = plan(NODE, params(group="rack2", drained=True, master_candidate=True))
    assert ops == [{"op": "node.modify", "name": "n2", "drained": True, "group": "rack2"}]
    assert diff == {
        "before": {"drained": False, "group": "default"},
        "after": {"drained": True, "group": "rack2"},
    }


def test_fixed_field_change_fails_instead_of_being_ignored() -> None:
    with pytest.raises(HerdApiError, match="remove and re-add"):
        plan(NODE, params(primary_ip="192.0.2.99"))


def test_host_key_is_compared_without_its_comment() -> None:
    assert plan(NODE, params(host_key="ssh-ed25519 AAAAkey1")) == ([], {})
    with pytest.raises(HerdApiError, match="host_key"):
        plan(NODE, params(host_key="ssh-ed25519 AAAAkey2 root@n2"))
    ops, _ = plan(None, params(host_key="ssh-ed25519 AAAAkey1", ssh_port=2222))
    assert ops == [
        {"op": "node.add", "name": "n2", "ssh_port": 2222, "host_key": "ssh-ed25519 AAAAkey1"}
    ]


def test_absent() -> None:
    assert plan(None, params(state="absent")) == ([], {})
    ops, diff = plan(NODE, params(state="absent"))
    assert ops == [{"op": "node.remove", "name": "n2"}]
    assert diff == {"before": NODE, "after": {}}
