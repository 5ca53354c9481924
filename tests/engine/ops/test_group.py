"""group.add / modify / rename / remove on loopback nodes: config-only ops, so each one
is checked for what it stores, what it refuses and that it never contacts a node."""

from __future__ import annotations

import pytest

from herd.config import NodeGroup
from herd.errors import ConflictError, PrerequisiteError, ValidationError
from tests.engine.loopback import OpEnv


def group(env: OpEnv, name: str) -> NodeGroup:
    found = env.store.get("nodegroup", name)
    assert isinstance(found, NodeGroup)
    return found


def group_locks(env: OpEnv) -> set[str]:
    return {str(row["name"]) for row in env.locks.info() if row["level"] == "nodegroup"}


def test_an_added_group_holds_its_settings_and_has_a_lock(env: OpEnv) -> None:
    result = env.run(
        {
            "op": "group.add",
            "name": "rack2",
            "alloc_policy": "last_resort",
            "diskparams": {"drbd": {"protocol": "B"}},
            "tags": ["rack:2"],
        }
    )
    made = group(env, "rack2")
    assert result == {"changed": True, "group": "rack2", "uuid": made.uuid}
    assert (made.alloc_policy, made.diskparams, made.tags) == (
        "last_resort",
        {"drbd": {"protocol": "B"}},
        ["rack:2"],
    )
    assert made.uuid in group_locks(env)
    assert env.nodes.calls == []


def test_adding_an_existing_group_is_a_conflict_on_its_name(env: OpEnv) -> None:
    with pytest.raises(ConflictError, match="node group default already exists") as failed:
        env.run({"op": "group.add", "name": "default"})
    assert failed.value.details["field"] == "name"
    assert len(env.store.list("nodegroup")) == 1


def test_a_bad_alloc_policy_is_refused_naming_the_choices(env: OpEnv) -> None:
    with pytest.raises(ValidationError, match="preferred") as failed:
        env.run({"op": "group.add", "name": "rack2", "alloc_policy": "never"})
    assert failed.value.details["field"] == "ops[0].alloc_policy"
    assert env.store.find("nodegroup", "rack2") is None


def test_modify_reports_each_change_and_a_rerun_changes_nothing(env: OpEnv) -> None:
    op = {"op": "group.modify", "name": "default", "alloc_policy": "unallocable"}
    assert env.run(op) == {
        "changed": True,
        "changes": {"alloc_policy": {"before": "preferred", "after": "unallocable"}},
    }
    assert group(env, "default").alloc_policy == "unallocable"
    assert env.run(op) == {"changed": False, "changes": {}}


def test_modifying_an_unknown_group_lists_the_groups_there_are(env: OpEnv) -> None:
    with pytest.raises(ValidationError, match="an existing node group: default") as failed:
        env.run({"op": "group.modify", "name": "rack9", "alloc_policy": "preferred"})
    assert failed.value.details["field"] == "name"


def test_a_renamed_group_keeps_its_uuid_and_so_its_nodes(env: OpEnv) -> None:
    before = group(env, "default").uuid
    assert env.run({"op": "group.rename", "name": "default", "new_name": "rack1"}) == {
        "changed": True,
        "group": "rack1",
    }
    assert group(env, "rack1").uuid == before == env.node("n2").group
    assert env.store.find("nodegroup", "default") is None


def test_renaming_onto_an_existing_group_is_a_conflict_on_new_name(env: OpEnv) -> None:
    env.run({"op": "group.add", "name": "rack2"})
    with pytest.raises(ConflictError) as failed:
        env.run({"op": "group.rename", "name": "rack2", "new_name": "default"})
    assert (failed.value.details["field"], failed.value.details["value"]) == ("new_name", "default")
    assert env.store.find("nodegroup", "rack2") is not None


def test_an_empty_group_is_removed_with_its_lock(env: OpEnv) -> None:
    uuid = env.run({"op": "group.add", "name": "rack2"})["uuid"]
    assert env.run({"op": "group.remove", "name": "rack2"}) == {"changed": True, "group": "rack2"}
    assert env.store.find("nodegroup", "rack2") is None
    assert uuid not in group_locks(env)


def test_a_group_with_nodes_is_not_removed(env: OpEnv) -> None:
    env.run({"op": "group.add", "name": "rack2"})
    env.run({"op": "node.modify", "name": "n2", "group": "rack2"})
    with pytest.raises(PrerequisiteError, match="still has nodes: n2; move them first") as failed:
        env.run({"op": "group.remove", "name": "rack2"})
    assert failed.value.details["nodes"] == ["n2"]
    assert env.store.find("nodegroup", "rack2") is not None


def test_the_last_group_is_not_removed(env: OpEnv) -> None:
    """Only reachable once no node is left (every node is in a group)."""
    with env.store.transaction() as txn:
        for node in txn.list("node"):
            txn.delete(node)
    with pytest.raises(PrerequisiteError, match="node group default is the last one"):
        env.run({"op": "group.remove", "name": "default"})
    assert env.store.find("nodegroup", "default") is not None
