"""herd.cluster.instance and instance_info against a real master and real lab nodes.

The instances are real: fake-hypervisor guests are processes inside the lab nodes'
namespaces, disks are image files with our herd-image OS installed. What the master holds
(and which guest runs where) is read independently of Ansible's answer, so "changed
nothing" and "moved" are checked against the cluster itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.integration.runner import Run, lab_nodes, local_host, play
from tests.engine.harness import ThreadMaster, cluster_on_lab
from tests.engine.ops.labsupport import guest_pids, install_os

pytestmark = pytest.mark.lab

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "instances.yml"

Env = tuple[ThreadMaster, Any, Path]


@pytest.fixture(scope="module")
def instance_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A two-node cluster with file and shared-file disks and the OS on every node."""
    with cluster_on_lab(
        tmp_path_factory.mktemp("master"), "i", 2, "inst", enabled_hypervisors=["fake"],
        enabled_disk_templates=["file", "sharedfile"],
    ) as (running, lab):  # fmt: skip
        install_os(*lab.nodes)
        yield running, lab, tmp_path_factory.mktemp("plays")


def instances_play(
    collections: Path, env: Env, name: str, cmdline: str = "", **extravars: Any
) -> Run:
    running, lab, work = env
    inventory = {"all": {"hosts": {"localhost": local_host()}}}
    variables = {"herd_socket": str(running.socket), "herd_lab_nodes": lab_nodes(lab), **extravars}
    return play(collections, work / name, inventory, PLAYBOOK, variables, cmdline)


def instance(running: ThreadMaster, name: str) -> dict[str, Any]:
    (found,) = running.api.query("instances", [name])
    return found


def jobs(running: ThreadMaster) -> list[dict[str, Any]]:
    return running.api.request("GET", "/v1/jobs")["items"]


def test_create_running_then_a_second_run_changes_nothing(
    collections: Path, instance_env: Env
) -> None:
    running, lab, _ = instance_env
    n1, n2 = lab.nodes
    first = instances_play(collections, instance_env, "create")
    assert first.rc == 0 and first.failed() == 0, first.failed_tasks
    assert first.changed() == 2
    web = instance(running, "web1")
    assert web["admin_state"] == "up" and web["primary_node_name"] == n2.name
    assert web["beparams"]["memory"] == 64 and web["tags"] == ["web"]
    assert len(guest_pids(n2, "web1")) == 1 and len(guest_pids(n1, "db1")) == 1
    assert first.result("Web")["job_ids"] and first.result("Web")["job_log"]
    info = first.result("Read back")
    assert [i["name"] for i in info["instances"]] == ["db1", "web1"]
    assert info["instances"][0]["primary_node_name"] == n1.name

    before = running.api.dump()
    second = instances_play(collections, instance_env, "again")
    assert second.rc == 0 and second.changed() == 0
    assert not second.result("Web")["job_ids"] and not second.result("Db")["job_ids"]
    assert running.api.dump() == before


def test_memory_and_tags_change_and_the_diff_shows_exactly_them(
    collections: Path, instance_env: Env
) -> None:
    running, _, _ = instance_env
    instances_play(collections, instance_env, "setup-change")
    change = {"herd_web_memory": 96, "herd_web_tags": ["web", "prod"]}
    run = instances_play(collections, instance_env, "change", "--diff", **change)
    assert run.rc == 0 and run.changed() == 1
    assert run.result("Web")["diff"] == {
        "before": {"memory": 64, "tags": ["web"]},
        "after": {"memory": 96, "tags": ["web", "prod"]},
    }
    web = instance(running, "web1")
    assert web["beparams"]["memory"] == 96 and sorted(web["tags"]) == ["prod", "web"]
    again = instances_play(collections, instance_env, "change-again", **change)
    assert again.rc == 0 and again.changed() == 0


def test_stopped_then_check_mode_start_changes_nothing(
    collections: Path, instance_env: Env
) -> None:
    running, lab, _ = instance_env
    n2 = lab.nodes[1]
    instances_play(collections, instance_env, "setup-stop")
    stop = instances_play(collections, instance_env, "stop", herd_web_state="stopped")
    assert stop.rc == 0 and stop.changed() == 1
    assert instance(running, "web1")["admin_state"] == "down"
    assert guest_pids(n2, "web1") == []

    before, jobs_before = running.api.dump(), jobs(running)
    check = instances_play(collections, instance_env, "check-start", "--check --diff")
    assert check.rc == 0 and check.changed() == 1
    assert check.result("Web")["diff"] == {
        "before": {"state": "stopped"},
        "after": {"state": "running"},
    }
    assert running.api.dump() == before and jobs(running) == jobs_before
    assert guest_pids(n2, "web1") == []


def test_primary_node_moves_a_shared_disk_instance_by_migration(
    collections: Path, instance_env: Env
) -> None:
    running, lab, _ = instance_env
    n1, n2 = lab.nodes
    instances_play(collections, instance_env, "setup-move")
    assert instance(running, "db1")["primary_node_name"] == n1.name
    move = instances_play(collections, instance_env, "move", "--diff", herd_db_node=n2.name)
    assert move.rc == 0 and move.changed() == 1
    db = move.result("Db")
    assert db["diff"] == {"before": {"primary_node": n1.name}, "after": {"primary_node": n2.name}}
    assert any("migrating db1" in entry["message"] for entry in db["job_log"])
    assert db["instance"]["primary_node_name"] == n2.name
    assert guest_pids(n1, "db1") == [] and len(guest_pids(n2, "db1")) == 1


@pytest.mark.parametrize(
    ("extravars", "field"),
    [
        ({"herd_web_name": "web2", "herd_web_template": "floppy"}, "disk_template"),
        ({"herd_web_disks": ["16M"]}, "disks[0].size"),
    ],
)
def test_bad_input_fails_naming_the_field_and_changes_nothing(
    collections: Path, instance_env: Env, extravars: dict[str, Any], field: str
) -> None:
    running, _, _ = instance_env
    instances_play(collections, instance_env, f"setup-bad-{field}")
    before = running.api.dump()
    run = instances_play(collections, instance_env, f"bad-{field}", **extravars)
    assert run.rc != 0 and run.failed_tasks == ["Web"]
    result = run.result("Web")
    assert field in result["msg"] and result["changed"] is False
    assert result["error"]["type"] == "ValidationError"
    assert running.api.dump() == before


def test_absent_removes_the_instances_and_their_guests(
    collections: Path, instance_env: Env
) -> None:
    running, lab, _ = instance_env
    instances_play(collections, instance_env, "setup-absent")
    gone = {"herd_web_state": "absent", "herd_db_state": "absent"}
    run = instances_play(collections, instance_env, "absent", **gone)
    assert run.rc == 0 and run.changed() == 2
    assert running.api.query("instances") == []
    assert all(guest_pids(node, name) == [] for node in lab.nodes for name in ("web1", "db1"))
    assert run.result("Read back")["instances"] == []
    again = instances_play(collections, instance_env, "absent-again", **gone)
    assert again.rc == 0 and again.changed() == 0


def test_live_info_and_replace_disks(collections: Path, instance_env: Env) -> None:
    """Live state comes from the node; replace-disks is always a change in check mode and
    a clean failure (nothing submitted that ran) on an instance without a mirror."""
    running, _, work = instance_env
    instances_play(collections, instance_env, "setup-live")
    before = running.api.dump()
    run = play(
        collections,
        work / "live",
        {"all": {"hosts": {"localhost": local_host()}}},
        PLAYBOOK.parent / "live_replace.yml",
        {"herd_socket": str(running.socket)},
    )
    live = run.result("Live")
    assert live["missing"] == ["web9"] and live["changed"] is False
    (web,) = live["instances"]
    assert web["oper_state"] == "running" and web["live_errors"] == []
    assert "drbd" not in web
    check = run.result("Replace check")
    assert check["changed"] is True and check["job_ids"] == []
    assert run.failed_tasks == ["Replace"]
    failed = run.result("Replace")
    assert failed["error"]["type"] == "ValidationError" and failed["changed"] is False
    assert "drbd instance" in failed["msg"]
    assert running.api.dump() == before
