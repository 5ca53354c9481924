"""playbooks/cluster_upgrade.yml on a cluster that site.yml built from lab nodes.

The lab nodes share this host's engine install, so the "upgrade" keeps the version
(herd_engine_install false): a forced run drains, empties and undrains every node in
turn but the master node (which cannot be drained), and a plain second run finds every
node current and changes nothing. A node an operator drained before stays drained; what
the master holds is read through its API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import herd
from herd.client import Client
from tests.ansible.integration.runner import REPO, Run, play
from tests.ansible.integration.test_playbooks import site_inventory, site_lab  # noqa: F401

pytestmark = pytest.mark.lab

PLAYBOOK = REPO / "playbooks" / "cluster_upgrade.yml"
EVACUATE = "Move every instance off the node"


def upgrade(
    collections: Path, work: Path, inventory: dict[str, Any], state: Path, force: bool
) -> Run:
    variables = {
        "herd_engine_version": herd.__version__,
        "herd_engine_install": False,
        "herd_upgrade_force": force,
        "herd_upgrade_state_dir": str(state),
    }
    return play(collections, work, inventory, PLAYBOOK, variables)


def test_rolling_upgrade_empties_each_node_in_turn_then_changes_nothing(
    collections: Path,
    site_lab: tuple[Any, Path, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    lab, _state_dir, socket = site_lab
    inventory = site_inventory(lab)
    built = play(collections, tmp_path / "site", inventory, REPO / "playbooks" / "site.yml")
    assert built.rc == 0 and built.failed() == 0, built.stats
    client = Client(str(socket))
    n1, n2 = (n.name for n in lab.nodes)
    try:
        client.run([{"op": "cluster.modify", "enabled_disk_templates": ["file"]}], timeout=120)
        client.run(
            [
                {"op": "instance.add", "name": "up1", "disk_template": "file", "disks": ["8M"],
                 "install": False, "start": False, "primary_node": n2},
            ],
            timeout=120,
        )  # fmt: skip

        first = upgrade(collections, tmp_path / "first", inventory, tmp_path / "marks", True)
        assert first.rc == 0 and first.failed() == 0, first.failed_tasks
        # The master node (n1) is never drained: only n2 was emptied, into n1.
        (evacuation,) = first.results[EVACUATE]
        assert evacuation["changed"] is True
        (inst,) = client.query("instances", ["up1"])
        assert inst["primary_node_name"] == n1
        assert [n["drained"] for n in client.query("nodes")] == [False, False]
        assert not list((tmp_path / "marks").iterdir())

        client.run([{"op": "node.modify", "name": n2, "drained": True}], timeout=120)
        before = client.dump()
        second = upgrade(collections, tmp_path / "second", inventory, tmp_path / "marks", False)
        assert second.rc == 0 and second.changed() == 0, second.stats
        assert EVACUATE not in second.results
        assert client.dump() == before
        assert [n["drained"] for n in client.query("nodes", [n2])] == [True]
    finally:
        client.close()
