"""DRBD node faults mid-op on the two qemu guests, with a real master (in-process).

Three faults that only replicated disks have, each injected into a running op on a
cluster of the VM nodes (DRBD 8.4, fake hypervisor):

* the secondary's ``herd-node`` killed (SIGKILL, sshd lives) while ``instance.add``
  resyncs its new disk: the master's next call to that node must start a fresh agent;
* the replication link cut (blackhole routes, the master still reaches both guests)
  during the initial resync of a new disk: the op must not report success while the
  secondary is not in sync;
* the same cut while a live migration holds both sides Primary.

Whatever the op then did (finished, or failed and rolled back), afterwards: no lock is
held, the config and the guests agree (the LVs and DRBD minors on each guest are exactly
the config's), ``cluster.verify`` names no orphan and nothing degraded, no minor is
Primary on both guests, the instance runs on exactly one node (its primary), its data
is the same on both copies, and the op run again succeeds.

A fault lands wherever the op is when the test sees it has passed a known step (its
resync under way, both sides Primary); every outcome from there on is allowed, so the
checks hold however fast the guests are.  The cluster's DRBD resync rate is capped so a
resync lasts long enough to be seen, on any machine.

CI runs the cheapest one (the killed agent); ``HERD_FAULTS_ALL=1`` runs all three.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import vmnodes

from herd.jobs.status import FINAL
from tests.engine.harness import ThreadMaster
from tests.faults.test_crash_points import LONG_FORM_ONLY
from tests.lab.conftest import vm_nodes
from tests.vm.helpers import (
    ON_VM_GUESTS,
    checksum,
    data_lv,
    drbd_cluster,
    dual_primaries,
    poll,
    replication_cut,
    run,
    write_pattern,
)

__all__ = ["vm_nodes"]  # the session's guests, shared with tests/vm
pytestmark = ON_VM_GUESTS

Env = tuple[ThreadMaster, vmnodes.VMLab]
OP_TIMEOUT = 600
DISK_MIB = 32
#: 1 MiB/s with DRBD's dynamic controller off: a resync of DISK_MIB lasts about 30 s.
SLOW_RESYNC = {"drbd": {"resync_rate": "1M", "disk_options": {"c-plan-ahead": "0"}}}
#: The fake hypervisor's largest memory stand-in: the copy keeps both sides Primary longer.
MIGRATION_IMAGE_MIB = 64
#: DRBD notices a blackholed peer by its ping timeout, then reconnects every few seconds.
LINK_PATIENCE = 180.0


@pytest.fixture(scope="module")
def cluster(vm_nodes: vmnodes.VMLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with drbd_cluster(vm_nodes, tmp_path_factory, "drbdfaults", ["drbd"]) as running:
        run(running, "cluster.modify", diskparams=SLOW_RESYNC)
        yield running, vm_nodes


@pytest.fixture
def healthy(cluster: Env) -> Iterator[Env]:
    """Each test starts without instances, whatever the one before left."""
    yield cluster
    running, _ = cluster
    for inst in running.api.query("instances"):
        run(running, "instance.remove", name=inst["name"], shutdown_timeout=0,
            ignore_failures=True)  # fmt: skip


# --- ops and their job logs --------------------------------------------------------------


def drbd_add(lab: vmnodes.VMLab, name: str, **extra: Any) -> dict[str, Any]:
    n1, n2 = lab.nodes
    return {"op": "instance.add", "name": name, "disk_template": "drbd",
            "disks": [f"{DISK_MIB}M"], "install": False, "primary_node": n1.name,
            "secondary_node": n2.name, **extra}  # fmt: skip


def wait_for_log(
    running: ThreadMaster, job_id: int, match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the job's log until an entry matches; the test fails if the job ends first
    (its fault would land nowhere)."""
    since = 0
    deadline = time.monotonic() + OP_TIMEOUT
    while time.monotonic() < deadline:
        doc = running.api.job(job_id, log_since=since)
        for entry in doc["log"]:
            if match(entry):
                return entry
        since = max([since, *(int(e["serial"]) for e in doc["log"])])
        assert doc["status"] not in FINAL, (
            f"job {job_id} ended ({doc['status']}) before the fault could be injected"
        )
        time.sleep(0.5)
    raise AssertionError(f"job {job_id}: no matching log entry in {OP_TIMEOUT} s")


def resyncing(entry: dict[str, Any]) -> bool:
    return entry["type"] == "progress" and "resync" in entry["message"]


def ended(running: ThreadMaster, job_id: int) -> dict[str, Any]:
    running.api.wait(job_id, timeout=OP_TIMEOUT)
    return running.api.job(job_id)


# --- the guests ----------------------------------------------------------------------------


def kill_agent(node: vmnodes.VMNode) -> None:
    """SIGKILL every ``herd-node --serve`` of the guest (fails if none ran); the bracket
    keeps pkill from matching the shell that runs it."""
    node.ssh("pkill -9 -f '[h]erd-node --serve'")


def lvs(node: vmnodes.VMNode) -> set[str]:
    out = node.ssh("lvs --noheadings -o lv_name herd").stdout
    return set(out.split())


def configured_minors(node: vmnodes.VMNode) -> set[int]:
    found = set()
    for line in node.ssh("cat /proc/drbd").stdout.splitlines():
        head, _, rest = line.strip().partition(":")
        if head.isdigit() and "cs:Unconfigured" not in rest:
            found.add(int(head))
    return found


def guests(lab: vmnodes.VMLab, name: str) -> dict[str, int]:
    """Fake guest processes of ``name`` per guest node (the bracket as in kill_agent)."""
    counts = {}
    for node in lab.nodes:
        out = node.ssh("pgrep -af '[h]erd.node.hv.fake_guest'", check=False).stdout
        counts[node.name] = sum(1 for line in out.splitlines() if name in line.split())
    return counts


def lab_node(lab: vmnodes.VMLab, name: str) -> vmnodes.VMNode:
    return next(n for n in lab.nodes if n.name == name)


def replicating(node: vmnodes.VMNode, minor: int) -> bool:
    state = node.ssh("cat /proc/drbd").stdout
    return any(
        line.strip().startswith(f"{minor}:")
        and "cs:Connected" in line
        and "ds:UpToDate/UpToDate" in line
        for line in state.splitlines()
    )


def in_sync(lab: vmnodes.VMLab, inst: dict[str, Any]) -> bool:
    minors = inst["disks"][0]["params"]["minors"]
    return all(replicating(node, minors[node.name]) for node in lab.nodes)


def primaries(lab: vmnodes.VMLab) -> list[str]:
    """The guests that hold a minor Primary, each by its own view (the peer's may lag)."""
    return [n.name for n in lab.nodes if "ro:Primary/" in n.ssh("cat /proc/drbd").stdout]


def two_primaries_allowed(lab: vmnodes.VMLab) -> list[str]:
    """Where a resource file or the kernel still allows two primaries (after a migration
    only a rollback that failed leaves that)."""
    check = (
        "grep -l 'allow-two-primaries yes' /etc/drbd.d/*.res; "
        "drbdsetup show 2>/dev/null | grep 'allow-two-primaries *yes'"
    )
    return [
        f"{n.name}: {line}"
        for n in lab.nodes
        for line in n.ssh(check, check=False).stdout.splitlines()
        if line.strip()
    ]


def disconnected(node: vmnodes.VMNode) -> bool:
    """A configured minor of the guest has lost its peer (waits for it, or stands alone)."""
    return any(
        "cs:WFConnection" in line or "cs:StandAlone" in line
        for line in node.ssh("cat /proc/drbd").stdout.splitlines()
    )


# --- what must hold after every fault --------------------------------------------------


def assert_survived(running: ThreadMaster, lab: vmnodes.VMLab) -> None:
    """No lock held, the guests hold exactly what the config says, nothing is orphaned or
    degraded, no minor is dual-primary, each instance runs once (on its primary) and its
    two copies hold the same data."""
    assert [lock for lock in running.api.locks() if lock["holders"] or lock["pending"]] == []
    instances = running.api.query("instances")
    for inst in instances:
        poll(f"{inst['name']} in sync", lambda i=inst: in_sync(lab, i), LINK_PATIENCE)
    for node in lab.nodes:
        disks = [d["params"] for inst in instances for d in inst["disks"]]
        assert lvs(node) == {lv for p in disks for lv in (p["data_lv"], p["meta_lv"])}
        assert configured_minors(node) == {p["minors"][node.name] for p in disks}
    report = run(running, "cluster.verify")
    assert report["orphans"] == {n.name: [] for n in lab.nodes}
    for inst in instances:
        named = [p for p in report["problems"] if inst["name"] in p["message"]]
        assert named == [], named
        for node, states in report["drbd"][inst["name"]].items():
            assert [s["degraded"] for s in states] == [False] * len(states), (node, states)
    assert dual_primaries(lab) == []
    for inst in instances:
        runs = {n.name: int(n.name == inst["primary_node_name"]) for n in lab.nodes}
        assert guests(lab, inst["name"]) == runs
        assert copies_agree(running, lab, inst["name"])


def add_survived(running: ThreadMaster, lab: vmnodes.VMLab, job_id: int) -> None:
    """The faulted add ``job_id`` either finished, or failed leaving nothing, after which
    the same add succeeds; either way the cluster checks out."""
    doc = ended(running, job_id)
    if doc["status"] != "success":
        assert running.api.query("instances") == [], doc["error"]
        assert_survived(running, lab)
        run(running, **drbd_add(lab, "victim"))
    assert_survived(running, lab)


def copies_agree(running: ThreadMaster, lab: vmnodes.VMLab, name: str) -> bool:
    """The primary's device and the secondary's data LV read the same, whole disk."""
    (inst,) = running.api.query("instances", [name])
    params = inst["disks"][0]["params"]
    primary = lab_node(lab, inst["primary_node_name"])
    (secondary,) = [n for n in lab.nodes if n is not primary]
    device = f"/dev/drbd{params['minors'][primary.name]}"
    return checksum(primary, device, DISK_MIB) == checksum(secondary, data_lv(params), DISK_MIB)


# --- 1. the secondary's agent killed mid instance.add -----------------------------------


def test_secondary_agent_killed_during_add(healthy: Env, injected: Callable[[str], None]) -> None:
    """Killed while the primary resyncs the new disk: the master's later calls to the
    secondary (start assembles both sides) go to a fresh agent; if instead the op fails,
    its rollback leaves nothing and the add run again succeeds."""
    running, lab = healthy
    secondary = lab.nodes[1]
    job_id = running.api.submit([drbd_add(lab, "victim")])
    wait_for_log(running, job_id, resyncing)
    injected("secondary's herd-node killed during instance.add drbd (resync)")
    kill_agent(secondary)
    add_survived(running, lab, job_id)


# --- 2. replication cut during the initial resync ---------------------------------------


@LONG_FORM_ONLY
def test_replication_cut_during_initial_resync(
    healthy: Env, injected: Callable[[str], None]
) -> None:
    """While cut, the op must not succeed (the secondary is not in sync); once the link
    is back the resync completes and the copies agree, or the op failed naming the cause
    and the add run again succeeds."""
    running, lab = healthy
    n1, n2 = lab.nodes
    job_id = running.api.submit([drbd_add(lab, "victim")])
    wait_for_log(running, job_id, resyncing)
    injected("replication cut during the initial resync of instance.add drbd")
    with replication_cut(n1, n2):
        poll("DRBD to lose its peer", lambda: disconnected(n1), LINK_PATIENCE)
        assert running.api.job(job_id)["status"] != "success"
    add_survived(running, lab, job_id)


# --- 3. replication cut during a live migration ------------------------------------------


@LONG_FORM_ONLY
def test_replication_cut_during_live_migration(
    healthy: Env, injected: Callable[[str], None]
) -> None:
    """Cut once both sides are Primary: never two Primaries afterwards (the link still
    cut, and after the heal), the instance runs exactly once, on the node the config
    names, with the data written before; migrating again succeeds."""
    running, lab = healthy
    n1, n2 = lab.nodes
    run(running, **drbd_add(lab, "victim", hvparams={"migration_image_mib": MIGRATION_IMAGE_MIB}))
    (inst,) = running.api.query("instances", ["victim"])
    digest = write_pattern(n1, f"/dev/drbd{inst['disks'][0]['params']['minors'][n1.name]}")
    job_id = running.api.submit([{"op": "instance.migrate", "name": "victim"}])
    wait_for_log(running, job_id, lambda e: f"Primary on {n1.name} and {n2.name}" in e["message"])
    injected("replication cut during instance.migrate drbd (both Primary)")
    with replication_cut(n1, n2):
        ended(running, job_id)
        poll("DRBD to notice the cut", lambda: disconnected(n1) and disconnected(n2),
             LINK_PATIENCE)  # fmt: skip
        (inst,) = running.api.query("instances", ["victim"])
        assert primaries(lab) == [inst["primary_node_name"]]
    assert_survived(running, lab)
    assert two_primaries_allowed(lab) == []
    assert primary_data(running, lab, "victim") == digest
    run(running, "instance.migrate", name="victim")
    assert_survived(running, lab)
    assert two_primaries_allowed(lab) == []
    assert primary_data(running, lab, "victim") == digest


def primary_data(running: ThreadMaster, lab: vmnodes.VMLab, name: str) -> str:
    """Checksum of the first PATTERN_MIB of the instance's disk, read on its primary."""
    (inst,) = running.api.query("instances", [name])
    primary = lab_node(lab, inst["primary_node_name"])
    return checksum(primary, f"/dev/drbd{inst['disks'][0]['params']['minors'][primary.name]}")
