"""playbooks/instance_move.yml between two real lab clusters (fake hypervisor, real disks).

The clusters are test_moves.py's: two masters sharing a domain secret. What the playbook
did is read from the clusters and the nodes' disk files, not taken from Ansible's word:
the copies' MACs, admin state and disk digests, the sources gone, and the deleted data
that zeroing kept off the destination's disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ansible.integration.crossplay import CrossPlays, cross_plays  # noqa: F401 - fixture
from tests.ansible.integration.runner import REPO, Run
from tests.engine.ops.labsupport import TINY
from tests.engine.ops.test_move_lab import (  # noqa: F401 - fixtures
    clusters,
    custom_tool,
    image_of,
    sha,
)
from tests.engine.ops.test_zeroing import MIB, marker, placeholder_image, write_and_delete

pytestmark = pytest.mark.lab

PLAYBOOK = REPO / "playbooks" / "instance_move.yml"
MOVE = "Move each instance, keeping its source for the check"
VERIFY = "Verify each copy (present, same MACs, expected admin state)"
REMOVE = "Remove the verified sources"


def move_play(plays: CrossPlays, name: str, names: list[str], cmdline: str = "") -> Run:
    return plays.play(
        PLAYBOOK,
        name,
        cmdline,
        herd_become=False,
        herd_move_instances=[{"name": n} for n in names],
        herd_move_zero_free_space=True,
        herd_move_compression="zstd",
        herd_move_shutdown_timeout=10,
    )


def items(run: Run, task: str) -> dict[str, dict[str, Any]]:
    """A looped task's result per instance name (the task's summary event has no item)."""
    return {r["item"]["name"]: r for r in run.results.get(task, []) if "item" in r}


def allocated(path: Path) -> int:
    """Bytes the disk file really holds: the receiver writes only the extents it got."""
    return path.stat().st_blocks * 512


def test_moves_verify_then_remove_sources_and_a_rerun_changes_nothing(
    cross_plays: CrossPlays,  # noqa: F811
) -> None:
    east, west = cross_plays.east, cross_plays.west
    east.run("cluster.modify", zeroing_image=placeholder_image(cross_plays.work / "image"))
    n1 = east.lab.nodes[0].name
    sources = {
        "pm1": east.add_file("pm1", "128M", os=TINY, primary_node=n1),
        "pm2": east.add_file("pm2", "16M", os=TINY, primary_node=n1, start=False),
    }
    write_and_delete(image_of(east, sources["pm1"]), 48)
    digest_pm2 = sha(image_of(east, sources["pm2"]))

    # An interrupted run: pm2 was moved (with its source kept), nothing verified or removed.
    interrupted = move_play(cross_plays, "moved", ["pm2"], "--tags move")
    assert interrupted.rc == 0 and interrupted.changed() == 1, interrupted.failed_tasks
    assert REMOVE not in interrupted.results
    assert east.find("pm2") is not None and west.find("pm2") is not None

    first = move_play(cross_plays, "first", ["pm1", "pm2"])
    assert first.rc == 0 and first.failed() == 0, first.failed_tasks
    moves = items(first, MOVE)
    assert moves["pm1"]["moved"] is True and moves["pm2"]["moved"] is False
    removed = {n: r["changed"] for n, r in items(first, REMOVE).items()}
    assert removed == {"pm1": True, "pm2": True}
    assert first.changed() == 2  # tasks, not items: the moves (pm1), the removals
    for name, source in sources.items():
        assert source is not None and east.find(name) is None
        copy = west.find(name)
        assert copy is not None
        assert [n["mac"] for n in copy["nics"]] == [n["mac"] for n in source["nics"]]
        assert copy["admin_state"] == source["admin_state"]
    assert sha(image_of(west, west.find("pm2"))) == digest_pm2  # type: ignore[arg-type]
    pm1 = image_of(west, west.find("pm1"))  # type: ignore[arg-type]
    assert allocated(pm1) < 16 * MIB and "name=pm1" in marker(pm1)

    before = (east.master.api.dump(), west.master.api.dump())
    second = move_play(cross_plays, "second", ["pm1", "pm2"])
    assert second.rc == 0 and second.changed() == 0, second.failed_tasks
    assert all(not r["job_ids"] for r in items(second, MOVE).values())
    assert (east.master.api.dump(), west.master.api.dump()) == before
    for name in sources:
        west.run("instance.remove", name=name)


def test_a_copy_that_fails_verification_keeps_every_source(
    cross_plays: CrossPlays,  # noqa: F811
) -> None:
    east, west = cross_plays.east, cross_plays.west
    for side in (east, west):
        side.add_file("pm3", "16M", install=False, primary_node=side.lab.nodes[0].name, start=False)
    before = east.master.api.dump()

    run = move_play(cross_plays, "clash", ["pm3"])

    assert run.rc != 0 and run.failed_tasks == [VERIFY]
    (verdict,) = run.result(VERIFY)["results"]
    assert "not the moved instance" in verdict["msg"]
    assert east.master.api.dump() == before
    for side in (east, west):
        side.run("instance.remove", name="pm3")
