"""instance_replace_disks.replace_op: the op a task submits, new_secondary only when given."""

from __future__ import annotations

from ansible_collections.herd.cluster.plugins.modules.instance_replace_disks import replace_op


def test_modes_pass_through_and_new_secondary_only_when_given() -> None:
    params = {"name": "db1", "mode": "on_secondary", "new_secondary": None}
    assert replace_op(params) == {
        "op": "instance.replace_disks",
        "name": "db1",
        "mode": "on_secondary",
    }
    params = {"name": "db1", "mode": "new_secondary", "new_secondary": "n4"}
    assert replace_op(params)["new_secondary"] == "n4"
