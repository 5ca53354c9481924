"""instance.replace_disks on loopback nodes: every refusal it makes before a disk is
touched, for a ``file`` instance (no mirror) and for a DRBD instance written straight
into the config (the loopback has no DRBD, so nothing here reaches a DRBD device).

Replacing disks and changing the secondary for real (resync, reconnect, the undo that
points the primary back at the old secondary) is covered by tests/vm and
tests/engine/ops/*_lab.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.config import NodeGroup
from herd.config.model import Disk, Instance
from herd.errors import PrerequisiteError, ValidationError
from herd.ops.instance_replace_disks import InstanceReplaceDisks
from tests.engine.loopback import OpEnv


@pytest.fixture
def env3(make_env: Any) -> OpEnv:
    """n1 (master), n2 and n3; db1 mirrored between n2 (primary) and n1, stopped."""
    env = make_env(nodes=("n1", "n2", "n3"))
    primary, secondary = env.node("n2"), env.node("n1")
    disk = Disk(
        name="disk0",
        size_mib=4,
        template="drbd",
        nodes=[primary.uuid, secondary.uuid],
        params={"port": 11000, "minors": {"n2": 0, "n1": 0}, "nodes": ["n2", "n1"]},
    )
    inst = Instance(
        name="db1",
        hypervisor="fake",
        disk_template="drbd",
        primary_node=primary.uuid,
        secondary_nodes=[secondary.uuid],
        disks=[disk],
    )
    with env.store.transaction() as txn:
        txn.add(inst)
    env.locks.register("instance", [inst.uuid])
    return env


def replace(env: OpEnv, name: str = "db1", **params: Any) -> Any:
    return env.run({"op": "instance.replace_disks", "name": name, **params})


def set_object(env: OpEnv, kind: str, name: str, **fields: Any) -> None:
    with env.store.transaction() as txn:
        obj = txn.get(kind, name)
        for key, value in fields.items():
            setattr(obj, key, value)
        txn.update(obj)


def drbd_calls(env: OpEnv) -> list[tuple[str, str]]:
    return [c for c in env.nodes.calls if c[1].startswith(("drbd", "disk"))]


def test_a_file_instance_has_no_mirror_to_replace(env: OpEnv) -> None:
    env.run(
        {"op": "instance.add", "name": "web1", "disk_template": "file", "disks": ["4M"],
         "primary_node": "n2", "install": False, "start": False}
    )  # fmt: skip
    calls = len(env.nodes.calls)
    with pytest.raises(ValidationError, match=r"a drbd instance \('file' has no mirror\)") as e:
        replace(env, "web1", mode="on_secondary")
    assert e.value.details["field"] == "name"
    assert len(env.nodes.calls) == calls


@pytest.mark.parametrize("mode", [None, "everywhere"])
def test_a_missing_or_unknown_mode_is_refused_at_submit(env3: OpEnv, mode: str | None) -> None:
    with pytest.raises(ValidationError) as refused:
        replace(env3, mode=mode)
    assert refused.value.details["field"] == "ops[0].mode"
    assert env3.nodes.calls == []


def test_a_new_secondary_is_only_for_that_mode(env3: OpEnv) -> None:
    with pytest.raises(ValidationError, match="only with new_secondary") as refused:
        replace(env3, mode="on_secondary", new_secondary="n3")
    assert refused.value.details["field"] == "new_secondary"


def test_an_offline_primary_is_refused(env3: OpEnv) -> None:
    set_object(env3, "node", "n2", offline=True)
    with pytest.raises(PrerequisiteError, match="node n2 is offline: cannot replace disks"):
        replace(env3, mode="on_secondary")
    assert drbd_calls(env3) == []


def test_the_primarys_disks_are_not_replaced_under_a_running_instance(env3: OpEnv) -> None:
    set_object(env3, "instance", "db1", admin_state="up")
    with pytest.raises(PrerequisiteError, match="stop it before replacing the disks of its pri"):
        replace(env3, mode="on_primary")
    assert drbd_calls(env3) == []


def test_an_offline_secondary_cannot_get_new_disks(env3: OpEnv) -> None:
    set_object(env3, "node", "n1", offline=True)
    with pytest.raises(PrerequisiteError, match="node n1 is offline: cannot recreate disks"):
        replace(env3, mode="on_secondary")
    assert drbd_calls(env3) == []


@pytest.mark.parametrize(
    ("node", "allowed"),
    [("n1", "a node that holds no copy"), ("n2", "a node that holds no copy"), ("n9", "n9")],
)
def test_a_new_secondary_must_be_a_new_known_node(env3: OpEnv, node: str, allowed: str) -> None:
    with pytest.raises(ValidationError, match=allowed) as refused:
        replace(env3, mode="new_secondary", new_secondary=node)
    assert refused.value.details["field"] == "new_secondary"
    assert drbd_calls(env3) == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"offline": True}, "node n3 is offline"), ({"drained": True}, "node n3 is drained")],
)
def test_an_unfit_new_secondary_is_refused(
    env3: OpEnv, fields: dict[str, bool], reason: str
) -> None:
    set_object(env3, "node", "n3", **fields)
    with pytest.raises(PrerequisiteError, match=reason):
        replace(env3, mode="new_secondary", new_secondary="n3")
    assert drbd_calls(env3) == []


def test_a_new_secondary_in_another_group_is_refused(env3: OpEnv) -> None:
    other = NodeGroup(name="other")
    with env3.store.transaction() as txn:
        txn.add(other)
    set_object(env3, "node", "n3", group=other.uuid)
    with pytest.raises(PrerequisiteError, match="node n3 is in another node group"):
        replace(env3, mode="new_secondary", new_secondary="n3")


@pytest.mark.parametrize(
    ("params", "locked"),
    [
        ({"mode": "on_secondary"}, ["n1", "n2"]),
        ({"mode": "new_secondary", "new_secondary": "n3"}, ["n1", "n2", "n3"]),
        ({"mode": "new_secondary"}, ["n1", "n2", "n3"]),
    ],
)
def test_the_nodes_locked_are_the_mirrors_and_the_candidates(
    env3: OpEnv, params: dict[str, Any], locked: list[str]
) -> None:
    """Without a named new secondary the allocator may pick any node: all are locked."""
    op = InstanceReplaceDisks({"name": "db1", **params})
    spec = op.declare_locks("node", env3.context())
    assert spec is not None and not spec.shared
    assert sorted(env3.store.get("node", uuid).name for uuid in spec.names) == locked
