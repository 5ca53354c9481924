"""Crash points of the ops that span more than one job: a move between two clusters and
a node evacuation.

The machinery is ``test_crash_points``' (trace an op's points, then kill a real master at
each, restart it, check); what differs is what is checked afterwards. A move between
clusters runs a job on each master: each master is killed in turn at each of its points
while the other keeps running, and afterwards both clusters are consistent and clean and
the instance exists exactly once (still on the source, or on the destination and gone
from the source). An evacuation spawns one job per instance: the master is killed in the
evacuation's job and in the spawned ones, and afterwards every job has ended, every
instance is on exactly one node and evacuating again succeeds or has nothing to do.

CI kills at a few representative points of each; ``HERD_FAULTS_ALL=1`` at every point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from herd.client import Client
from herd.crypto.secrets import generate_domain_secret
from tests.conftest import make_lab
from tests.engine.harness import PATIENCE, poll
from tests.faults.record import record
from tests.faults.test_crash_points import (
    FULL,
    OP_TIMEOUT,
    Masters,
    NotReached,
    Scenario,
    crash_at,
    file_instance,
    held_locks,
    not_running_as_configured,
    orphans,
    remove,
    shared_instance,
    trace_points,
)

pytestmark = pytest.mark.lab

ENDED = ("success", "error", "canceled")
#: Crash points CI kills at: the first and last, and this many in between (evenly spread).
CI_MIDDLE = 2


def representative(points: list[str]) -> list[str]:
    """Every point in the long form; the first, the last and a few between them in CI."""
    if FULL or len(points) <= CI_MIDDLE + 2:
        return points
    step = (len(points) - 1) / (CI_MIDDLE + 1)
    return [points[round(i * step)] for i in range(CI_MIDDLE + 2)]


def settled(c: Client) -> list[dict[str, Any]]:
    """Every job of this master, once none is still queued, waiting or running."""

    def all_ended() -> list[dict[str, Any]] | bool:
        jobs = c.jobs(limit=1000)
        return all(j["status"] in ENDED for j in jobs) and jobs

    return poll("every job to end", all_ended, patience=PATIENCE * 8)


def names(c: Client) -> list[str]:
    return [str(i["name"]) for i in c.query("instances")]


def assert_clean(c: Client, where: str) -> None:
    """No lock held, nothing on any node the config does not know, run states as set."""
    assert held_locks(c) == [], where
    assert orphans(c) == [], where
    assert not_running_as_configured(c) == [], where


def survive(fault: str, check: Callable[[], bool]) -> None:
    """Run ``check`` (inject, restart, assert) and record the fault's outcome, unless it
    says (False) that the point was not reached this time, so nothing was injected."""
    try:
        injected = check()
    except BaseException:
        record(fault, survived=False)
        raise
    if injected:
        record(fault, survived=True)


def crashed(masters: Masters, point: str, scenario: Scenario, lab: Any, **kw: Any) -> bool:
    """:func:`crash_at`, False if a timing-dependent point was not passed this time."""
    try:
        crash_at(masters, point, scenario, lab, **kw)
    except NotReached:
        masters.stop_all()
        return False
    return True


# ---- between two clusters ---------------------------------------------------------------


@dataclass
class Pair:
    """Two clusters sharing a domain secret: the instance moves from east to west."""

    east: Masters
    west: Masters
    east_lab: Any
    west_lab: Any


def cross_move(pair: Pair) -> dict[str, Any]:
    return {"op": "instance.move", "name": "victim", "dest_cluster": str(pair.west.socket),
            "compression": "none", "shutdown_timeout": 0}  # fmt: skip


CROSS = Scenario("instance.move between clusters", op=cross_move)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """One node per cluster: the move passes the same points with more, only slower."""
    gens = [make_lab("e", 1), make_lab("w", 1)]
    secret = generate_domain_secret()
    sides: list[Masters] = []
    labs: list[Any] = []
    try:
        for name, gen in zip(("east", "west"), gens, strict=True):
            lab = next(gen)
            labs.append(lab)
            masters = Masters(tmp_path / name, {"HERD_BOOTSTRAP_KEY": lab.key_path})
            sides.append(masters)
            (node,) = lab.nodes
            masters.start().client.run(
                [{"op": "cluster.init", "name": name, "master_node": node.name,
                  "primary_ip": node.ip, "ssh_port": node.port, "domain_secret": secret,
                  "enabled_hypervisors": ["fake"], "enabled_disk_templates": ["file"],
                  "beparams": {"memory": 32}}],
                timeout=OP_TIMEOUT,
            )  # fmt: skip
            masters.stop_all()
        yield Pair(sides[0], sides[1], labs[0], labs[1])
    finally:
        for masters in sides:
            masters.stop_all()
        for gen in gens:
            gen.close()


def put_back(pair: Pair, east: Client, west: Client) -> None:
    """The instance on the source again, running, and nothing of it on the destination."""
    if "victim" in names(west):
        west.run([remove("victim")], timeout=OP_TIMEOUT)
    if "victim" not in names(east):
        east.run([file_instance("victim", pair.east_lab.nodes[0].name)], timeout=OP_TIMEOUT)


def check_move(pair: Pair, east: Client, west: Client, point: str) -> None:
    """After one master died at ``point`` and came back: both sides ended and clean, the
    instance exactly once, and the move, if it did not complete, completes now."""
    settled(east)
    settled(west)
    for c, side in ((east, "east"), (west, "west")):
        assert_clean(c, f"{side} after {point}")
    where = [side for c, side in ((east, "east"), (west, "west")) if "victim" in names(c)]
    assert len(where) == 1, f"after {point} the instance is on {where or 'neither cluster'}"
    if where == ["east"]:
        east.run([cross_move(pair)], timeout=OP_TIMEOUT)
        assert ("victim" in names(east), "victim" in names(west)) == (False, True), point
        for c, side in ((east, "east"), (west, "west")):
            assert_clean(c, f"{side} after moving again past {point}")


@pytest.mark.parametrize("killed", ["source", "destination"])
def test_cross_cluster_move_survives_either_master(pair: Pair, tmp_path: Path, killed: str) -> None:
    armed, other = (pair.east, pair.west) if killed == "source" else (pair.west, pair.east)
    east, west = pair.east.start().client, pair.west.start().client
    put_back(pair, east, west)
    armed.stop_all()
    via = None if killed == "source" else other.running[0].client
    points = trace_points(armed, tmp_path, CROSS, pair, via=via)
    for point in representative(points):
        fault = f"master crash at {point} in instance.move between clusters ({killed})"

        def inject(point: str = point) -> bool:
            survivor = other.running[0].client
            put_back(pair, *sides_of(pair, armed.start().client, survivor, killed))
            armed.stop_all()
            if not crashed(armed, point, CROSS, pair, via=None if killed == "source" else survivor):
                return False
            check_move(pair, *sides_of(pair, armed.start().client, survivor, killed), point)
            armed.stop_all()
            return True

        survive(fault, inject)


def sides_of(pair: Pair, armed: Client, survivor: Client, killed: str) -> tuple[Client, Client]:
    """(east, west) clients, whichever of them is the master under test."""
    return (armed, survivor) if killed == "source" else (survivor, armed)


# ---- node evacuation --------------------------------------------------------------------

#: One instance the evacuation copies (file) and one it migrates (shared storage).
EVACUEES = {"copied": file_instance, "migrated": shared_instance}


def evacuate(lab: Any) -> dict[str, Any]:
    return {"op": "node.evacuate", "name": lab.nodes[1].name, "drain": True}


EVACUATE = Scenario("node.evacuate", op=evacuate)


def repopulate(c: Client, lab: Any) -> None:
    """Both instances back on the second node, running, and the node no longer drained."""
    second = lab.nodes[1].name
    c.run([{"op": "node.modify", "name": second, "drained": False}], timeout=OP_TIMEOUT)
    placed = {i["name"]: i["primary_node_name"] for i in c.query("instances")}
    for name, make in EVACUEES.items():
        if placed.get(name) != second:
            if name in placed:
                c.run([remove(name)], timeout=OP_TIMEOUT)
            c.run([make(name, second)], timeout=OP_TIMEOUT)


def run_jobs(c: Client, ops: list[dict[str, Any]]) -> None:
    """Run ``ops``, then every job they spawned, each to success."""
    result = c.run(ops, timeout=OP_TIMEOUT)
    for job_id in result.get("job_ids", []):
        doc = c.wait(job_id, timeout=OP_TIMEOUT)
        assert doc["status"] == "success", doc


def check_evacuation(c: Client, lab: Any, point: str) -> None:
    """Every job ended, everything clean, and evacuating again empties the node."""
    settled(c)
    assert_clean(c, f"after {point}")
    placed = [i["name"] for i in c.query("instances")]
    assert sorted(placed) == sorted(EVACUEES), f"after {point}: {placed}"
    run_jobs(c, [evacuate(lab)])
    settled(c)
    first = lab.nodes[0].name
    assert {i["primary_node_name"] for i in c.query("instances")} == {first}, point
    assert_clean(c, f"after evacuating again past {point}")


def test_node_evacuation_survives_the_master(
    lab_masters: tuple[Masters, Any], tmp_path: Path
) -> None:
    masters, lab = lab_masters
    repopulate(masters.start().client, lab)
    masters.stop_all()
    points = trace_points(masters, tmp_path, EVACUATE, lab)
    for point in representative(points):

        def inject(point: str = point) -> bool:
            repopulate(masters.start().client, lab)
            masters.stop_all()
            if not crashed(masters, point, EVACUATE, lab):
                return False
            check_evacuation(masters.start().client, lab, point)
            masters.stop_all()
            return True

        survive(f"master crash at {point} in node.evacuate", inject)
