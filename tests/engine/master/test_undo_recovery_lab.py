"""``kill -9`` of a real master in the middle of an instance create on a lab node.

The OS create script stops at a gate (it says it has started, then waits for a file), so
the test kills the master at a known point: the disk exists on the node, the job runs and
holds the node's lock, a second job waits for that lock. The next master must finish the
journaled undo before it serves: the disk gone from the node, the job failed naming the
restart with the cleanup in its log, the waiting job queued again and run, no lock left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.harness import poll
from tests.engine.master.test_daemon import ProcessMaster, wait_status

pytestmark = pytest.mark.lab

GATE_SCRIPT = """#!/bin/sh
touch {reached}
i=0
while [ ! -e {release} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
"""


def install_gate_os(node: Any, gate: Path) -> None:
    """An OS whose scripts report that they run, then wait until ``gate/open`` exists."""
    os_dir = node.state_dir / "os" / "gate"
    os_dir.mkdir(parents=True)
    (os_dir / "ganeti_api_version").write_text("20\n")
    (os_dir / "variants.list").write_text("default\n")
    (os_dir / "parameters.list").write_text("")
    script = GATE_SCRIPT.format(reached=gate / "reached", release=gate / "open")
    for name in ("create", "import", "export", "rename", "verify"):
        path = os_dir / name
        path.write_text(script)
        os.chmod(path, 0o755)


def disk_files(node: Any) -> list[Path]:
    return sorted((node.state_dir / "file-storage").rglob("*.img"))


def create(name: str, node: str) -> dict[str, Any]:
    return {"op": "instance.add", "name": name, "disk_template": "file", "disks": ["16M"],
            "os": "gate+default", "primary_node": node}  # fmt: skip


@pytest.fixture
def lab_master(
    scratch_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[ProcessMaster], Any]]:
    monkeypatch.setenv("HERD_BOOTSTRAP_KEY", scratch_lab.key_path)
    masters: list[ProcessMaster] = []
    yield masters, scratch_lab
    for pm in masters:
        pm.stop()


def start(masters: list[ProcessMaster], tmp_path: Path) -> ProcessMaster:
    pm = ProcessMaster(tmp_path / "state", tmp_path / "master.sock")
    masters.append(pm)
    return pm


def test_kill_9_mid_create_is_rolled_back_at_the_next_start(
    lab_master: tuple[list[ProcessMaster], Any], tmp_path: Path
) -> None:
    masters, lab = lab_master
    s1 = lab.nodes[0]
    gate = tmp_path / "gate"
    gate.mkdir()
    install_gate_os(s1, gate)
    first = start(masters, tmp_path)
    first.client.run(
        [{"op": "cluster.init", "name": "crash", "master_node": s1.name, "primary_ip": s1.ip,
          "ssh_port": s1.port, "enabled_hypervisors": ["fake"],
          "enabled_disk_templates": ["file"], "beparams": {"memory": 32}}],
        timeout=120,
    )  # fmt: skip
    before = disk_files(s1)
    job = first.client.submit([create("victim", s1.name)])
    poll("the OS script to start", lambda: (gate / "reached").exists(), patience=120)
    behind = first.client.submit([{"op": "debug.delay", "lock_nodes": [s1.name]}])
    wait_status(first.client, behind, "waiting")
    assert len(disk_files(s1)) == len(before) + 1
    first.kill()
    (gate / "open").touch()

    second = start(masters, tmp_path)
    c = second.client
    doc = c.job(job)
    assert doc["status"] == "error"
    assert "master restarted while this job was running" in doc["error"]["message"]
    assert "undo step(s) finished at start-up" in doc["error"]["message"]
    lines = [e["message"] for e in doc["log"]]
    assert f"after restart, rollback: remove disk 0 of victim on {s1.name}" in lines, lines
    assert lines[-1] == "master restarted: job marked error"
    assert disk_files(s1) == before
    assert c.query("instances") == []

    assert wait_status(c, behind, "success")["ops"][0]["result"]["locked_nodes"] == [s1.name]
    assert not [lock for lock in c.locks() if lock["holders"] or lock["pending"]]
    c.run([create("victim", s1.name)], timeout=120)
    assert len(disk_files(s1)) == len(before) + 1
    c.run([{"op": "instance.remove", "name": "victim", "shutdown_timeout": 0}], timeout=120)
