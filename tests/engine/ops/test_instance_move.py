"""instance.move within a cluster on loopback nodes: the disks stream from one node's
transfer worker to the other's over real TLS on 127.0.0.1 (see ``enable_transfers``),
the config then points at the copies and the old disks go; a move failing anywhere
leaves the instance where it was, as it was (running again if it ran).

Moves between clusters are test_instance_remote.py and test_instance_receive.py; the lab
version with real SSH and plain (LVM) disks is test_move_lab.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import NodeError, PrerequisiteError, ValidationError
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_export import DATA, disk_image, streams
from tests.engine.ops.test_instance_add import add, guests, images


@pytest.fixture
def web1(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> str:
    """Instance web1 on n2 with DATA at the start of each of its two disks."""
    streams(env, monkeypatch)
    env.run(add())
    for index in (0, 1):
        with disk_image(env, "web1", index).open("r+b") as image:
            image.write(DATA)
    env.nodes.calls.clear()
    return "web1"


def move(**params: Any) -> dict[str, Any]:
    return {"op": "instance.move", "name": "web1", "target_node": "n1", **params}


def set_node(env: OpEnv, name: str, **changes: Any) -> None:
    with env.store.transaction() as txn:
        node = env.node(name)
        for key, value in changes.items():
            setattr(node, key, value)
        txn.update(node)


def running(env: OpEnv, node: str) -> bool:
    info = env.nodes.call(env.node(node), "instance_info", {"name": "web1", "hypervisor": "fake"})
    return bool(info["instance"]) and info["instance"]["state"] == "running"


def assert_still_on_n2(env: OpEnv, was: list[str]) -> None:
    """The instance unchanged on n2 with its data, and nothing of it on n1."""
    inst = env.instance("web1")
    assert inst.primary_node == env.node("n2").uuid
    assert images(env, "n2") == was
    assert all(disk_image(env, "web1", i).read_bytes()[: len(DATA)] == DATA for i in (0, 1))
    assert images(env, "n1") == [] and guests(env, "n1") == []
    assert not [row for row in env.locks.info() if row["holders"]]


def test_a_move_puts_the_disks_and_the_config_on_the_target(env: OpEnv, web1: str) -> None:
    uuids = [d.uuid for d in env.instance("web1").disks]
    result = env.run(move())
    inst = env.instance("web1")
    assert result["changed"] is True
    assert (result["primary_node"], result["disk_template"]) == ("n1", "file")
    assert len(result["transfers"]) == 2
    assert inst.primary_node == env.node("n1").uuid and inst.secondary_nodes == []
    assert [d.uuid for d in inst.disks] == uuids, "the instance keeps its identity"
    assert all(d.nodes == [env.node("n1").uuid] for d in inst.disks)
    assert all(disk_image(env, "web1", i).read_bytes()[: len(DATA)] == DATA for i in (0, 1))
    assert images(env, "n2") == [], "the old disks are removed"
    assert inst.admin_state == "down"


def test_a_running_instance_is_stopped_moved_and_started_on_the_target(
    env: OpEnv, web1: str
) -> None:
    env.run({"op": "instance.start", "name": "web1"})
    env.run(move(compression="gzip"))
    assert running(env, "n1") and not running(env, "n2")
    assert env.instance("web1").admin_state == "up"


def test_moving_back_to_the_node_it_left_works_too(env: OpEnv, web1: str) -> None:
    env.run(move())
    env.run(move(target_node="n2"))
    assert env.instance("web1").primary_node == env.node("n2").uuid
    assert images(env, "n1") == [] and len(images(env, "n2")) == 2


@pytest.mark.parametrize(
    ("node", "action"),
    [
        ("n1", "disk_create"),
        ("n1", "transfer_receive_start"),
        ("n2", "transfer_send_start"),
        ("n1", "disk_shutdown"),
    ],
)
def test_a_node_failure_during_a_move_leaves_the_instance_where_it_ran(
    env: OpEnv, web1: str, node: str, action: str
) -> None:
    env.run({"op": "instance.start", "name": "web1"})
    was = images(env, "n2")
    env.nodes.fail(action, NodeError(f"{action} broke"), node=node)
    with pytest.raises(NodeError, match=f"node {node}: {action} broke"):
        env.run(move())
    env.nodes.heal()
    assert_still_on_n2(env, was)
    assert running(env, "n2"), "the undo starts it again where it was"


def test_an_old_disk_that_cannot_be_removed_does_not_undo_the_finished_move(
    env: OpEnv, web1: str
) -> None:
    env.nodes.fail("disk_remove", NodeError("busy"), node="n2")
    job = env.run_job(move())
    assert job["status"] == "success"
    assert env.instance("web1").primary_node == env.node("n1").uuid
    warnings = [e["message"] for e in job["log"] if e["type"] == "warning"]
    assert len(warnings) == 2 and "could not remove the old disk 0 on n2" in warnings[0]
    assert len(images(env, "n2")) == 2, "left for cluster verify to report"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_node": None}, "field 'target_node': allowed a node name"),
        ({"target_node": "n2"}, "'n2' for field 'target_node': allowed a node other than"),
        ({"target_node": "n9"}, "'n9' for field 'target_node': allowed an existing node"),
        ({"dest_disk_template": "drbd"}, "'drbd' for field 'dest_disk_template'.*within a cl"),
        ({"dest_disk_template": "plain"}, "'plain' for field 'dest_disk_template'.*enabled"),
        ({"dest_name": "web2"}, "'web2' for field 'dest_name': allowed nothing without dest_"),
        ({"dest_nodes": ["n1"]}, "field 'dest_nodes': allowed nothing without dest_cluster"),
        ({"keep_source": True}, "'keep_source': allowed false without dest_cluster"),
        ({"compression": "rar"}, "'rar' for field 'compression'"),
        ({"ciphers": ["AES128-SHA"]}, "unless the cluster setting allow_cipher_bypassing is on"),
    ],
)
def test_a_bad_move_is_refused_naming_the_field_before_any_disk_is_made(
    env: OpEnv, web1: str, params: dict[str, Any], message: str
) -> None:
    was = images(env, "n2")
    with pytest.raises(ValidationError, match=message):
        env.run(move(**params))
    assert_still_on_n2(env, was)
    assert not [c for c in env.nodes.calls if c[1] in ("disk_create", "instance_stop")]


@pytest.mark.parametrize(
    ("node", "changes", "error", "message"),
    [
        ("n1", {"offline": True}, PrerequisiteError, "node n1 is offline: cannot receive"),
        ("n2", {"offline": True}, PrerequisiteError, "node n2 is offline: cannot read its"),
        ("n1", {"drained": True}, ValidationError, "'n1' for field 'target_node'.*not drained"),
    ],
)
def test_a_node_that_cannot_take_part_is_refused(
    env: OpEnv, web1: str, node: str, changes: dict[str, Any], error: type, message: str
) -> None:
    was = images(env, "n2")
    set_node(env, node, **changes)
    with pytest.raises(error, match=message):
        env.run(move())
    set_node(env, node, **{key: False for key in changes})
    assert_still_on_n2(env, was)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("drbd", "'web1' for field 'name': allowed an instance without DRBD disks"),
        ("sharedfile", "allowed nothing: shared storage moves with instance.migrate"),
    ],
)
def test_mirrored_and_shared_instances_are_refused(
    env: OpEnv, web1: str, template: str, message: str
) -> None:
    """Their real disks need DRBD or shared storage (covered by the lab tests): the config
    alone says what they are, and the refusal comes before any node is asked."""
    with env.store.transaction() as txn:
        inst = env.instance("web1")
        inst.disk_template = template
        txn.update(inst)
    with pytest.raises(ValidationError, match=message):
        env.run(move())
    assert not [c for c in env.nodes.calls if c[1] in ("disk_create", "instance_stop")]
