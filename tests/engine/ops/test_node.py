"""node.add / remove / modify on loopback nodes.

node.add's SSH-only steps (host key, cluster key) are faked as in test_nodejoin.py; the
real SSH run is tests/engine/ops/test_cluster_lab.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import (
    ConflictError,
    HostKeyMismatchError,
    NodeError,
    PrerequisiteError,
    ValidationError,
)
from herd.ops import nodejoin
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_nodejoin import (
    CLUSTER_KEY,
    FakeSSH,
    crypto_files,
    fake_ssh,
    host_key,
    install_files,
    new_node,
)


@pytest.fixture
def ssh(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> FakeSSH:
    fake = fake_ssh(env, monkeypatch)
    new_node(env)
    fake.presented["192.0.2.30"] = host_key()
    return fake


def add(**changes: Any) -> dict[str, Any]:
    return {"op": "node.add", "name": "n3", "primary_ip": "192.0.2.30", **changes}


def locked(env: OpEnv, uuid: str) -> set[str]:
    """The lock levels ``uuid`` has a lock at."""
    return {str(row["level"]) for row in env.locks.info() if row["name"] == uuid}


def test_an_added_node_is_stored_locked_and_trusted(ssh: FakeSSH, env: OpEnv) -> None:
    result = env.run(add(tags=["rack:1"]))
    node = env.node("n3")
    assert result == {"changed": True, "node": "n3", "uuid": node.uuid}
    assert (node.primary_ip, node.secondary_ip, node.tags) == ("192.0.2.30",) * 2 + (["rack:1"],)
    assert node.host_key == ssh.presented["192.0.2.30"] and node.master_candidate
    assert node.group == env.node("n1").group and node.cpus > 0
    assert locked(env, node.uuid) == {"node", "node-res"}
    assert crypto_files(env, "n3") == sorted(nodejoin.NODE_FILES)
    assert ssh.authorized["n3"] == {CLUSTER_KEY}


@pytest.mark.parametrize("action", ["ping", "write_file"])
def test_a_node_failure_during_add_leaves_nothing(ssh: FakeSSH, env: OpEnv, action: str) -> None:
    env.nodes.fail(action, NodeError(f"{action} broke"), node="n3")
    with pytest.raises(NodeError, match=f"{action} broke"):
        env.run(add())
    assert env.store.find("node", "n3") is None
    assert crypto_files(env, "n3") == [] and ssh.authorized["n3"] == set()


def test_a_wrong_host_key_is_refused_before_the_node_is_touched(ssh: FakeSSH, env: OpEnv) -> None:
    with pytest.raises(HostKeyMismatchError, match="n3"):
        env.run(add(host_key=host_key()))
    assert env.store.find("node", "n3") is None
    assert [c for c in env.nodes.calls if c[0] == "n3"] == [] and "n3" not in ssh.authorized


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"name": "n2"}, ConflictError, "name"),
        ({"primary_ip": "192.0.2.1"}, ConflictError, "primary_ip"),
        ({"secondary_ip": "192.0.2.2"}, ConflictError, "secondary_ip"),
        ({"group": "rack9"}, ValidationError, "group"),
        ({"ssh_port": 0}, ValidationError, "ops[0].ssh_port"),
        ({"primary_ip": "not-an-ip"}, ValidationError, "ops[0].primary_ip"),
    ],
)
def test_add_refusals_name_the_field(
    env: OpEnv, changes: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as failed:
        env.run(add(**changes))
    assert failed.value.details["field"] == field  # type: ignore[attr-defined]
    assert env.store.find("node", "n3") is None and env.nodes.calls == []


def test_a_removed_node_loses_config_locks_certificates_and_key(ssh: FakeSSH, env: OpEnv) -> None:
    install_files(env, "n2")
    ssh.authorized["n2"] = {CLUSTER_KEY}
    uuid = env.node("n2").uuid
    result = env.run({"op": "node.remove", "name": "n2"})
    assert result == {"changed": True, "node": "n2", "cleanup_problems": []}
    assert env.store.find("node", "n2") is None and locked(env, uuid) == set()
    assert crypto_files(env, "n2") == [] and ssh.authorized["n2"] == set()


def test_a_node_marked_offline_is_removed_without_contacting_it(env: OpEnv) -> None:
    env.run({"op": "node.modify", "name": "n2", "offline": True})
    env.run({"op": "node.remove", "name": "n2"})
    assert env.store.find("node", "n2") is None
    assert [c for c in env.nodes.calls if c[0] == "n2"] == []


def test_an_unreachable_node_is_removed_and_its_cleanup_reported(ssh: FakeSSH, env: OpEnv) -> None:
    env.nodes.offline.add("n2")
    problems = env.run({"op": "node.remove", "name": "n2"})["cleanup_problems"]
    assert len(problems) == 1 and problems[0].startswith("n2: ")
    assert env.store.find("node", "n2") is None


def test_the_master_is_not_removed(env: OpEnv) -> None:
    with pytest.raises(PrerequisiteError, match="node n1 is the master"):
        env.run({"op": "node.remove", "name": "n1"})
    assert env.store.find("node", "n1") is not None


def test_a_node_hosting_an_instance_is_not_removed(env: OpEnv) -> None:
    env.run(
        {
            "op": "instance.add",
            "name": "web1",
            "disk_template": "file",
            "disks": ["4M"],
            "primary_node": "n2",
            "install": False,
            "start": False,
        }
    )
    with pytest.raises(PrerequisiteError, match="still hosts instances: web1") as failed:
        env.run({"op": "node.remove", "name": "n2"})
    assert failed.value.details["instances"] == ["web1"]


def test_removing_an_unknown_node_lists_the_nodes(env: OpEnv) -> None:
    with pytest.raises(ValidationError, match="an existing node: n1, n2") as failed:
        env.run({"op": "node.remove", "name": "n9"})
    assert failed.value.details["field"] == "name"


def test_modify_reports_changes_and_a_rerun_changes_nothing(env: OpEnv) -> None:
    op = {"op": "node.modify", "name": "n2", "drained": True, "tags": ["t"]}
    assert env.run(op)["changes"] == {
        "drained": {"before": False, "after": True},
        "tags": {"before": [], "after": ["t"]},
    }
    assert env.node("n2").drained and env.node("n2").tags == ["t"]
    assert env.run(op) == {"changed": False, "changes": {}}


def test_an_offline_node_stops_being_a_master_candidate(env: OpEnv) -> None:
    changes = env.run({"op": "node.modify", "name": "n2", "offline": True})["changes"]
    assert set(changes) == {"offline", "master_candidate"}
    assert env.node("n2").offline and not env.node("n2").master_candidate


@pytest.mark.parametrize(
    "flags", [{"offline": True}, {"drained": True}, {"master_candidate": False}]
)
def test_the_master_keeps_its_flags(env: OpEnv, flags: dict[str, bool]) -> None:
    with pytest.raises(PrerequisiteError, match="node n1 is the master"):
        env.run({"op": "node.modify", "name": "n1", **flags})
    assert not env.node("n1").offline and not env.node("n1").drained


def test_offline_and_master_candidate_together_are_refused(env: OpEnv) -> None:
    with pytest.raises(ValidationError) as failed:
        env.run({"op": "node.modify", "name": "n2", "offline": True, "master_candidate": True})
    assert failed.value.details["field"] == "master_candidate"
    assert not env.node("n2").offline


def test_a_node_moves_to_another_group(env: OpEnv) -> None:
    target = env.run({"op": "group.add", "name": "rack2"})["uuid"]
    env.run({"op": "node.modify", "name": "n2", "group": "rack2"})
    assert env.node("n2").group == target


def test_moving_to_an_unknown_group_lists_the_groups(env: OpEnv) -> None:
    with pytest.raises(ValidationError, match="an existing node group: default") as failed:
        env.run({"op": "node.modify", "name": "n2", "group": "rack9"})
    assert failed.value.details["field"] == "group"


def test_a_secondary_address_in_use_is_refused_and_a_free_one_taken(env: OpEnv) -> None:
    with pytest.raises(ConflictError, match="already used by node n1") as failed:
        env.run({"op": "node.modify", "name": "n2", "secondary_ip": "192.0.2.1"})
    assert failed.value.details["field"] == "secondary_ip"
    env.run({"op": "node.modify", "name": "n2", "secondary_ip": "198.51.100.2"})
    assert env.node("n2").secondary_ip == "198.51.100.2"
    assert env.run({"op": "node.modify", "name": "n2", "secondary_ip": "198.51.100.2"}) == {
        "changed": False,
        "changes": {},
    }
