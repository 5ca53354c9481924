"""instance.start, stop and remove: end to end on loopback nodes, and instance.remove
through a master when a node refuses to clean up (the instance stays unless told)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.config import SQLiteStore
from herd.errors import NodeError, PrerequisiteError
from herd.rpc.services import Services
from tests.engine.harness import PATIENCE, ThreadMaster, start_thread_master
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_params import seed


@pytest.fixture
def refusing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadMaster]:
    """web1 on an online n2 whose every node call is refused as a prerequisite."""
    seed(tmp_path / "state")
    store = SQLiteStore(tmp_path / "state" / "config.db")
    try:
        with store.transaction() as txn:
            n2 = txn.get("node", "n2")
            n2.offline = False
            txn.update(n2)
    finally:
        store.close()

    def refuse(self: Services, node: Any, action: str, *args: Any, **kwargs: Any) -> Any:
        raise PrerequisiteError(f"disk of web1 is in use on {node.name}", node=node.name)

    monkeypatch.setattr(Services, "call", refuse)
    tm = start_thread_master(tmp_path)
    yield tm
    tm.stop()


def test_remove_surfaces_a_node_refusal_unless_failures_are_ignored(
    refusing: ThreadMaster,
) -> None:
    with pytest.raises(PrerequisiteError) as refused:
        refusing.api.run([{"op": "instance.remove", "name": "web1"}], timeout=PATIENCE)
    assert "in use on n2" in refused.value.message
    assert [i["name"] for i in refusing.api.query("instances")] == ["web1"]
    forced = refusing.api.run(
        [{"op": "instance.remove", "name": "web1", "ignore_failures": True}], timeout=PATIENCE
    )
    assert forced["cleanup_problems"] == ["disk of web1 is in use on n2"]
    assert refusing.api.query("instances") == []


def running_web1(env: OpEnv, start: bool = True) -> None:
    """web1 on n2 (each fake guest start is an interpreter start: tests start one)."""
    env.run(
        {"op": "instance.add", "name": "web1", "disk_template": "file", "disks": ["4M"],
         "primary_node": "n2", "install": False, "start": start}
    )  # fmt: skip


def guest_state(env: OpEnv) -> str | None:
    info = env.nodes.call(env.node("n2"), "instance_info", {"name": "web1", "hypervisor": "fake"})
    return None if info["instance"] is None else str(info["instance"]["state"])


def test_start_stop_and_remove_act_on_the_node_and_the_config(env: OpEnv) -> None:
    running_web1(env, start=False)
    assert env.run({"op": "instance.start", "name": "web1"})["state"] == "running"
    assert (guest_state(env), env.instance("web1").admin_state) == ("running", "up")
    assert env.run({"op": "instance.stop", "name": "web1"})["state"] == "stopped"
    assert (guest_state(env), env.instance("web1").admin_state) == (None, "down")
    env.run({"op": "instance.remove", "name": "web1", "shutdown_timeout": 0})
    assert env.store.list("instance") == [] and guest_state(env) is None
    assert [f for f in env.files("n2") if f.endswith((".img", ".json"))] == []


def test_a_guest_that_will_not_stop_keeps_its_instance_up_and_its_disks(env: OpEnv) -> None:
    running_web1(env)
    env.nodes.fail("instance_stop", PrerequisiteError("guest ignores ACPI"), node="n2")
    with pytest.raises(PrerequisiteError, match="guest ignores ACPI"):
        env.run({"op": "instance.remove", "name": "web1"})
    assert (guest_state(env), env.instance("web1").admin_state) == ("running", "up")
    assert [f for f in env.files("n2") if f.endswith(".img")] != []


def test_removing_from_an_unreachable_node_keeps_the_instance_unless_told(env: OpEnv) -> None:
    running_web1(env)
    env.nodes.offline.add("n2")
    with pytest.raises(NodeError, match="node n2") as failed:
        env.run({"op": "instance.remove", "name": "web1"})
    # Whether the guest still runs cannot be asked, so it is not marked up again.
    (problem,) = failed.value.details["rollback_failed"]
    assert problem.startswith("mark web1 up again if it still runs: node n2")
    assert env.instance("web1").admin_state == "down"
    forced = env.run({"op": "instance.remove", "name": "web1", "ignore_failures": True})
    assert [p.split(":")[0] for p in forced["cleanup_problems"]] == ["n2"]
    assert env.store.list("instance") == []
    assert [f for f in env.files("n2") if f.endswith(".img")] != []
