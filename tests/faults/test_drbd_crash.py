"""DRBD ops with the master killed at their crash points, on the two qemu guests.

The same campaign as ``test_crash_points`` (its machinery, imported as
``test_move_crash`` does), on a cluster of the VM nodes with DRBD 8.4: for each point
a real master process dies there, a normal one restarts on the same state, and the
checks are theirs (job ended, no lock, no ``ENODEORPHAN*`` from verify — DRBD
resources, minors and LVs included —, config matches, the op run again succeeds) plus
one of DRBD's own: no minor left Primary on both guests.

The guests are software-emulated and slow, so CI runs one fixed point of instance.add
(the middle one: both guests hold the resource, the config does not yet have the
instance); ``HERD_FAULTS_ALL=1`` runs every point of every op.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vmnodes

from tests.faults.record import record
from tests.faults.test_crash_points import (
    FULL,
    LONG_FORM_ONLY,
    OP_TIMEOUT,
    Masters,
    Scenario,
    check_after_restart,
    crash_at,
    has_instance,
    remove,
    reset,
    trace_points,
)
from tests.lab.conftest import vm_nodes
from tests.vm.helpers import ON_VM_GUESTS, dual_primaries, prepare_nodes, scrub_nodes

__all__ = ["vm_nodes"]  # the session's guests, shared with tests/vm
pytestmark = ON_VM_GUESTS

DISK = "16M"


def drbd_instance(name: str, lab: vmnodes.VMLab, **extra: Any) -> dict[str, Any]:
    n1, n2 = lab.nodes
    return {"op": "instance.add", "name": name, "disk_template": "drbd", "disks": [DISK],
            "install": False, "primary_node": n1.name, "secondary_node": n2.name,
            **extra}  # fmt: skip


def plain_instance(name: str, lab: vmnodes.VMLab) -> dict[str, Any]:
    return {"op": "instance.add", "name": name, "disk_template": "plain", "disks": [DISK],
            "install": False, "primary_node": lab.nodes[0].name, "start": False}  # fmt: skip


def template_is(template: str) -> Any:
    return lambda c: c.query("instances")[0]["disk_template"] == template


def primary_is(index: int, lab: vmnodes.VMLab) -> Any:
    return lambda c: c.query("instances")[0]["primary_node_name"] == lab.nodes[index].name


def move_to(op: str, index: int) -> Any:
    """Fail over or migrate the victim to guest ``index`` (as the op and as its reset)."""
    return lambda lab: {"op": op, "name": "victim", "target_node": lab.nodes[index].name}


def scenarios(lab: vmnodes.VMLab) -> list[Scenario]:
    """Built per lab: what counts as applied names the guests."""
    return [
        Scenario(
            "instance.add drbd",
            op=lambda lab: drbd_instance("victim", lab),
            reset=lambda lab: [remove("victim")],
            applied=has_instance("victim"),
            undone_on_failure=True,
        ),
        Scenario(
            "instance.modify plain-to-drbd",
            setup=lambda lab: [plain_instance("victim", lab)],
            op=lambda lab: {
                "op": "instance.modify",
                "name": "victim",
                "disk_template": "drbd",
                "secondary_node": lab.nodes[1].name,
            },
            reset=lambda lab: [remove("victim"), plain_instance("victim", lab)],
            applied=template_is("drbd"),
        ),
        Scenario(
            "instance.modify drbd-to-plain",
            setup=lambda lab: [drbd_instance("victim", lab, start=False)],
            op=lambda lab: {"op": "instance.modify", "name": "victim", "disk_template": "plain"},
            reset=lambda lab: [remove("victim"), drbd_instance("victim", lab, start=False)],
            applied=template_is("plain"),
        ),
        Scenario(
            "instance.replace_disks",
            setup=lambda lab: [drbd_instance("victim", lab)],
            op=lambda lab: {
                "op": "instance.replace_disks",
                "name": "victim",
                "mode": "on_secondary",
            },
        ),
        Scenario(
            "instance.failover drbd",
            setup=lambda lab: [drbd_instance("victim", lab)],
            op=move_to("instance.failover", 1),
            reset=lambda lab: [move_to("instance.failover", 0)(lab)],
            applied=primary_is(1, lab),
        ),
        Scenario(
            "instance.migrate drbd",
            setup=lambda lab: [drbd_instance("victim", lab)],
            op=move_to("instance.migrate", 1),
            reset=lambda lab: [move_to("instance.migrate", 0)(lab)],
            applied=primary_is(1, lab),
        ),
    ]


SCENARIO_NAMES = [
    "instance.add drbd",
    "instance.modify plain-to-drbd",
    "instance.modify drbd-to-plain",
    "instance.replace_disks",
    "instance.failover drbd",
    "instance.migrate drbd",
]


def sample(points: list[str]) -> list[str]:
    """All points in the long form; else the middle one (fixed, not random)."""
    return points if FULL else [points[len(points) // 2]]


@pytest.fixture
def vm_masters(
    vm_nodes: vmnodes.VMLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Masters, vmnodes.VMLab]]:
    """A cluster of both guests under real master processes; guests scrubbed after."""
    monkeypatch.setenv("HERD_BOOTSTRAP_KEY", vm_nodes.key_path)
    prepare_nodes(vm_nodes)
    masters = Masters(tmp_path)
    n1, n2 = vm_nodes.nodes
    masters.start().client.run(
        [{"op": "cluster.init", "name": "drbdcrash", "master_node": n1.name,
          "primary_ip": n1.ip, "host_key": n1.host_key, "enabled_hypervisors": ["fake"],
          "enabled_disk_templates": ["drbd", "plain"], "beparams": {"memory": 32}},
         {"op": "node.add", "name": n2.name, "primary_ip": n2.ip, "host_key": n2.host_key}],
        timeout=OP_TIMEOUT,
    )  # fmt: skip
    masters.stop_all()
    try:
        yield masters, vm_nodes
    finally:
        masters.stop_all()
        pm = masters.start()
        for inst in pm.client.query("instances"):
            pm.client.run([{**remove(inst["name"]), "ignore_failures": True}], timeout=OP_TIMEOUT)
        masters.stop_all()
        scrub_nodes(vm_nodes)


#: What CI runs; the guests' setup alone takes most of a minute, so the others are skipped
#: before their fixture runs, not inside the test.
CI_SCENARIOS = ("instance.add drbd",)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, id=n.replace(" ", "-"), marks=() if n in CI_SCENARIOS else LONG_FORM_ONLY)
        for n in SCENARIO_NAMES
    ],
)
def test_drbd_crash_points_are_survived(
    name: str, vm_masters: tuple[Masters, vmnodes.VMLab], tmp_path: Path
) -> None:
    masters, lab = vm_masters
    scenario = next(s for s in scenarios(lab) if s.name == name)
    setup = masters.start()
    for op in scenario.setup(lab):
        setup.client.run([op], timeout=OP_TIMEOUT)
    masters.stop_all()
    points = trace_points(masters, tmp_path, scenario, lab)
    reset(masters, scenario, lab)
    for point in sample(points):
        fault = f"master crash at {point} in {scenario.name}"
        try:
            crash_at(masters, point, scenario, lab)
            pm = masters.start()
            check_after_restart(pm.client, point, scenario, lab)
            assert dual_primaries(lab) == [], point
            for op in scenario.reset(lab):
                pm.client.run([op], timeout=OP_TIMEOUT)
            masters.stop_all()
        except BaseException:
            record(fault, survived=False)
            raise
        record(fault, survived=True)
