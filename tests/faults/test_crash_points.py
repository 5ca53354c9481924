"""The master killed between every two steps of an op, restarted, and checked.

For each op: one run with a trace learns every crash point it passes (see
``herd.faults``); then, for each point, a master armed to die there (``os._exit``: no
cleanup, as after ``kill -9`` or a power cut) runs the op, a normal master starts on the
same state, and the test checks that the job ended (failed naming the restart, or
succeeded if it died after storing success), that no lock is held, that ``cluster
verify`` reports no orphan on any node, that the config matches what the job says, and
that running the same op again succeeds. Lab nodes over real SSH, real master processes.

CI runs the cheap ops; ``HERD_FAULTS_ALL=1`` adds the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from herd import faults
from herd.client import Client
from herd.errors import HerdError
from tests.engine.harness import PATIENCE, poll
from tests.engine.master.test_daemon import ProcessMaster
from tests.engine.ops import labsupport
from tests.faults.record import record

pytestmark = pytest.mark.lab

FULL = os.environ.get("HERD_FAULTS_ALL") == "1"
ARMED = {faults.ENABLE_ENV: "1"}
OP_TIMEOUT = 180
#: A restarting master finishes the undo of interrupted jobs before it answers, and a
#: move's undo waits for the other cluster's job to roll back (up to its own timeout).
STARTUP_PATIENCE = 2 * OP_TIMEOUT


@dataclass
class Scenario:
    """One op under test, with what it needs before and how to get back to before."""

    name: str
    op: Callable[[Any], dict[str, Any]]
    setup: Callable[[Any], list[dict[str, Any]]] = lambda lab: []
    reset: Callable[[Any], list[dict[str, Any]]] = lambda lab: []
    full_only: bool = False
    #: How to tell from the config whether the op's effect is there.
    applied: Callable[[Client], bool] = field(default=lambda c: True)
    #: A failed run leaves no trace (a create); otherwise (a remove, which cannot be
    #: undone once its config write is done) the effect may be there or not, never half.
    undone_on_failure: bool = False


def file_instance(name: str, node: str, **extra: Any) -> dict[str, Any]:
    params = labsupport.file_instance(name, "8M", install=False, primary_node=node, **extra)
    return {"op": "instance.add", **params}


def remove(name: str) -> dict[str, Any]:
    return {"op": "instance.remove", "name": name, "shutdown_timeout": 0}


def shared_instance(name: str, node: str) -> dict[str, Any]:
    """On shared storage, so it can migrate and fail over without a copy."""
    return {**file_instance(name, node), "disk_template": "sharedfile"}


def on_second_node(c: Client) -> bool:
    return str(c.query("instances")[0]["primary_node_name"]).endswith("2")


def there_and_back(
    op: str, setup: Callable[[Any], dict[str, Any]], full_only: bool = False
) -> Scenario:
    """``op`` takes the victim (as ``setup`` adds it) to the second node; the reset
    brings it back with the same op."""

    def to(lab: Any, index: int) -> dict[str, Any]:
        return {"op": op, "name": "victim", "target_node": lab.nodes[index].name}

    return Scenario(
        op,
        setup=lambda lab: [setup(lab)],
        op=lambda lab: to(lab, 1),
        reset=lambda lab: [to(lab, 0)],
        applied=on_second_node,
        full_only=full_only,
    )


def stopped_victim(lab: Any) -> dict[str, Any]:
    """The victim most scenarios start from: a stopped file instance on the first node."""
    return file_instance("victim", lab.nodes[0].name, start=False)


def shared_victim(lab: Any) -> dict[str, Any]:
    return shared_instance("victim", lab.nodes[0].name)


def has_instance(name: str) -> Callable[[Client], bool]:
    return lambda c: name in [i["name"] for i in c.query("instances")]


SCENARIOS = [
    Scenario(
        "instance.add",
        op=lambda lab: file_instance("victim", lab.nodes[0].name),
        reset=lambda lab: [remove("victim")],
        applied=has_instance("victim"),
        undone_on_failure=True,
    ),
    Scenario(
        "instance.remove",
        setup=lambda lab: [file_instance("victim", lab.nodes[0].name)],
        op=lambda lab: remove("victim"),
        reset=lambda lab: [file_instance("victim", lab.nodes[0].name)],
        applied=lambda c: not has_instance("victim")(c),
    ),
    Scenario(
        "instance.modify grow",
        setup=lambda lab: [stopped_victim(lab)],
        op=lambda lab: {
            "op": "instance.modify",
            "name": "victim",
            "disk_grow": {"index": 0, "size": "16M"},
        },
        reset=lambda lab: [
            remove("victim"),
            stopped_victim(lab),
        ],
        applied=lambda c: [d["size_mib"] for d in c.query("instances")[0]["disks"]] == [16],
        full_only=True,
    ),
    there_and_back("instance.move", stopped_victim, full_only=True),
    Scenario(
        "instance.export",
        setup=lambda lab: [stopped_victim(lab)],
        op=lambda lab: {
            "op": "instance.export",
            "name": "victim",
            "target_node": lab.nodes[1].name,
            "compression": "none",
        },
        reset=lambda lab: [{"op": "export.remove", "name": "victim"}],
        full_only=True,
    ),
    Scenario(
        "instance.import",
        setup=lambda lab: [
            stopped_victim(lab),
            {
                "op": "instance.export",
                "name": "victim",
                "compression": "none",
                "remove_instance": True,
            },
        ],
        op=lambda lab: {
            "op": "instance.import",
            "src_node": lab.nodes[0].name,
            "src_name": "victim",
            "primary_node": lab.nodes[1].name,
        },
        reset=lambda lab: [remove("victim")],
        applied=has_instance("victim"),
        undone_on_failure=True,
        full_only=True,
    ),
    there_and_back("instance.migrate", shared_victim),
    there_and_back("instance.failover", shared_victim, full_only=True),
    Scenario(
        "node.add",
        setup=lambda lab: [{"op": "node.remove", "name": lab.nodes[1].name}],
        op=lambda lab: {
            "op": "node.add",
            "name": lab.nodes[1].name,
            **labsupport.lab_address(lab.nodes[1]),
        },
        reset=lambda lab: [{"op": "node.remove", "name": lab.nodes[1].name}],
        applied=lambda c: len(c.query("nodes")) == 2,
        undone_on_failure=True,
        full_only=True,
    ),
]


class Masters:
    """Real master processes on one state directory, started and ended as the test says.

    One per cluster: ``env`` is what every master of this cluster gets (its lab's
    bootstrap key, when two clusters run side by side).
    """

    def __init__(self, base: Path, env: dict[str, str] | None = None) -> None:
        self.base = base
        self.env = env or {}
        self.running: list[ProcessMaster] = []

    @property
    def socket(self) -> Path:
        """The API socket, the same path for every master of this cluster."""
        return self.base / "master.sock"

    def start(self, env: dict[str, str] | None = None) -> ProcessMaster:
        env = {**self.env, **(env or {})}
        pm = ProcessMaster(self.base / "state", self.socket, env, patience=STARTUP_PATIENCE)
        self.running.append(pm)
        return pm

    def stop_all(self) -> None:
        for pm in self.running:
            pm.stop()
        self.running.clear()


def two_node_cluster(base: Path, lab: Any) -> Masters:
    """A cluster on ``lab``'s two nodes (fake hypervisor, file storage), its master stopped."""
    masters = Masters(base)
    first = masters.start()
    n1, n2 = lab.nodes
    first.client.run(
        [{"op": "cluster.init", "name": "crash", "master_node": n1.name,
          **labsupport.lab_address(n1), "enabled_hypervisors": ["fake"],
          "enabled_disk_templates": ["file", "sharedfile"], "beparams": {"memory": 32}},
         {"op": "node.add", "name": n2.name, **labsupport.lab_address(n2)}],
        timeout=OP_TIMEOUT,
    )  # fmt: skip
    masters.stop_all()
    return masters


def orphans(c: Client) -> list[dict[str, Any]]:
    result = c.run([{"op": "cluster.verify"}], timeout=OP_TIMEOUT)
    return [p for p in result["problems"] if p["code"].startswith("ENODEORPHAN")]


def not_running_as_configured(c: Client) -> list[str]:
    """Instances whose run state is not what the config says (admin up but down, or the
    reverse); a second copy on another node is verify's ENODEORPHANPROC."""
    live = c.request("GET", "/v1/query/instances", query={"live": "1"})["items"]
    return [
        f"{i['name']}: admin {i['admin_state']}, {i['oper_state']}"
        for i in live
        if (i["admin_state"] == "up") != (i["oper_state"] == "running")
    ]


def held_locks(c: Client) -> list[dict[str, Any]]:
    return [lock for lock in c.locks() if lock["holders"] or lock["pending"]]


def trace_points(
    masters: Masters, tmp_path: Path, scenario: Scenario, lab: Any, via: Client | None = None
) -> list[str]:
    """Every crash point the op passes, in order, from one traced run.

    ``via``: another cluster's running master to submit the op to, when the traced
    master only runs the jobs it spawns there (the destination of a move).
    """
    trace = tmp_path / f"trace-{scenario.name.replace(' ', '-')}"
    pm = masters.start({**ARMED, faults.TRACE_ENV: str(trace)})
    (via or pm.client).run([scenario.op(lab)], timeout=OP_TIMEOUT)
    masters.stop_all()
    points = trace.read_text().split() if trace.exists() else []
    assert points, f"{scenario.name} passed no crash point"
    return points


class NotReached(AssertionError):
    """The armed point was not passed this time: a failure for an op that replays its
    trace exactly, expected where jobs run side by side or a poll count varies."""


def crash_at(
    masters: Masters, point: str, scenario: Scenario, lab: Any, via: Client | None = None
) -> None:
    """Run the op on a master armed to die at ``point``; wait for it to die there.

    ``via`` as for :func:`trace_points`: the op's job runs there. The point may be in a
    job the op spawned, so it counts as never reached only once every job has ended.
    """
    pm = masters.start({**ARMED, faults.CRASH_AT_ENV: point})
    client = via or pm.client
    job_id = client.submit([scenario.op(lab)])

    def ended() -> bool:
        if pm.proc.poll() is not None:
            return True
        try:
            jobs = client.jobs()
        except HerdError:
            return False  # the master is dying under the request
        if all(j["status"] in ("success", "error", "canceled") for j in jobs):
            raise NotReached(f"{point} never reached: {client.job(job_id)}")
        return False

    poll(f"the master to die at {point}", ended, patience=OP_TIMEOUT)
    assert pm.proc.returncode == faults.CRASH_EXIT, f"master died elsewhere than {point}"
    masters.stop_all()


def check_after_restart(c: Client, point: str, scenario: Scenario, lab: Any) -> None:
    last = c.jobs(limit=1)[0]
    doc = poll(f"job {last['id']} to end", lambda: (d := c.job(last["id"]))["status"] in
               ("success", "error") and d, patience=PATIENCE * 8)  # fmt: skip
    assert held_locks(c) == [], point
    assert orphans(c) == [], point
    assert not_running_as_configured(c) == [], point
    if doc["status"] == "error":
        assert "master restarted" in doc["error"]["message"], (point, doc["error"])
        if scenario.undone_on_failure and not point.startswith("op:"):
            # Died mid-op: rolled back. Past the body (``op:ID:ran``), the op's own config
            # write is done, and whether the next master keeps it depends on the op (a
            # joined node stays joined); either way never half, which verify checks.
            assert not scenario.applied(c), f"{point}: failed job left its effect"
        if not scenario.applied(c):
            c.run([scenario.op(lab)], timeout=OP_TIMEOUT)
    assert scenario.applied(c), point
    assert orphans(c) == [], point
    assert not_running_as_configured(c) == [], point


#: Skips the long-form scenarios before their cluster is built, not inside the test.
LONG_FORM_ONLY = pytest.mark.skipif(not FULL, reason="long form only (HERD_FAULTS_ALL=1)")


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(s, id=s.name.replace(" ", "-"), marks=LONG_FORM_ONLY if s.full_only else ())
        for s in SCENARIOS
    ],
)
def test_every_crash_point_is_survived(
    scenario: Scenario, lab_masters: tuple[Masters, Any], tmp_path: Path
) -> None:
    masters, lab = lab_masters
    run_each(masters.start().client, scenario.setup(lab))
    masters.stop_all()
    points = trace_points(masters, tmp_path, scenario, lab)
    reset(masters, scenario, lab)
    for point in points:
        fault = f"master crash at {point} in {scenario.name}"
        try:
            crash_at(masters, point, scenario, lab)
            pm = masters.start()
            check_after_restart(pm.client, point, scenario, lab)
            run_each(pm.client, scenario.reset(lab))
            masters.stop_all()
        except BaseException:
            record(fault, survived=False)
            raise
        record(fault, survived=True)


def run_each(c: Client, ops: list[dict[str, Any]]) -> None:
    """One job per op, in order: a step's op may need the one before it to have ended."""
    for op in ops:
        c.run([op], timeout=OP_TIMEOUT)


def reset(masters: Masters, scenario: Scenario, lab: Any) -> None:
    run_each(masters.start().client, scenario.reset(lab))
    masters.stop_all()
