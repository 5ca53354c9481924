"""The README's first command in its no-DRBD form (the DRBD part runs in tests/vm): the
whole demo, playbooks and all, on labs of its own, must finish and show every second
playbook run changing nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
#: Bound for a demo that hangs; a healthy one on a loaded CI machine takes minutes.
PATIENCE = 2400


def test_the_demo_tells_the_whole_story_with_playbooks(tmp_path: Path) -> None:
    env = {**os.environ, "HERD_DEMO_DIR": str(tmp_path / "demo"), "HERD_DEMO_LABS": "td"}
    try:
        done = subprocess.run(
            [sys.executable, str(DEMO), "--no-drbd"],
            env=env,
            text=True,
            capture_output=True,
            timeout=PATIENCE,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        out = done.stdout
        for playbook in ("site.yml", "instance_create.yml", "instance_move.yml"):
            assert f"== {playbook} again: everything is already as declared" in out
        assert "ansible -i" in out and "-m herd.cluster.instance" in out
        source = re.search(r"disk sha256 on alpha \(source, zeroed\): (\w+)", out)
        moved = re.search(r"disk sha256 on beta \(moved\):\s+(\w+)", out)
        assert source and moved and source.group(1) == moved.group(1)
        assert "Demo finished" in out
    finally:
        subprocess.run([sys.executable, str(DEMO), "down"], env=env, capture_output=True)
