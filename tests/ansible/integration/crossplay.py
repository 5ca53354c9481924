"""Playbooks from localhost between test_move_lab's two lab clusters, east and west.

The move, export and import plays all need both masters' sockets and a work directory
per run; this is where those are put together once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.integration.runner import Run, local_host, play
from tests.engine.ops.test_move_lab import Side


@dataclass
class CrossPlays:
    """Runs of playbooks with ``east`` as the cluster they act on, ``west`` as the other."""

    collections: Path
    work: Path
    east: Side
    west: Side

    def play(self, playbook: Path, name: str, cmdline: str = "", **variables: Any) -> Run:
        """``playbook`` run in a work directory of its own, ``name``."""
        inventory = {"all": {"hosts": {"localhost": local_host()}}}
        sockets = {
            "herd_socket": str(self.east.master.socket),
            "herd_dest_socket": str(self.west.master.socket),
        }
        return play(
            self.collections,
            self.work / name,
            inventory,
            playbook,
            {**sockets, **variables},
            cmdline,
        )


@pytest.fixture
def cross_plays(collections: Path, clusters: tuple[Side, Side], tmp_path: Path) -> CrossPlays:
    """Needs test_move_lab's ``clusters`` and ``custom_tool`` fixtures imported beside it."""
    return CrossPlays(collections, tmp_path, *clusters)
