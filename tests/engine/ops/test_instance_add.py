"""instance.add on loopback nodes (real node agent, fake hypervisor, file storage): what a
create makes, and that a create failing anywhere leaves no disk, guest or config entry.

The lab version with real SSH and qemu is test_instance_add_lab.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import NodeError, PrerequisiteError, ValidationError
from herd.ops.instance_add import InstanceAdd
from tests.engine.loopback import OpEnv
from tests.engine.node.os.helpers import make_os


def add(**changes: Any) -> InstanceAdd:
    """A small file-backed instance on n2, without an OS install unless asked."""
    return InstanceAdd(
        {
            "name": "web1",
            "disk_template": "file",
            "disks": ["8M", "4M"],
            "primary_node": "n2",
            "install": False,
            "start": False,
            **changes,
        }
    )


def images(env: OpEnv, node: str) -> list[str]:
    return [f for f in env.files(node) if f.startswith("file-storage/")]


def guests(env: OpEnv, node: str) -> list[str]:
    """Fake-hypervisor state files: a guest the node still knows of (logs are kept)."""
    return [f for f in env.files(node) if f.startswith("hv/") and f.endswith(".json")]


def assert_nothing_left(env: OpEnv) -> None:
    assert env.store.list("instance") == []
    for node in ("n1", "n2"):
        assert images(env, node) == [] and guests(env, node) == [], node


def test_a_created_instance_has_its_disks_on_its_node_and_in_the_config(env: OpEnv) -> None:
    result = env.run(add())
    inst = env.instance("web1")
    assert result == {
        "changed": True,
        "instance": "web1",
        "uuid": inst.uuid,
        "primary_node": "n2",
        "secondary_node": None,
    }
    assert (inst.primary_node, inst.admin_state) == (env.node("n2").uuid, "down")
    assert [d.size_mib for d in inst.disks] == [8, 4]
    assert images(env, "n2") == sorted(
        f"file-storage/{inst.uuid}/disk{i}-{d.uuid}.img" for i, d in enumerate(inst.disks)
    )
    assert images(env, "n1") == [] and guests(env, "n2") == []


def test_a_started_instance_runs_as_a_guest_on_its_node(env: OpEnv) -> None:
    env.run(add(start=True, disks=["4M"]))
    assert env.instance("web1").admin_state == "up"
    info = env.nodes.call(env.node("n2"), "instance_info", {"name": "web1", "hypervisor": "fake"})
    assert info["instance"]["state"] == "running"


def test_the_os_create_script_runs_on_the_new_disks(env: OpEnv) -> None:
    make_os(env.node_dir("n2") / "os", "tiny", scripts={"create": 'echo "$DISK_COUNT" >&2'})
    env.run(add(install=True, os="tiny"))
    assert ("n2", "os_create") in env.nodes.calls
    assert len(images(env, "n2")) == 2


@pytest.mark.parametrize("action", ["disk_create", "disk_assemble", "os_create", "instance_start"])
def test_a_node_failure_at_any_step_is_undone_entirely(env: OpEnv, action: str) -> None:
    make_os(env.node_dir("n2") / "os", "tiny")
    env.nodes.fail(action, NodeError(f"{action} broke"), node="n2")
    with pytest.raises(NodeError, match=f"node n2: {action} broke"):
        env.run(add(install=True, os="tiny", start=True))
    assert_nothing_left(env)
    assert not [row for row in env.locks.info() if row["level"] == "instance"]


def test_a_failing_os_script_is_undone_entirely(env: OpEnv) -> None:
    """The real agent path: the script exits 1 and its log tail reaches the error."""
    make_os(env.node_dir("n2") / "os", "tiny", scripts={"create": "echo no room >&2; exit 1"})
    with pytest.raises(NodeError, match="node n2") as failed:
        env.run(add(install=True, os="tiny"))
    assert "no room" in str(failed.value)
    assert_nothing_left(env)


def test_an_unreachable_primary_is_refused_before_anything_is_made(env: OpEnv) -> None:
    env.nodes.offline.add("n2")
    with pytest.raises(PrerequisiteError, match="n2"):
        env.run(add())
    assert_nothing_left(env)
    assert ("n2", "disk_create") not in env.nodes.calls


def test_the_allocator_places_on_a_reachable_node(env: OpEnv) -> None:
    env.nodes.offline.add("n1")
    assert env.run(add(primary_node=None))["primary_node"] == "n2"


def test_a_bad_template_is_refused_naming_the_field(env: OpEnv) -> None:
    with pytest.raises(ValidationError, match=r"ops\[0\]\.disk_template"):
        env.run({"op": "instance.add", "name": "web1", "disk_template": "floppy"})
    assert env.nodes.calls == []
    assert_nothing_left(env)
