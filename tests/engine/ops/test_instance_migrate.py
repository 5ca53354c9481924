"""instance.migrate and instance.failover on loopback nodes (real node agent, fake
hypervisor): a ``file`` instance is refused (its disks stay on one node), diskless and
sharedfile ones move, a missing or unfit target is refused before anything happens, and
a failover whose source will not stop leaves the instance running where it was.

A running instance migrates live between loopback nodes that all listen on 127.0.0.1
(``enable_transfers``): the fake hypervisor streams its stand-in memory image. DRBD moves
(the secondary promoted, dual-primary during a migration) are covered by tests/vm and
tests/engine/ops/*_lab.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herd.config import NodeGroup
from herd.errors import NodeError, PrerequisiteError, ValidationError
from herd.node.storage.sharedfile import SHARED_DIR_ENV
from herd.ops.instance_migrate import switch_primary
from tests.engine.loopback import OpEnv, enable_transfers


@pytest.fixture
def env3(make_env: Any) -> OpEnv:
    return make_env(nodes=("n1", "n2", "n3"))


def add(env: OpEnv, template: str = "diskless", start: bool = False) -> None:
    """web1 on n2: diskless or sharedfile (it can move without a copy) or file (it cannot)."""
    env.run(
        {"op": "instance.add", "name": "web1", "disk_template": template,
         "disks": [] if template == "diskless" else ["4M"], "primary_node": "n2",
         "install": False, "start": start}
    )  # fmt: skip


def move(env: OpEnv, op: str, **params: Any) -> Any:
    return env.run({"op": f"instance.{op}", "name": "web1", **params})


def primary(env: OpEnv) -> str:
    return env.store.get("node", env.instance("web1").primary_node).name


def guest_state(env: OpEnv, node: str) -> str | None:
    info = env.nodes.call(env.node(node), "instance_info", {"name": "web1", "hypervisor": "fake"})
    return None if info["instance"] is None else str(info["instance"]["state"])


def set_node(env: OpEnv, name: str, **fields: Any) -> None:
    with env.store.transaction() as txn:
        node = txn.get("node", name)
        for key, value in fields.items():
            setattr(node, key, value)
        txn.update(node)


@pytest.mark.parametrize("op", ["migrate", "failover"])
def test_a_file_instance_is_refused_pointing_at_instance_move(env: OpEnv, op: str) -> None:
    add(env, "file")
    calls = len(env.nodes.calls)
    with pytest.raises(ValidationError, match="'file' keeps its disks on one node") as refused:
        move(env, op, target_node="n1")
    assert refused.value.details["field"] == "name"
    assert "instance.move" in str(refused.value)
    assert primary(env) == "n2" and len(env.nodes.calls) == calls


@pytest.mark.parametrize("op", ["migrate", "failover"])
@pytest.mark.parametrize(
    ("target", "allowed"),
    [(None, "a node name"), ("n2", "a node other than the primary"), ("n9", "n9")],
)
def test_a_missing_or_same_target_is_refused_naming_it(
    env: OpEnv, op: str, target: str | None, allowed: str
) -> None:
    add(env)
    with pytest.raises(ValidationError, match=allowed) as refused:
        move(env, op, target_node=target)
    assert refused.value.details["field"] == "target_node"
    assert primary(env) == "n2"


@pytest.mark.parametrize("op", ["migrate", "failover"])
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"offline": True}, "node n1 is offline: cannot receive instances"),
        ({"drained": True}, "node n1 is drained: no instances move there"),
    ],
)
def test_an_unfit_target_is_refused(
    env: OpEnv, op: str, fields: dict[str, bool], reason: str
) -> None:
    add(env)
    set_node(env, "n1", **fields)
    with pytest.raises(PrerequisiteError, match=reason):
        move(env, op, target_node="n1")
    assert primary(env) == "n2"


def test_a_target_in_another_group_is_refused(env: OpEnv) -> None:
    add(env)
    other = NodeGroup(name="other")
    with env.store.transaction() as txn:
        txn.add(other)
    set_node(env, "n1", group=other.uuid)
    with pytest.raises(PrerequisiteError, match=r"another node group; use instance\.move"):
        move(env, "migrate", target_node="n1")
    assert primary(env) == "n2"


def test_a_stopped_instance_migrates_by_a_config_change(env: OpEnv) -> None:
    add(env)
    assert move(env, "migrate", target_node="n1") == {
        "changed": True,
        "primary_node": "n1",
        "live": False,
    }
    assert primary(env) == "n1"
    assert ("n1", "instance_migration_accept") not in env.nodes.calls


def test_migrating_from_an_offline_primary_points_at_failover(env: OpEnv) -> None:
    add(env)
    set_node(env, "n2", offline=True)
    with pytest.raises(
        PrerequisiteError, match=r"cannot migrate from it \(use instance.failover\)"
    ):
        move(env, "migrate", target_node="n1")
    assert primary(env) == "n2"


def test_a_running_instance_fails_over_to_the_target(env: OpEnv) -> None:
    add(env, start=True)
    assert move(env, "failover", target_node="n1", shutdown_timeout=5) == {
        "changed": True,
        "primary_node": "n1",
    }
    assert primary(env) == "n1" and env.instance("web1").admin_state == "up"
    assert (guest_state(env, "n2"), guest_state(env, "n1")) == (None, "running")


def test_a_stopped_instance_fails_over_without_starting(env: OpEnv) -> None:
    add(env)
    move(env, "failover", target_node="n1")
    assert primary(env) == "n1" and guest_state(env, "n1") is None
    assert ("n1", "instance_start") not in env.nodes.calls


def test_a_source_that_will_not_stop_keeps_the_instance_running_there(env: OpEnv) -> None:
    add(env, start=True)
    env.nodes.fail("instance_stop", NodeError("stuck"), node="n2")
    with pytest.raises(PrerequisiteError, match="retry with ignore_consistency") as refused:
        move(env, "failover", target_node="n1", shutdown_timeout=0)
    assert "stuck" in str(refused.value)
    assert primary(env) == "n2" and guest_state(env, "n2") == "running"
    assert guest_state(env, "n1") is None


def test_an_unreachable_source_is_skipped_with_ignore_consistency(env3: OpEnv) -> None:
    env = env3
    add(env, start=True)
    env.nodes.offline.add("n2")
    with pytest.raises(PrerequisiteError, match="cannot shut web1 down on n2"):
        move(env, "failover", target_node="n3")
    env.nodes.offline.clear()
    assert guest_state(env, "n3") is None
    env.nodes.offline.add("n2")
    move(env, "failover", target_node="n3", ignore_consistency=True)
    assert primary(env) == "n3" and guest_state(env, "n3") == "running"


def test_a_failed_start_on_the_target_is_retried_there_by_the_undo(env: OpEnv) -> None:
    """After the switch the config names the target: the undo starts the instance there
    (once), and reports it when that fails too; the source is never restarted."""
    add(env, start=True)
    env.nodes.fail("instance_start", NodeError("no memory"), node="n1")
    with pytest.raises(NodeError, match="no memory") as failed:
        move(env, "failover", target_node="n1", shutdown_timeout=5)
    (problem,) = failed.value.details["rollback_failed"]
    assert problem.startswith("start web1 again where the config puts it")
    assert primary(env) == "n1" and guest_state(env, "n2") is None
    env.nodes.heal()
    move(env, "failover", target_node="n2", shutdown_timeout=5)
    assert guest_state(env, "n2") == "running"


def test_a_running_instance_migrates_live_to_the_target(env: OpEnv) -> None:
    enable_transfers(env)
    add(env, start=True)
    assert move(env, "migrate", target_node="n1") == {
        "changed": True,
        "primary_node": "n1",
        "live": True,
    }
    assert primary(env) == "n1" and env.instance("web1").admin_state == "up"
    assert (guest_state(env, "n1"), guest_state(env, "n2")) == ("running", None)


def test_a_failed_memory_copy_leaves_the_instance_running_on_its_source(env: OpEnv) -> None:
    enable_transfers(env)
    add(env, start=True)
    env.nodes.fail("instance_migrate", NodeError("link down"), node="n2")
    with pytest.raises(NodeError, match="link down"):
        move(env, "migrate", target_node="n1", live=False)
    assert ("n1", "instance_migration_finish") in env.nodes.calls
    assert primary(env) == "n2"
    assert (guest_state(env, "n2"), guest_state(env, "n1")) == ("running", None)


def test_a_target_that_cannot_resume_gives_the_instance_back_to_its_source(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the memory copy the source copy is gone: the settle step, seeing the target
    not running, aborts the copy there and boots the instance on the source again."""
    enable_transfers(env)
    add(env, start=True)
    real = env.nodes._call

    def no_resume(node: Any, action: str, args: dict[str, Any] | None) -> dict[str, Any]:
        if (node.name, action) == ("n1", "instance_migration_finish") and (args or {})["success"]:
            raise NodeError("node n1: resume failed", node="n1")
        return real(node, action, args)

    monkeypatch.setattr(env.nodes, "_call", no_resume)
    with pytest.raises(NodeError, match="resume failed") as failed:
        move(env, "migrate", target_node="n1")
    assert "rollback_failed" not in failed.value.details
    assert primary(env) == "n2"
    assert (guest_state(env, "n2"), guest_state(env, "n1")) == ("running", None)


def test_a_target_that_can_neither_resume_nor_abort_still_gives_the_source_back(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target never resumed its copy, so the source may run again even when the target
    cannot be told to drop it; the instance must not end up running nowhere."""
    enable_transfers(env)
    add(env, start=True)
    real = env.nodes._call

    def target_lost(node: Any, action: str, args: dict[str, Any] | None) -> dict[str, Any]:
        if (node.name, action) == ("n1", "instance_migration_finish"):
            raise NodeError("node n1: unreachable", node="n1")
        return real(node, action, args)

    monkeypatch.setattr(env.nodes, "_call", target_lost)
    with pytest.raises(NodeError, match="unreachable"):
        move(env, "migrate", target_node="n1")
    assert primary(env) == "n2"
    assert guest_state(env, "n2") == "running"


def test_a_sharedfile_instance_migrates_live_with_its_disks_in_place(
    env: OpEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every loopback node sees the same directory, as every node mounts the share."""
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path / "shared"))
    enable_transfers(env)
    with env.store.transaction() as txn:
        cluster = txn.list("cluster")[0]
        cluster.enabled_disk_templates = ["file", "sharedfile"]
        txn.update(cluster)
    add(env, "sharedfile", start=True)
    images = sorted((tmp_path / "shared").rglob("*.img"))
    move(env, "migrate", target_node="n1")
    assert primary(env) == "n1" and guest_state(env, "n1") == "running"
    assert ("n1", "disk_assemble") in env.nodes.calls
    assert sorted((tmp_path / "shared").rglob("*.img")) == images != []
    move(env, "failover", target_node="n2", shutdown_timeout=5)
    assert primary(env) == "n2" and guest_state(env, "n2") == "running"


def test_switching_to_the_current_primary_changes_nothing(env: OpEnv) -> None:
    add(env)
    inst = env.instance("web1")
    switch_primary(env.context(), inst, env.node("n2"))
    assert env.instance("web1").to_dict() == inst.to_dict()
