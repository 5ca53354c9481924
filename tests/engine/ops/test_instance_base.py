"""herd.ops.instance_base: the locks an instance op takes, the prerequisites the ops
share, and bringing disks and guests up and down on a node, undo handlers included
(on loopback nodes: file disks, fake hypervisor).

DRBD disks (assembled on two nodes, demoted on shutdown) are covered by
tests/engine/ops/test_drbd.py, tests/vm and tests/engine/ops/*_lab.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.config.model import Node
from herd.errors import NodeError, PrerequisiteError
from herd.ops.instance_base import (
    activate_disks,
    assemble_disks,
    require_online,
    require_secondary_candidate,
    require_stopped,
    runtime_state,
    set_admin_state,
    shutdown_disks,
    start_on,
    stop_for_copy,
    stop_on,
)
from herd.ops.instance_modify import InstanceModify
from herd.ops.undo import handler, instance_arg, node_arg
from tests.engine.loopback import OpEnv


def add(env: OpEnv, start: bool = False) -> None:
    env.run(
        {"op": "instance.add", "name": "web1", "disk_template": "file", "disks": ["4M", "4M"],
         "primary_node": "n2", "install": False, "start": start}
    )  # fmt: skip


def state(env: OpEnv) -> str | None:
    found = runtime_state(env.context(), env.instance("web1"), env.node("n2"))
    return None if found is None else str(found["state"])


def set_object(env: OpEnv, kind: str, name: str, **fields: Any) -> None:
    with env.store.transaction() as txn:
        obj = txn.get(kind, name)
        for key, value in fields.items():
            setattr(obj, key, value)
        txn.update(obj)


def test_an_instance_op_locks_the_instance_then_its_nodes(env: OpEnv) -> None:
    add(env)
    op, ctx = InstanceModify({"name": "web1"}), env.context()
    inst = env.instance("web1")
    instance_locks, node_locks = op.declare_locks("instance", ctx), op.declare_locks("node", ctx)
    assert instance_locks is not None and instance_locks.names == (inst.uuid,)
    assert node_locks is not None and node_locks.names == (inst.primary_node,)
    assert not node_locks.shared


def test_offline_drained_or_foreign_nodes_take_no_secondary_copy() -> None:
    primary = Node(name="n1", primary_ip="192.0.2.1", group="g1")
    require_secondary_candidate(Node(name="n2", primary_ip="192.0.2.2", group="g1"), primary)
    for node, reason in [
        (Node(name="n2", primary_ip="192.0.2.2", group="g1", offline=True), "offline"),
        (Node(name="n2", primary_ip="192.0.2.2", group="g1", drained=True), "drained"),
        (Node(name="n2", primary_ip="192.0.2.2", group="g2"), "another node group"),
    ]:
        with pytest.raises(PrerequisiteError, match=f"node n2 is .*{reason}") as refused:
            require_secondary_candidate(node, primary)
        assert refused.value.details["node"] == "n2"


def test_an_offline_node_is_refused_saying_what_cannot_be_done() -> None:
    node = Node(name="n2", primary_ip="192.0.2.2", offline=True)
    with pytest.raises(PrerequisiteError, match="node n2 is offline: cannot grow disks"):
        require_online(node, "grow disks")


def test_require_stopped_believes_neither_the_config_nor_the_node_alone(env: OpEnv) -> None:
    add(env, start=True)
    op = InstanceModify({"name": "web1"})
    with pytest.raises(PrerequisiteError, match="web1 is running: stop it first to rename"):
        require_stopped(env.context(), op, "rename")
    # Marked down, but the guest still runs on the node.
    set_object(env, "instance", "web1", admin_state="down")
    with pytest.raises(PrerequisiteError, match="web1 is running"):
        require_stopped(env.context(), op, "rename")
    stop_on(env.context(), env.instance("web1"), env.node("n2"), 0, force=True)
    require_stopped(env.context(), op, "rename")
    set_object(env, "node", "n2", offline=True)
    with pytest.raises(PrerequisiteError, match="node n2 is offline: cannot rename"):
        require_stopped(env.context(), op, "rename")


def test_file_disks_assemble_on_their_node_and_shut_down_as_no_change(env: OpEnv) -> None:
    add(env)
    inst, n2 = env.instance("web1"), env.node("n2")
    paths = activate_disks(env.context(), inst, n2)
    assert list(paths) == ["n2"] and len(paths["n2"]) == 2
    assert assemble_disks(env.context(), inst, n2) == paths["n2"]
    assert all(p.endswith(f"-{d.uuid}.img") for p, d in zip(paths["n2"], inst.disks, strict=True))
    # An image file is never "up": nothing was taken down.
    assert shutdown_disks(env.context(), inst, n2) is False


def test_start_and_stop_on_a_node(env: OpEnv) -> None:
    add(env)
    inst, n2 = env.instance("web1"), env.node("n2")
    start_on(env.context(), inst, n2)
    assert state(env) == "running"
    assert stop_on(env.context(), inst, n2, 0, force=True)["changed"] is True
    assert state(env) is None


def test_a_failed_disk_assembly_starts_nothing(env: OpEnv) -> None:
    add(env)
    env.nodes.fail("disk_assemble", NodeError("no image"), node="n2")
    with pytest.raises(NodeError, match="no image"):
        start_on(env.context(), env.instance("web1"), env.node("n2"))
    assert ("n2", "instance_start") not in env.nodes.calls and state(env) is None


def test_an_offline_node_is_not_asked_for_the_runtime_state(env: OpEnv) -> None:
    add(env)
    set_object(env, "node", "n2", offline=True)
    calls = len(env.nodes.calls)
    assert runtime_state(env.context(), env.instance("web1"), env.node("n2")) is None
    assert len(env.nodes.calls) == calls


def test_set_admin_state_stores_only_a_change(env: OpEnv) -> None:
    add(env)
    ctx = env.context()
    assert set_admin_state(ctx, env.instance("web1"), "down") is False
    assert set_admin_state(ctx, env.instance("web1"), "up") is True
    assert env.instance("web1").admin_state == "up"


def test_stop_for_copy_stops_a_running_instance_and_its_undo_starts_it(env: OpEnv) -> None:
    add(env, start=True)
    ctx = env.context()
    assert stop_for_copy(ctx, env.instance("web1"), env.node("n2"), 0) is True
    assert state(env) is None
    ((_, step),) = ctx.journal.pending()
    assert step.kind == "instance.start"
    handler(step.kind)(env.context(), step.args)
    assert state(env) == "running"


def test_stop_for_copy_leaves_a_stopped_instance_and_no_undo(env: OpEnv) -> None:
    add(env)
    ctx = env.context()
    assert stop_for_copy(ctx, env.instance("web1"), env.node("n2"), 0) is False
    assert ctx.journal.pending() == []


def test_the_stop_and_shutdown_disks_undo_handlers(env: OpEnv) -> None:
    add(env, start=True)
    args = {"instance": instance_arg(env.instance("web1")), "node": node_arg(env.node("n2"))}
    handler("instance.shutdown_disks")(env.context(), args)
    handler("instance.stop")(env.context(), args)
    assert state(env) is None
    handler("instance.stop")(env.context(), args)
    assert state(env) is None
