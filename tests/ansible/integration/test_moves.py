"""herd.cluster.instance_move, instance_export and instance_import between two lab clusters.

Two masters share a domain secret; instances are fake-hypervisor processes with real disk
files, whose SHA-256 and MACs are checked on the clusters themselves, not in Ansible's
answer. Each play runs twice: the second run must change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ansible.integration.runner import Run, local_host, play
from tests.engine.ops.test_move_lab import (  # noqa: F401 - fixtures
    Side,
    clusters,
    custom_tool,
    image_of,
    sha,
    write_data,
)

pytestmark = pytest.mark.lab

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "moves.yml"


def moves_play(
    collections: Path, work: Path, east: Side, west: Side, step: str, cmdline: str = ""
) -> Run:
    inventory = {"all": {"hosts": {"localhost": local_host()}}}
    variables = {
        "herd_socket": str(east.master.socket),
        "herd_dest_socket": str(west.master.socket),
        "herd_node": east.lab.nodes[0].name,
        "herd_step": step,
    }
    return play(collections, work, inventory, PLAYBOOK, variables, cmdline)


def named(side: Side, name: str) -> dict[str, Any] | None:
    return next((i for i in side.instances() if i["name"] == name), None)


def test_cross_cluster_move_then_a_second_run_changes_nothing(
    collections: Path,
    clusters: tuple[Side, Side],  # noqa: F811
    tmp_path: Path,
) -> None:
    east, west = clusters
    east.run(
        "instance.add",
        name="mv1",
        disk_template="file",
        disks=["16M"],
        os="herd-image+tiny",
        primary_node=east.lab.nodes[0].name,
    )
    inst = named(east, "mv1")
    assert inst is not None
    digest = sha(image_of(east, inst))

    check = moves_play(collections, tmp_path / "check", east, west, "move", "--check")
    assert check.rc == 0 and check.changed() == 1
    assert named(east, "mv1") is not None and named(west, "mv1") is None

    first = moves_play(collections, tmp_path / "first", east, west, "move")
    assert first.rc == 0 and first.changed() == 1, first.failed_tasks
    assert first.result("Move")["moved"] is True
    arrived = named(west, "mv1")
    assert arrived is not None and named(east, "mv1") is None
    assert [n["mac"] for n in arrived["nics"]] == [n["mac"] for n in inst["nics"]]
    assert sha(image_of(west, arrived)) == digest

    second = moves_play(collections, tmp_path / "second", east, west, "move")
    assert second.rc == 0 and second.changed() == 0
    assert second.result("Move")["moved"] is False and not second.result("Move")["job_ids"]
    west.run("instance.remove", name="mv1")


def test_export_and_import_then_a_second_run_changes_nothing(
    collections: Path,
    clusters: tuple[Side, Side],  # noqa: F811
    tmp_path: Path,
) -> None:
    east, west = clusters
    east.run(
        "instance.add",
        name="bk1",
        disk_template="file",
        disks=["32M"],
        os="herd-image+blank",
        primary_node=east.lab.nodes[1].name,
    )
    inst = named(east, "bk1")
    assert inst is not None
    write_data(image_of(east, inst), [3, 20])
    digest = sha(image_of(east, inst))

    backup = moves_play(collections, tmp_path / "backup", east, west, "backup")
    assert backup.rc == 0 and backup.changed() == 1, backup.failed_tasks
    assert backup.result("Export")["exported"] is True and named(east, "bk1") is None
    again = moves_play(collections, tmp_path / "backup-again", east, west, "backup")
    assert again.rc == 0 and again.changed() == 0, again.failed_tasks
    assert again.result("Export")["exported"] is False

    restore = moves_play(collections, tmp_path / "restore", east, west, "restore")
    assert restore.rc == 0 and restore.changed() == 1, restore.failed_tasks
    back = named(east, "bk1")
    assert back is not None and back["uuid"] != inst["uuid"]
    assert back["primary_node_name"] == east.lab.nodes[0].name
    assert [n["mac"] for n in back["nics"]] == [n["mac"] for n in inst["nics"]]
    assert sha(image_of(east, back)) == digest
    before = east.master.api.dump()
    again = moves_play(collections, tmp_path / "restore-again", east, west, "restore")
    assert again.rc == 0 and again.changed() == 0, again.failed_tasks
    assert east.master.api.dump() == before
    east.run("instance.remove", name="bk1")
    east.run("export.remove", name="bk1")
