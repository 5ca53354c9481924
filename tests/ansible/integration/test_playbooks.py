"""The herd.cluster collection against a real master and real lab nodes.

Playbooks run with ansible-playbook (through ansible-runner, which hands back every task
result as an event), the collection installed as ``ansible_collections/herd/cluster`` in a
temporary tree. What the master holds is read through its API before and after, so
"changed nothing" is checked against the master, not taken from Ansible's word.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import herdlab
import pytest

from herd.client import Client
from tests.ansible.integration.runner import REPO, Run, lab_nodes, local_host, play
from tests.conftest import make_lab
from tests.engine.harness import ThreadMaster, start_thread_master

pytestmark = pytest.mark.lab

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"


# --- the modules, one task each, against a master running in this process ---------------


@pytest.fixture(scope="module")
def module_env(
    collections: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ThreadMaster, Any, Path]]:
    labs = make_lab("m", 2)
    lab = next(labs)
    mp = pytest.MonkeyPatch()
    mp.setenv("HERD_BOOTSTRAP_KEY", lab.key_path)
    running = start_thread_master(tmp_path_factory.mktemp("master"))
    try:
        yield running, lab, tmp_path_factory.mktemp("plays")
    finally:
        running.stop()
        mp.undo()
        next(labs, None)


def modules_play(
    collections: Path, env: tuple[ThreadMaster, Any, Path], name: str, cmdline: str = "", **v: Any
) -> Run:
    running, lab, work = env
    inventory = {"all": {"hosts": {"localhost": local_host()}}}
    extravars = {"herd_socket": str(running.socket), "herd_lab_nodes": lab_nodes(lab), **v}
    return play(collections, work / name, inventory, PLAYBOOKS / "modules.yml", extravars, cmdline)


def test_modules_build_the_declared_cluster_then_change_nothing(
    collections: Path, module_env: tuple[ThreadMaster, Any, Path]
) -> None:
    running, lab, _ = module_env
    first = modules_play(collections, module_env, "first")
    assert first.rc == 0 and first.failed() == 0
    assert first.changed() == 3
    node = running.api.query("nodes", [lab.nodes[1].name])[0]
    assert node["group_name"] == "rack2" and node["tags"] == ["ansible"]
    (group,) = running.api.query("nodegroups", ["rack2"])
    assert group["alloc_policy"] == "last_resort"
    assert group["diskparams"] == {"drbd": {"resync_rate": 61440}}
    info = first.result("Read back")
    assert [n["name"] for n in info["nodes"]] == [n.name for n in lab.nodes]

    before = running.api.dump()
    second = modules_play(collections, module_env, "second")
    assert second.rc == 0 and second.changed() == 0
    assert all(not r["job_ids"] for t in ("Cluster", "Group", "Node") for r in second.results[t])
    assert running.api.dump() == before


def test_check_mode_reports_the_diff_and_changes_nothing(
    collections: Path, module_env: tuple[ThreadMaster, Any, Path]
) -> None:
    running, _, _ = module_env
    modules_play(collections, module_env, "setup")
    before = running.api.dump()
    jobs_before = running.api.request("GET", "/v1/jobs")["items"]
    check = modules_play(
        collections,
        module_env,
        "check",
        "--check --diff",
        herd_alloc_policy="unallocable",
        herd_node_group="default",
        herd_drbd_port_range="12000-12999",
    )
    assert check.rc == 0 and check.changed() == 3
    assert check.result("Group")["diff"] == {
        "before": {"alloc_policy": "last_resort"},
        "after": {"alloc_policy": "unallocable"},
    }
    assert check.result("Node")["diff"] == {
        "before": {"group": "rack2"},
        "after": {"group": "default"},
    }
    assert check.result("Cluster")["diff"] == {
        "before": {"drbd_port_range": "11000-14999"},
        "after": {"drbd_port_range": "12000-12999"},
    }
    assert running.api.dump() == before
    # The only jobs check mode submits are the master's dry runs of what would be applied.
    seen = {job["id"] for job in jobs_before}
    new = [j["id"] for j in running.api.request("GET", "/v1/jobs")["items"] if j["id"] not in seen]
    assert new and all(
        op["params"]["dry_run"] is True for job in new for op in running.api.job(job)["ops"]
    )


@pytest.mark.parametrize(
    ("extravars", "task", "field"),
    [
        ({"herd_alloc_policy": "sometimes"}, "Group", "alloc_policy"),
        ({"herd_node_group": "nosuchgroup"}, "Node", "group"),
        ({"herd_drbd_port_range": "14999-11000"}, "Cluster", "drbd_port_range"),
    ],
)
def test_bad_input_fails_naming_the_field_and_changes_nothing(
    collections: Path,
    module_env: tuple[ThreadMaster, Any, Path],
    extravars: dict[str, str],
    task: str,
    field: str,
) -> None:
    running, _, _ = module_env
    modules_play(collections, module_env, "setup")
    before = running.api.dump()
    run = modules_play(collections, module_env, f"bad-{field}", **extravars)
    assert run.rc != 0 and run.failed_tasks == [task]
    assert field in run.result(task)["msg"]
    assert run.result(task)["changed"] is False
    assert running.api.dump() == before


# --- site.yml: roles on lab nodes over SSH, the master as a daemon on the controller ----


def _master_pids(state_dir: Path) -> list[int]:
    """Pids of the master daemons that site.yml started for this state directory."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"herd.cli.main" in argv and str(state_dir).encode() in argv:
            pids.append(int(proc.name))
    return pids


def site_inventory(lab: Any) -> dict[str, Any]:
    """The lab's own inventory (``herdlab.py inventory``, as the user guide has it), plus
    the cluster's settings."""
    inventory = herdlab.inventory(lab.name)
    inventory["all"]["vars"]["herd_cluster_name"] = "beta"
    controller = inventory["all"]["children"]["herd_masters"]["hosts"]["controller"]
    controller["herd_cluster_settings"] = {"enabled_hypervisors": ["fake"]}
    return inventory


@pytest.fixture
def site_lab() -> Iterator[tuple[Any, Path, Path]]:
    labs = make_lab("y", 2)
    lab = next(labs)
    # Where the lab inventory places the master.
    state_dir, socket = Path(lab.dir) / "master", Path(lab.dir) / "master.sock"
    try:
        yield lab, state_dir, socket
    finally:
        for pid in _master_pids(state_dir):
            os.kill(pid, signal.SIGTERM)
        next(labs, None)


def test_site_builds_the_cluster_and_a_second_run_changes_nothing(
    collections: Path, site_lab: tuple[Any, Path, Path], tmp_path: Path
) -> None:
    lab, state_dir, socket = site_lab
    inventory = site_inventory(lab)
    site = REPO / "playbooks" / "site.yml"
    first = play(collections, tmp_path / "site1", inventory, site)
    assert first.rc == 0 and first.failed() == 0, first.stats
    assert first.stats["changed"]["controller"] >= 3
    assert len(_master_pids(state_dir)) == 1
    for node in lab.nodes:
        assert (Path(node.dir) / "herd-sshd.conf").read_text().count("MaxSessions 100") == 1

    second = play(collections, tmp_path / "site2", inventory, site)
    assert second.rc == 0 and second.changed() == 0, second.stats
    assert len(_master_pids(state_dir)) == 1
    # Check mode on a healthy cluster: every read still runs, nothing fails or changes.
    checked = play(collections, tmp_path / "site3", inventory, site, cmdline="--check --diff")
    assert checked.rc == 0 and checked.failed() == 0 and checked.changed() == 0, checked.stats

    client = Client(str(socket))
    try:
        assert client.query("cluster")["name"] == "beta"
        nodes = client.query("nodes")
        assert [n["name"] for n in nodes] == sorted(n.name for n in lab.nodes)
        assert nodes[0]["host_key"].split()[:2] == lab.nodes[0].host_key.split()[:2]
    finally:
        client.close()
