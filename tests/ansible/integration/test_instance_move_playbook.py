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

from tests.ansible.integration.runner import REPO, Run, local_host, play
from tests.engine.ops.test_move_lab import (  # noqa: F401 - fixtures
    Side,
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


def move_play(
    collections: Path, work: Path, east: Side, west: Side, names: list[str], cmdline: str = ""
) -> Run:
    inventory = {"all": {"hosts": {"localhost": local_host()}}}
    variables = {
        "herd_socket": str(east.master.socket),
        "herd_dest_socket": str(west.master.socket),
        "herd_become": False,
        "herd_move_instances": [{"name": n} for n in names],
        "herd_move_zero_free_space": True,
        "herd_move_compression": "zstd",
        "herd_move_shutdown_timeout": 10,
    }
    return play(collections, work, inventory, PLAYBOOK, variables, cmdline)


def named(side: Side, name: str) -> dict[str, Any] | None:
    return next((i for i in side.instances() if i["name"] == name), None)


def items(run: Run, task: str) -> dict[str, dict[str, Any]]:
    """A looped task's result per instance name (the task's summary event has no item)."""
    return {r["item"]["name"]: r for r in run.results.get(task, []) if "item" in r}


def allocated(path: Path) -> int:
    """Bytes the disk file really holds: the receiver writes only the extents it got."""
    return path.stat().st_blocks * 512


def test_moves_verify_then_remove_sources_and_a_rerun_changes_nothing(
    collections: Path,
    clusters: tuple[Side, Side],  # noqa: F811
    tmp_path: Path,
) -> None:
    east, west = clusters
    east.run("cluster.modify", zeroing_image=placeholder_image(tmp_path / "image"))
    n1 = east.lab.nodes[0].name
    east.run("instance.add", name="pm1", disk_template="file", disks=["128M"],
             os="herd-image+tiny", primary_node=n1)  # fmt: skip
    east.run("instance.add", name="pm2", disk_template="file", disks=["16M"],
             os="herd-image+tiny", primary_node=n1, start=False)  # fmt: skip
    sources = {name: named(east, name) for name in ("pm1", "pm2")}
    write_and_delete(image_of(east, sources["pm1"]), 48)  # type: ignore[arg-type]
    digest_pm2 = sha(image_of(east, sources["pm2"]))  # type: ignore[arg-type]

    # An interrupted run: pm2 was moved (with its source kept), nothing verified or removed.
    interrupted = move_play(collections, tmp_path / "moved", east, west, ["pm2"], "--tags move")
    assert interrupted.rc == 0 and interrupted.changed() == 1, interrupted.failed_tasks
    assert REMOVE not in interrupted.results
    assert named(east, "pm2") is not None and named(west, "pm2") is not None

    first = move_play(collections, tmp_path / "first", east, west, ["pm1", "pm2"])
    assert first.rc == 0 and first.failed() == 0, first.failed_tasks
    moves = items(first, MOVE)
    assert moves["pm1"]["moved"] is True and moves["pm2"]["moved"] is False
    removed = {n: r["changed"] for n, r in items(first, REMOVE).items()}
    assert removed == {"pm1": True, "pm2": True}
    assert first.changed() == 2  # tasks, not items: the moves (pm1), the removals
    for name, source in sources.items():
        assert source is not None and named(east, name) is None
        copy = named(west, name)
        assert copy is not None
        assert [n["mac"] for n in copy["nics"]] == [n["mac"] for n in source["nics"]]
        assert copy["admin_state"] == source["admin_state"]
    assert sha(image_of(west, named(west, "pm2"))) == digest_pm2  # type: ignore[arg-type]
    pm1 = image_of(west, named(west, "pm1"))  # type: ignore[arg-type]
    assert allocated(pm1) < 16 * MIB and "name=pm1" in marker(pm1)

    before = (east.master.api.dump(), west.master.api.dump())
    second = move_play(collections, tmp_path / "second", east, west, ["pm1", "pm2"])
    assert second.rc == 0 and second.changed() == 0, second.failed_tasks
    assert all(not r["job_ids"] for r in items(second, MOVE).values())
    assert (east.master.api.dump(), west.master.api.dump()) == before
    for name in sources:
        west.run("instance.remove", name=name)


def test_a_copy_that_fails_verification_keeps_every_source(
    collections: Path,
    clusters: tuple[Side, Side],  # noqa: F811
    tmp_path: Path,
) -> None:
    east, west = clusters
    for side in (east, west):
        side.run("instance.add", name="pm3", disk_template="file", disks=["16M"],
                 install=False, primary_node=side.lab.nodes[0].name, start=False)  # fmt: skip
    before = east.master.api.dump()

    run = move_play(collections, tmp_path / "clash", east, west, ["pm3"])

    assert run.rc != 0 and run.failed_tasks == [VERIFY]
    (verdict,) = run.result(VERIFY)["results"]
    assert "not the moved instance" in verdict["msg"]
    assert east.master.api.dump() == before
    for side in (east, west):
        side.run("instance.remove", name="pm3")
