"""playbooks/node_evacuate.yml (herd.cluster.node and node_evacuate) against a real master
and three real lab nodes: check mode shows the plan and changes nothing, a run after a
partial evacuation moves only what is left, and a second run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.integration.runner import REPO, Run, local_host, play
from tests.conftest import make_lab
from tests.engine.harness import ThreadMaster
from tests.engine.ops.labsupport import guest_pids, instance, run
from tests.engine.ops.test_node_evacuate import INSTANCES, evacuation_cluster

pytestmark = pytest.mark.lab

PLAYBOOK = REPO / "playbooks" / "node_evacuate.yml"
EVACUATE = "Move every instance off the node"

Env = tuple[ThreadMaster, Any, Path]


@pytest.fixture(scope="module")
def evac_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    labs = make_lab("e", 3)
    lab = next(labs)
    try:
        with evacuation_cluster(lab, tmp_path_factory.mktemp("master")) as running:
            yield running, lab, tmp_path_factory.mktemp("plays")
    finally:
        next(labs, None)


def evacuate_play(collections: Path, env: Env, name: str, cmdline: str = "") -> Run:
    running, lab, work = env
    inventory = {"all": {"children": {"herd_masters": {"hosts": {"localhost": local_host()}}}}}
    variables = {
        "herd_socket": str(running.socket),
        "herd_evacuate_node": lab.nodes[1].name,
        "herd_become": False,
    }
    return play(collections, work / name, inventory, PLAYBOOK, variables, cmdline)


def test_check_mode_shows_the_plan_and_changes_nothing(collections: Path, evac_env: Env) -> None:
    running = evac_env[0]
    before = running.api.dump()
    check = evacuate_play(collections, evac_env, "check", "--check")
    assert check.rc == 0 and check.failed() == 0, check.failed_tasks
    result = check.result(EVACUATE)
    assert sorted(m["instance"] for m in result["plan"]) == sorted(INSTANCES)
    assert result["drained_now"] is True and result["changed"] is True
    assert all("job_id" not in job for job in result["jobs"])
    assert running.api.dump() == before


def test_rerun_after_a_partial_evacuation_moves_the_rest_then_nothing(
    collections: Path, evac_env: Env
) -> None:
    running, lab, _ = evac_env
    n1, a, n3 = lab.nodes
    # What an interrupted earlier run leaves behind: one instance already moved.
    run(running, "node.modify", name=a.name, drained=True)
    run(running, "instance.migrate", name="live1", target_node=n3.name)

    first = evacuate_play(collections, evac_env, "first")
    assert first.rc == 0 and first.failed() == 0, first.failed_tasks
    assert first.changed() == 2  # evacuate and offline; the node was drained already
    result = first.result(EVACUATE)
    assert sorted(m["instance"] for m in result["plan"]) == ["cold1", "copy1"]
    assert [j["status"] for j in result["jobs"]] == ["success", "success"]
    assert result["job_ids"][1:] == [j["job_id"] for j in result["jobs"]]
    for name in INSTANCES:
        assert instance(running, name)["primary_node_name"] in {n1.name, n3.name}
        assert guest_pids(a, name) == []
    assert instance(running, "live1")["primary_node_name"] == n3.name
    node = running.api.query("nodes", [a.name])[0]
    assert node["drained"] is True and node["offline"] is True

    before = running.api.dump()
    second = evacuate_play(collections, evac_env, "second")
    assert second.rc == 0 and second.changed() == 0
    assert second.result(EVACUATE)["job_ids"] == []
    assert running.api.dump() == before
