"""playbooks/instance_create.yml against a real master and two lab nodes.

Creates run side by side with opportunistic retries; a second run changes nothing; a
create an interrupted run left in the master's queue is adopted, not submitted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.integration.runner import REPO, Run, local_host, play
from tests.engine.harness import ThreadMaster, cluster_on_lab, poll

pytestmark = pytest.mark.lab

PLAYBOOK = REPO / "playbooks" / "instance_create.yml"
HOLDER = "test-holder"
Env = tuple[ThreadMaster, Any, Path]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with cluster_on_lab(
        tmp_path_factory.mktemp("master"), "c", 2, "create", enabled_hypervisors=["fake"],
        enabled_disk_templates=["file"], beparams={"memory": 32},
    ) as (running, lab):  # fmt: skip
        yield running, lab, tmp_path_factory.mktemp("plays")


def spec(name: str) -> dict[str, Any]:
    return {"name": name, "disk_template": "file", "disks": ["8M"], "install": False}


def create(collections: Path, env: Env, run_name: str, names: list[str]) -> Run:
    running, _, work = env
    variables = {
        "herd_socket": str(running.socket),
        "herd_instances": [spec(n) for n in names],
        "herd_opportunistic_tries": 20,
        "herd_opportunistic_delay": 0.3,
        "herd_create_timeout": 120,
    }
    inventory = {"all": {"hosts": {"localhost": local_host()}}}
    return play(collections, work / run_name, inventory, PLAYBOOK, variables)


def waited(run: Run) -> dict[str, dict[str, Any]]:
    """The module result of each create, by instance name."""
    (loop,) = [r for r in run.results["Wait for every create"] if "results" in r]
    return {r["item"]["item"]["name"]: r for r in loop["results"]}


def add_jobs(running: ThreadMaster, name: str) -> list[int]:
    c = running.client()
    found = []
    for item in c.jobs():
        ops = c.job(item["id"])["ops"]
        if any(o["op"] == "instance.add" and o["params"]["name"] == name for o in ops):
            found.append(item["id"])
    return found


def test_creates_side_by_side_then_a_second_run_changes_nothing(
    collections: Path, env: Env
) -> None:
    running, _, _ = env
    names = ["web1", "web2", "web3"]
    first = create(collections, env, "first", names)
    assert first.rc == 0 and first.failed() == 0, first.failed_tasks
    results = waited(first)
    assert all(results[n]["changed"] and results[n]["job_ids"] for n in names)
    assert {i["name"]: i["admin_state"] for i in running.api.query("instances")} == {
        n: "up" for n in names
    }
    jobs_before, state_before = running.client().jobs(), running.api.dump()
    second = create(collections, env, "second", names)
    assert second.rc == 0 and second.changed() == 0
    assert not any(r["job_ids"] for r in waited(second).values())
    assert running.client().jobs() == jobs_before and running.api.dump() == state_before


def test_a_create_left_in_the_queue_is_adopted_not_submitted_twice(
    collections: Path, env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if a run was interrupted while its create waited: every node is busy, the job
    sits in the master; the rerun waits for that job, which creates the instance."""
    running, _, _ = env
    locks, store = running.master.locks, running.master.store
    locks.acquire(HOLDER, "node", [n.uuid for n in store.list("node")])
    c = running.client()
    pending = c.submit([{"op": "instance.add", **spec("late1"), "opportunistic_tries": 3}])
    running.wait_status(pending, "waiting")
    queue = running.master.queue
    real_wait = queue.wait

    def wait_spy(job_id: int, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The rerun long-polls the pending job: only now let the job go on."""
        if job_id == pending:
            locks.release_all(HOLDER)
        return real_wait(job_id, *args, **kwargs)

    monkeypatch.setattr(queue, "wait", wait_spy)
    try:
        rerun = create(collections, env, "rerun", ["late1"])
    finally:
        locks.release_all(HOLDER)
    assert rerun.rc == 0 and rerun.failed() == 0, rerun.failed_tasks
    assert waited(rerun)["late1"]["job_ids"] == [pending]
    assert add_jobs(running, "late1") == [pending]
    poll("late1 to exist", lambda: running.api.query("instances", ["late1"]))
