"""Running playbooks against the collection in this checkout, for the integration tests.

Playbooks run with ansible-playbook through ansible-runner, which hands back every task
result as an event, so a test can assert on one task's ``changed``, ``diff`` or ``msg``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Run:
    """One ansible-playbook run: its recap, the result of every task by task name, and the
    names of the tasks that failed."""

    rc: int
    stats: dict[str, dict[str, int]]
    results: dict[str, list[dict[str, Any]]]
    failed_tasks: list[str]

    def changed(self) -> int:
        return sum(self.stats.get("changed", {}).values())

    def failed(self) -> int:
        return sum(self.stats.get("failures", {}).values())

    def result(self, task: str) -> dict[str, Any]:
        (res,) = self.results[task]
        return res


def play(
    collections: Path,
    work: Path,
    inventory: dict[str, Any],
    playbook: Path,
    extravars: dict[str, Any] | None = None,
    cmdline: str = "",
) -> Run:
    work.mkdir(parents=True, exist_ok=True)
    inventory_path = work / "inventory.json"
    inventory_path.write_text(json.dumps(inventory))
    runner = ansible_runner.run(
        private_data_dir=str(work),
        playbook=str(playbook),
        inventory=str(inventory_path),
        extravars=extravars or {},
        cmdline=cmdline or None,
        envvars={
            "ANSIBLE_COLLECTIONS_PATH": str(collections),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            # Labs reuse addresses: a control master left by an earlier lab at the same
            # ip:port would hang this run, so each run gets its own (short) socket dir.
            "ANSIBLE_SSH_CONTROL_PATH_DIR": tempfile.mkdtemp(prefix="hcp"),
        },
        quiet=True,
    )
    results: dict[str, list[dict[str, Any]]] = {}
    failed_tasks = []
    for event in runner.events:
        kind = event.get("event")
        if kind in ("runner_on_ok", "runner_on_failed", "runner_item_on_ok"):
            data = event["event_data"]
            results.setdefault(data["task"], []).append(data["res"])
            if kind == "runner_on_failed":
                failed_tasks.append(data["task"])
    return Run(runner.rc, runner.stats or {}, results, failed_tasks)


def local_host() -> dict[str, Any]:
    return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def lab_nodes(lab: Any) -> list[dict[str, Any]]:
    return [{"name": n.name, "ip": n.ip, "port": n.port, "host_key": n.host_key} for n in lab.nodes]
