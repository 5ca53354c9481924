"""herd.cluster.instance_move, instance_export and instance_import between two lab clusters.

Two masters share a domain secret; instances are fake-hypervisor processes with real disk
files, whose SHA-256 and MACs are checked on the clusters themselves, not in Ansible's
answer. Each play runs twice: the second run must change nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ansible.integration.crossplay import CrossPlays, cross_plays  # noqa: F401 - fixture
from tests.ansible.integration.runner import Run
from tests.engine.ops.labsupport import BLANK, TINY
from tests.engine.ops.test_move_lab import (  # noqa: F401 - fixtures
    clusters,
    custom_tool,
    image_of,
    sha,
    write_data,
)

pytestmark = pytest.mark.lab

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "moves.yml"


def moves_play(plays: CrossPlays, name: str, step: str, cmdline: str = "") -> Run:
    return plays.play(
        PLAYBOOK, name, cmdline, herd_node=plays.east.lab.nodes[0].name, herd_step=step
    )


def test_cross_cluster_move_then_a_second_run_changes_nothing(
    cross_plays: CrossPlays,  # noqa: F811
) -> None:
    east, west = cross_plays.east, cross_plays.west
    inst = east.add_file("mv1", "16M", os=TINY, primary_node=east.lab.nodes[0].name)
    digest = sha(image_of(east, inst))

    check = moves_play(cross_plays, "check", "move", "--check")
    assert check.rc == 0 and check.changed() == 1
    assert east.find("mv1") is not None and west.find("mv1") is None

    first = moves_play(cross_plays, "first", "move")
    assert first.rc == 0 and first.changed() == 1, first.failed_tasks
    assert first.result("Move")["moved"] is True
    arrived = west.find("mv1")
    assert arrived is not None and east.find("mv1") is None
    assert [n["mac"] for n in arrived["nics"]] == [n["mac"] for n in inst["nics"]]
    assert sha(image_of(west, arrived)) == digest

    second = moves_play(cross_plays, "second", "move")
    assert second.rc == 0 and second.changed() == 0
    assert second.result("Move")["moved"] is False and not second.result("Move")["job_ids"]
    west.run("instance.remove", name="mv1")


def test_export_and_import_then_a_second_run_changes_nothing(
    cross_plays: CrossPlays,  # noqa: F811
) -> None:
    east = cross_plays.east
    inst = east.add_file("bk1", "32M", os=BLANK, primary_node=east.lab.nodes[1].name)
    write_data(image_of(east, inst), [3, 20])
    digest = sha(image_of(east, inst))

    backup = moves_play(cross_plays, "backup", "backup")
    assert backup.rc == 0 and backup.changed() == 1, backup.failed_tasks
    assert backup.result("Export")["exported"] is True and east.find("bk1") is None
    again = moves_play(cross_plays, "backup-again", "backup")
    assert again.rc == 0 and again.changed() == 0, again.failed_tasks
    assert again.result("Export")["exported"] is False

    restore = moves_play(cross_plays, "restore", "restore")
    assert restore.rc == 0 and restore.changed() == 1, restore.failed_tasks
    back = east.find("bk1")
    assert back is not None and back["uuid"] != inst["uuid"]
    assert back["primary_node_name"] == east.lab.nodes[0].name
    assert [n["mac"] for n in back["nics"]] == [n["mac"] for n in inst["nics"]]
    assert sha(image_of(east, back)) == digest
    before = east.master.api.dump()
    again = moves_play(cross_plays, "restore-again", "restore")
    assert again.rc == 0 and again.changed() == 0, again.failed_tasks
    assert east.master.api.dump() == before
    east.run("instance.remove", name="bk1")
    east.run("export.remove", name="bk1")
