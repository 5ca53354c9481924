"""node.evacuate against three real lab nodes (fake hypervisor guests are real processes):
a running and a stopped shared-file instance and a running file instance leave node A by
migration, failover and disk copy, each in a job of its own spawned by the evacuation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.errors import PrerequisiteError
from tests.engine.harness import ThreadMaster
from tests.engine.ops.labsupport import (
    BLANK,
    disk_images,
    fails_cleanly,
    fake_cluster,
    guest_pids,
    instance,
    lab_node,
    run,
)

pytestmark = pytest.mark.lab

INSTANCES = {"cold1": "sharedfile", "copy1": "file", "live1": "sharedfile"}


@contextlib.contextmanager
def evacuation_cluster(lab: Any, base: Path) -> Iterator[ThreadMaster]:
    """A cluster on three lab nodes with the three instances on node A (not the master)."""
    a = lab.nodes[1]
    with fake_cluster(lab, base, "evac") as running:
        for name, template in INSTANCES.items():
            run(
                running,
                "instance.add",
                name=name,
                disk_template=template,
                disks=["16M"],
                os=BLANK,
                primary_node=a.name,
                start=name != "cold1",
            )
        yield running


@pytest.fixture(scope="module")
def evac(
    lab_cluster: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ThreadMaster, Any]]:
    with evacuation_cluster(lab_cluster, tmp_path_factory.mktemp("master")) as running:
        yield running, lab_cluster


def test_an_undrained_node_is_refused(evac: Any) -> None:
    running, lab = evac
    err = fails_cleanly(running, PrerequisiteError, "node.evacuate", name=lab.nodes[1].name)
    assert "not drained" in err.message and "drain: true" in err.message
    fails_cleanly(running, PrerequisiteError, "node.evacuate", name=lab.nodes[0].name, drain=True)


def test_dry_run_shows_the_plan_and_changes_nothing(evac: Any) -> None:
    running, lab = evac
    a = lab.nodes[1]
    before, jobs_before = running.api.dump(), running.api.jobs()
    result = run(running, "node.evacuate", name=a.name, drain=True, dry_run=True)
    assert result["changed"] is False and result["drained_now"] is True
    assert result["job_ids"] == [] and result["failed"] == {}
    assert sorted(m["instance"] for m in result["plan"]) == sorted(INSTANCES)
    assert {m["source"] for m in result["plan"]} == {a.name}
    assert a.name not in {m["target"] for m in result["plan"]}
    steps = {j["instance"]: [o["op"] for o in j["ops"]] for j in result["jobs"]}
    assert steps == {
        "cold1": ["instance.failover"],
        "copy1": ["instance.move"],
        "live1": ["instance.migrate"],
    }
    assert running.api.dump() == before
    assert len(running.api.jobs()) == len(jobs_before) + 1


def test_evacuate_moves_every_instance_in_its_own_job(evac: Any) -> None:
    running, lab = evac
    a = lab.nodes[1]
    parent = running.api.submit(
        [{"op": "node.evacuate", "name": a.name, "drain": True}],
        reason=[["test", "maintenance 123"]],
    )
    doc = running.api.wait(parent, timeout=120)
    assert doc["status"] == "success", doc.get("error")
    result = doc["ops"][0]["result"]
    assert result["changed"] is True and len(result["job_ids"]) == 3
    assert running.api.query("nodes", [a.name])[0]["drained"] is True
    for job in result["jobs"]:
        child = running.api.wait(job["job_id"], timeout=120)
        assert child["status"] == "success", (job["instance"], child.get("error"))
        assert child["reason"][0][:2] == ["test", "maintenance 123"]
        assert any(f"spawned by job {parent}" in str(entry) for entry in child["reason"])
        (op,) = child["ops"]
        if job["instance"] == "live1":
            assert op["op"] == "instance.migrate" and op["result"]["live"] is True
    for name in INSTANCES:
        assert instance(running, name)["primary_node_name"] != a.name
        assert guest_pids(a, name) == []
    for name in ("live1", "copy1"):
        target = lab_node(lab, instance(running, name)["primary_node_name"])
        assert len(guest_pids(target, name)) == 1
    cold = instance(running, "cold1")
    assert cold["admin_state"] == "down"
    assert guest_pids(lab_node(lab, cold["primary_node_name"]), "cold1") == []
    assert not disk_images(a, instance(running, "copy1"))


def test_evacuating_again_has_nothing_to_do(evac: Any) -> None:
    running, lab = evac
    before, jobs_before = running.api.dump(), running.api.jobs()
    result = run(running, "node.evacuate", name=lab.nodes[1].name)
    assert result["changed"] is False
    assert result["plan"] == [] and result["jobs"] == [] and result["job_ids"] == []
    assert running.api.dump() == before
    assert len(running.api.jobs()) == len(jobs_before) + 1
