"""instance.plan: which ops (in which order) a task submits, given the instance the master
reports, and which declarations it refuses instead of ignoring; and, against a real master,
a result in the task's terms: refusals naming options, nodes by name, pending restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdApiError
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import option_field
from ansible_collections.herd.cluster.plugins.modules import instance
from ansible_collections.herd.cluster.plugins.modules.instance import (
    pending_restart,
    plan,
    size_mib,
)

from herd.config import Cluster, Instance, Node, NodeGroup
from tests.ansible.unit.plugins.modules.test_tag import store_objects
from tests.engine.harness import PATIENCE, ThreadMaster, start_thread_master

WEB1 = {
    "name": "web1",
    "uuid": "i-uuid",
    "admin_state": "up",
    "disk_template": "file",
    "os": "herd-image+tiny",
    "hypervisor": "fake",
    "beparams": {"memory": 64},
    "hvparams": {"boot_order": "disk"},
    "osparams": {"size": "small"},
    "tags": ["web"],
    "primary_node_name": "n1",
    "secondary_node_names": [],
    "disks": [
        {"uuid": "d0", "name": "disk0", "size_mib": 64, "mode": "rw", "template": "file"},
        {"uuid": "d1", "name": "data", "size_mib": 128, "mode": "rw", "template": "file"},
    ],
    "nics": [
        {
            "uuid": "c0",
            "name": "nic0",
            "mac": "aa:00:00:00:00:01",
            "ip": None,
            "mode": "routed",
            "link": "br1",
            "serial": 3,
        }
    ],
}
DB1 = {
    **WEB1,
    "name": "db1",
    "disk_template": "drbd",
    "primary_node_name": "n1",
    "secondary_node_names": ["n2"],
}

OPTIONS = (
    "disk_template",
    "disks",
    "nics",
    "os",
    "install",
    "hypervisor",
    "hvparams",
    "osparams",
    "memory",
    "vcpus",
    "tags",
    "primary_node",
    "secondary_node",
    "iallocator",
    "opportunistic",
    "shutdown_timeout",
)


def params(**given: Any) -> dict[str, Any]:
    """Module params as AnsibleModule hands them over: every option present, defaults set."""
    base: dict[str, Any] = dict.fromkeys(OPTIONS)
    defaults = {
        "name": "web1",
        "state": "present",
        "allow_conversion": False,
        "allow_migrate": True,
        "allow_failover": False,
        "ignore_consistency": False,
        "reboot_type": "hard",
    }
    return {**base, **defaults, **given}


def refused(current: dict[str, Any] | None, field: str, **given: Any) -> HerdApiError:
    with pytest.raises(HerdApiError) as info:
        plan(current, params(**given))
    assert info.value.kind == "ValidationError"
    assert info.value.details["field"] == field
    assert str(info.value).startswith(f"ValidationError: {field}: ")
    return info.value


# --- creation and removal ----------------------------------------------------------------


def test_create_passes_declared_options_through_and_starts_only_for_running() -> None:
    declared = {
        "disk_template": "drbd",
        "disks": ["1G", {"size": 512, "mode": "ro"}],
        "os": "herd-image+tiny",
        "primary_node": "n1",
        "secondary_node": "n2",
        "opportunistic": True,
        "iallocator": "hail",
        "memory": 256,
    }
    ops, diff = plan(None, params(state="running", **declared))
    assert ops == [{"op": "instance.add", "name": "web1", **declared, "start": True}]
    assert diff == {"before": {}, "after": {"name": "web1", **declared, "state": "running"}}
    ops, diff = plan(None, params(state="present", disk_template="file", disks=[64]))
    assert ops[0]["start"] is False and diff["after"]["state"] == "stopped"
    assert plan(None, params(state="stopped", disk_template="file"))[0][0]["start"] is False


def test_create_without_disk_template_is_refused_before_submitting() -> None:
    refused(None, "disk_template", state="running", disks=[64])


def test_absent() -> None:
    assert plan(None, params(state="absent")) == ([], {})
    ops, diff = plan(WEB1, params(state="absent", shutdown_timeout=5))
    assert ops == [{"op": "instance.remove", "name": "web1", "shutdown_timeout": 5}]
    assert diff == {"before": WEB1, "after": {}}


# --- idempotency and changes in place ------------------------------------------------------


def test_matching_instance_needs_nothing() -> None:
    same = params(
        state="running",
        disk_template="file",
        os="herd-image+tiny",
        memory=64,
        tags=["web"],
        hvparams={"boot_order": "disk"},
        osparams={"size": "small"},
        disks=["64M", {"size": "128M", "name": "data"}],
        nics=[{"mode": "routed"}],
        primary_node="n1",
    )
    assert plan(WEB1, same) == ([], {})


def test_os_parameters_compare_as_the_text_the_master_stores() -> None:
    # The master keeps OSP_* values as text: a YAML 8 or true must not be a change forever.
    stored = {**WEB1, "osparams": {"size": "small", "count": "8", "fast": "true"}}
    assert plan(stored, params(osparams={"count": 8, "fast": True})) == ([], {})
    ops, _ = plan(stored, params(osparams={"count": 9}))
    assert ops[0]["osparams"] == {"size": "small", "count": "9", "fast": "true"}


def test_changes_go_into_one_modify_and_the_diff_names_exactly_them() -> None:
    ops, diff = plan(WEB1, params(memory=96, tags=["prod", "web"], vcpus=None))
    assert ops == [{"op": "instance.modify", "name": "web1", "memory": 96, "tags": ["prod", "web"]}]
    assert diff == {
        "before": {"memory": 64, "tags": ["web"]},
        "after": {"memory": 96, "tags": ["prod", "web"]},
    }


def test_tag_order_is_not_a_change() -> None:
    assert plan({**WEB1, "tags": ["b", "a"]}, params(tags=["a", "b"])) == ([], {})


def test_dict_parameters_pin_only_declared_keys_and_submit_the_merged_whole() -> None:
    ops, diff = plan(WEB1, params(hvparams={"kernel_path": "/vmlinuz"}, osparams={"size": "big"}))
    assert ops == [
        {
            "op": "instance.modify",
            "name": "web1",
            "hvparams": {"boot_order": "disk", "kernel_path": "/vmlinuz"},
            "osparams": {"size": "big"},
        }
    ]
    assert diff["before"] == {"hvparams": {"boot_order": "disk"}, "osparams": {"size": "small"}}


def test_an_inherited_memory_is_pinned_once_then_matches() -> None:
    inherited = {**WEB1, "beparams": {}}
    ops, diff = plan(inherited, params(memory=64))
    assert ops == [{"op": "instance.modify", "name": "web1", "memory": 64}]
    assert diff == {"before": {"memory": None}, "after": {"memory": 64}}


def test_nics_keep_their_current_values_for_keys_not_declared() -> None:
    ops, diff = plan(WEB1, params(nics=[{"ip": "192.0.2.5"}, {"link": "br2"}]))
    kept = {"mac": "aa:00:00:00:00:01", "name": "nic0", "mode": "routed", "link": "br1"}
    after = [{**kept, "ip": "192.0.2.5"}, {"link": "br2"}]
    assert ops == [{"op": "instance.modify", "name": "web1", "nics": after}]
    assert diff == {"before": {"nics": [{**kept, "ip": None}]}, "after": {"nics": after}}


def test_fewer_declared_nics_remove_the_rest() -> None:
    ops, _ = plan(WEB1, params(nics=[]))
    assert ops == [{"op": "instance.modify", "name": "web1", "nics": []}]


def test_a_larger_disk_is_grown_in_its_own_op_after_the_modify() -> None:
    ops, diff = plan(WEB1, params(disks=["64M", "1G"], memory=128))
    assert ops == [
        {"op": "instance.modify", "name": "web1", "memory": 128},
        {"op": "instance.modify", "name": "web1", "disk_grow": {"index": 1, "size": 1024}},
    ]
    assert diff == {
        "before": {"memory": 64, "disks": [64, 128]},
        "after": {"memory": 128, "disks": [64, 1024]},
    }


def test_a_smaller_disk_fails_naming_the_disk() -> None:
    err = refused(WEB1, "disks[1].size", disks=[64, "100M"])
    assert "never shrink" in err.message and "128 MiB" in err.message


@pytest.mark.parametrize(
    ("disks", "field"),
    [
        ([64], "disks"),
        ([64, 128, 256], "disks"),
        ([64, {"size": 128, "mode": "ro"}], "disks[1].mode"),
        ([{"name": "root"}, 128], "disks[0].name"),
        ([64, {"size": 128, "type": "ssd"}], "disks[1].type"),
        ([64, "12X"], "disks[1].size"),
        ([64, True], "disks[1].size"),
        ([64, "0.5M"], "disks[1].size"),
    ],
)
def test_disk_declarations_that_cannot_apply_are_refused(disks: list[Any], field: str) -> None:
    refused(WEB1, field, disks=disks)


@pytest.mark.parametrize(
    ("text", "mib"),
    [(64, 64), ("64", 64), ("512M", 512), ("2G", 2048), ("2GiB", 2048), ("1.5T", 1572864)],
)
def test_sizes_read_like_instance_add_reads_them(text: Any, mib: int) -> None:
    assert size_mib(text, "disks[0].size") == mib


@pytest.mark.parametrize(
    ("field", "value"),
    [("disk_template", "drbd"), ("os", "debian+default"), ("hypervisor", "kvm")],
)
def test_creation_only_option_that_differs_fails_instead_of_being_ignored(
    field: str, value: str
) -> None:
    err = refused(WEB1, field, **{field: value})
    assert "only set when the instance is created" in err.message


# --- run state ------------------------------------------------------------------------------


def test_run_states() -> None:
    stopped = {**WEB1, "admin_state": "down"}
    assert plan(WEB1, params(state="running")) == ([], {})
    assert plan(stopped, params(state="stopped")) == ([], {})
    assert plan(stopped, params(state="present")) == ([], {})
    ops, diff = plan(stopped, params(state="running"))
    assert ops == [{"op": "instance.start", "name": "web1"}]
    assert diff == {"before": {"state": "stopped"}, "after": {"state": "running"}}
    ops, diff = plan(WEB1, params(state="stopped", shutdown_timeout=0))
    assert ops == [{"op": "instance.stop", "name": "web1", "shutdown_timeout": 0}]
    assert diff == {"before": {"state": "running"}, "after": {"state": "stopped"}}


def test_restarted_reboots_a_running_instance_every_time_and_starts_a_stopped_one() -> None:
    ops, diff = plan(WEB1, params(state="restarted", reboot_type="soft"))
    assert ops == [{"op": "instance.reboot", "name": "web1", "type": "soft"}] and diff == {}
    ops, _ = plan({**WEB1, "admin_state": "down"}, params(state="restarted"))
    assert ops == [{"op": "instance.start", "name": "web1"}]


def test_restart_comes_after_the_changes_it_should_apply() -> None:
    ops, _ = plan(WEB1, params(state="restarted", memory=128))
    assert [op.get("memory") or op["op"] for op in ops] == [128, "instance.reboot"]


# --- moving ---------------------------------------------------------------------------------


def test_a_different_primary_is_reached_by_live_migration_by_default() -> None:
    ops, diff = plan(WEB1, params(primary_node="n3"))
    assert ops == [{"op": "instance.migrate", "name": "web1", "target_node": "n3"}]
    assert diff == {"before": {"primary_node": "n1"}, "after": {"primary_node": "n3"}}


def test_failover_only_when_allowed_and_migration_is_not() -> None:
    ops, _ = plan(
        WEB1,
        params(
            primary_node="n3",
            allow_migrate=False,
            allow_failover=True,
            ignore_consistency=True,
            shutdown_timeout=10,
        ),
    )
    assert ops == [
        {
            "op": "instance.failover",
            "name": "web1",
            "target_node": "n3",
            "ignore_consistency": True,
            "shutdown_timeout": 10,
        }
    ]
    err = refused(WEB1, "primary_node", primary_node="n3", allow_migrate=False)
    assert "allow_migrate or allow_failover" in err.message


def test_move_order_stop_first_start_last() -> None:
    stopped = {**WEB1, "admin_state": "down"}
    ops, _ = plan(WEB1, params(state="stopped", primary_node="n3", memory=32))
    assert [op["op"] for op in ops] == ["instance.stop", "instance.migrate", "instance.modify"]
    ops, _ = plan(stopped, params(state="running", primary_node="n3"))
    assert [op["op"] for op in ops] == ["instance.migrate", "instance.start"]


def test_drbd_move_swaps_the_secondary_and_other_secondaries_are_refused() -> None:
    ops, diff = plan(DB1, params(name="db1", primary_node="n2", secondary_node="n1"))
    assert ops == [{"op": "instance.migrate", "name": "db1", "target_node": "n2"}]
    assert diff == {
        "before": {"primary_node": "n1", "secondary_node": "n2"},
        "after": {"primary_node": "n2", "secondary_node": "n1"},
    }
    assert plan(DB1, params(name="db1", primary_node="n1", secondary_node="n2")) == ([], {})
    refused(DB1, "secondary_node", name="db1", secondary_node="n3")
    refused(WEB1, "secondary_node", secondary_node="n2")


def test_options_that_only_matter_at_creation_are_not_compared_later() -> None:
    given = params(install=False, iallocator="hail", opportunistic=True)
    assert plan(WEB1, given) == ([], {})


# --- disk template conversion --------------------------------------------------------------


def test_a_different_disk_template_converts_only_when_allowed() -> None:
    app1 = {**WEB1, "name": "app1", "admin_state": "down", "disk_template": "plain"}
    err = refused(app1, "disk_template", name="app1", disk_template="drbd", secondary_node="n2")
    assert "allow_conversion" in err.message
    ops, diff = plan(
        app1,
        params(name="app1", disk_template="drbd", secondary_node="n2", allow_conversion=True),
    )
    assert ops == [
        {"op": "instance.modify", "name": "app1", "disk_template": "drbd", "secondary_node": "n2"}
    ]
    assert diff == {
        "before": {"disk_template": "plain", "secondary_node": None},
        "after": {"disk_template": "drbd", "secondary_node": "n2"},
    }
    converted = {**app1, "disk_template": "drbd", "secondary_node_names": ["n2"]}
    again = params(name="app1", disk_template="drbd", secondary_node="n2", allow_conversion=True)
    assert plan(converted, again) == ([], {})


def test_conversion_to_plain_comes_after_the_stop_and_before_the_start() -> None:
    db1 = {**DB1, "admin_state": "up"}
    given = params(name="db1", state="stopped", disk_template="plain", allow_conversion=True)
    ops, diff = plan(db1, given)
    assert ops == [
        {"op": "instance.stop", "name": "db1"},
        {"op": "instance.modify", "name": "db1", "disk_template": "plain"},
    ]
    assert diff["after"] == {"state": "stopped", "disk_template": "plain", "secondary_node": None}
    restart = params(name="db1", state="restarted", disk_template="plain", allow_conversion=True)
    stopped = {**db1, "admin_state": "down"}
    ops, _ = plan(stopped, restart)
    assert [op["op"] for op in ops] == ["instance.modify", "instance.start"]


@pytest.fixture
def master(tmp_path: Path) -> Iterator[ThreadMaster]:
    """Cluster c1 (fake hypervisor, file disks), node n1 and web1 running on it: a modify
    of a running instance's memory touches only the config, so no node has to exist."""
    group = NodeGroup(name="default")
    n1 = Node(name="n1", primary_ip="192.0.2.1", group=group.uuid)
    web1 = Instance(
        name="web1",
        primary_node=n1.uuid,
        hypervisor="fake",
        disk_template="file",
        admin_state="up",
        beparams={"memory": 64},
    )
    cluster = Cluster(
        name="c1", master_node="n1", enabled_hypervisors=["fake"], enabled_disk_templates=["file"]
    )
    store_objects(tmp_path / "state", [cluster, group, n1, web1])
    running = start_thread_master(tmp_path)
    yield running
    running.stop()


def run(capsys: pytest.CaptureFixture[str], master: ThreadMaster, **args: Any) -> dict[str, Any]:
    module_args = {"socket": str(master.socket), "wait_timeout": int(PATIENCE * 4), **args}
    with patch_module_args(module_args), pytest.raises(SystemExit):
        instance.main()
    return json.loads(capsys.readouterr().out)


def test_a_refused_create_names_the_option_not_the_op_field(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    result = run(capsys, master, name="web2", disk_template="file", disks=["64M"], memory=0)
    assert result["failed"] is True
    assert result["error"]["details"] == {
        "field": "memory",
        "value": 0,
        "allowed": result["error"]["details"]["allowed"],
    }
    assert "'memory'" in result["msg"]
    assert "ops[" not in result["msg"] and "HTTP" not in result["msg"]


def test_a_refused_modify_names_the_dict_option_key(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    result = run(capsys, master, name="web1", hvparams={"no_such_param": 5})
    assert result["error"]["details"]["field"] == "hvparams.no_such_param"
    assert "ops[" not in result["msg"]


def test_the_result_names_the_nodes_and_keeps_their_uuids_beside(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    n1 = master.api.query("nodes")[0]
    found = run(capsys, master, name="web1")["instance"]
    assert (found["primary_node"], found["primary_node_uuid"]) == ("n1", n1["uuid"])
    assert (found["secondary_nodes"], found["secondary_node_uuids"]) == ([], [])


def test_a_change_the_running_instance_applies_at_restart_is_reported(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    result = run(capsys, master, name="web1", memory=128)
    assert (result["changed"], result["pending_restart"]) == (True, ["memory"])
    assert run(capsys, master, name="web1", memory=128)["pending_restart"] == []


def modify_job(*later: dict[str, Any]) -> dict[str, Any]:
    modify = {"op": "instance.modify", "params": {}, "result": {"pending_restart": ["vcpus"]}}
    return {"ops": [modify, *later]}


@pytest.mark.parametrize(
    ("later", "pending"),
    [
        ((), ["vcpus"]),
        (({"op": "instance.reboot", "params": {"type": "hard"}},), []),
        (({"op": "instance.reboot", "params": {"type": "soft"}},), ["vcpus"]),
        (({"op": "instance.start", "params": {}},), []),
    ],
)
def test_only_a_restart_of_the_vm_process_applies_what_waits(
    later: tuple[dict[str, Any], ...], pending: list[str]
) -> None:
    assert pending_restart(modify_job(*later)) == pending
    assert pending_restart(None) == []


@pytest.mark.parametrize(
    ("op", "field", "option"),
    [
        ({"op": "instance.migrate", "target_node": "n9"}, "target_node", "primary_node"),
        ({"op": "instance.reboot", "type": "x"}, "type", "reboot_type"),
        (
            {"op": "instance.modify", "disk_grow": {"index": 1, "size": 9}},
            "disk_grow.size",
            "disks[1].size",
        ),
        ({"op": "instance.add", "memory": 0}, "memory", "memory"),
    ],
)
def test_renamed_op_fields_map_to_the_options(op: dict[str, Any], field: str, option: str) -> None:
    assert option_field(field, op, instance.OP_FIELDS) == option
