"""The Molecule scenarios under extensions/molecule, each run as ``molecule test``.

Every scenario builds its own lab with lab/herdlab.py, converges, converges again (the
idempotence step fails on any change), verifies real state (herd-node answering over
SSH, the master's view of the cluster) and removes the lab. Each runs here under a lab
name and an ephemeral directory of its own, so a run never meets another run's lab or
molecule state, and whatever a failed run leaves is removed afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ansible.integration.runner import REPO
from tests.conftest import herdlab

pytestmark = pytest.mark.lab

SCENARIOS = sorted(p.parent.name for p in (REPO / "extensions" / "molecule").glob("*/molecule.yml"))
#: What CI runs: the scenarios that build a cluster from the lab's supported inventory
#: through the roles. The others drive playbooks the integration tests and the demo test
#: already run twice on a lab; ``HERD_MOLECULE_ALL=1`` runs every scenario.
CI_SCENARIOS = ("cluster", "node")
ALL = os.environ.get("HERD_MOLECULE_ALL") == "1"
#: Generous: the slowest scenario takes about a minute here.
TIMEOUT = 600


def test_every_scenario_is_collected() -> None:
    """A scenario dropped from the glob would silently stop being tested."""
    assert {"node", "cluster", "instance_create", "node_evacuate"} <= set(SCENARIOS)


def _leftovers(lab: str) -> list[str]:
    """What a scenario's destroy should have removed: the lab itself, its master daemon."""
    left = [f"lab {lab}"] if lab in {entry["name"] for entry in herdlab.status()} else []
    lab_dir = str(herdlab.DEFAULT_ROOT / lab).encode()
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"herd.cli.main" in argv and any(arg.startswith(lab_dir) for arg in argv):
            left.append(f"master pid {proc.name}")
    return left


@pytest.mark.skipif(shutil.which("molecule") is None, reason="molecule is not installed")
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario_passes(scenario: str, tmp_path: Path) -> None:
    if scenario not in CI_SCENARIOS and not ALL:
        pytest.skip("long form only (HERD_MOLECULE_ALL=1)")
    lab = f"mo{os.getpid()}{SCENARIOS.index(scenario)}"
    env = {
        **os.environ,
        "HERD_MOLECULE_LAB": lab,
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule"),
        "NO_COLOR": "1",
    }
    try:
        done = subprocess.run(
            ["molecule", "test", "-s", scenario],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        left = _leftovers(lab)
        if left:
            subprocess.run(
                ["molecule", "destroy", "-s", scenario], cwd=REPO, env=env, capture_output=True
            )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    # The summary line of each step ("node > verify: Executed: Successful"; an arrow
    # instead of ">" on a terminal): the idempotence step must have run, not been skipped.
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        done_step = re.compile(rf"^{scenario} (>|➜) {step}: Executed: Successful$", re.M)
        assert done_step.search(log), log[-6000:]
    assert left == []
