"""A throw-away lab cluster for the instance benchmarks: herdlab nodes, a real master.

The master runs as its own process (as in production, see ``bench_queue.start_master``)
and reaches the lab nodes over real SSH; instances use the fake hypervisor and file disks,
so a create costs what the engine and the node calls cost, not what an OS install costs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_queue import start_master

from herd.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))

import herdlab  # the lab builder lives beside the engine, not in it


@contextmanager
def lab_cluster(nodes: int, prefix: str) -> Iterator[tuple[Client, Any]]:
    """Yield a client of a master whose cluster spans ``nodes`` fresh lab nodes."""
    reason = herdlab.missing_requirements()
    if reason:
        raise SystemExit(f"cannot build a lab here: {reason}")
    name = f"{prefix}{os.getpid()}"
    lab = herdlab.up(name, nodes, owner_pid=os.getpid())
    os.environ["HERD_BOOTSTRAP_KEY"] = lab.key_path
    with tempfile.TemporaryDirectory(prefix="herd-bench-") as tmp:
        state, sock = Path(tmp) / "state", Path(tmp) / "master.sock"
        state.mkdir(mode=0o700)
        master = start_master(state, sock)
        client = Client(str(sock), timeout=600)
        try:
            first, *others = lab.nodes
            client.run(
                [
                    {
                        "op": "cluster.init",
                        "name": "bench",
                        "master_node": first.name,
                        "primary_ip": first.ip,
                        "ssh_port": first.port,
                        "enabled_hypervisors": ["fake"],
                        "enabled_disk_templates": ["file"],
                        "beparams": {"memory": 32},
                    },
                    *(
                        {"op": "node.add", "name": n.name, "primary_ip": n.ip, "ssh_port": n.port}
                        for n in others
                    ),
                ],
                timeout=300,
            )
            yield client, lab
        finally:
            client.close()
            master.terminate()
            master.wait(30)
            herdlab.down(name)


def create_op(name: str, **params: Any) -> dict[str, Any]:
    """A create without OS install: file disk, fake hypervisor, started."""
    return {
        "op": "instance.add",
        "name": name,
        "disk_template": "file",
        "disks": ["8M"],
        "install": False,
        **params,
    }


def remove_all(client: Client) -> None:
    names = [i["name"] for i in client.query("instances")]
    if names:
        ops = [{"op": "instance.remove", "name": n, "shutdown_timeout": 0} for n in names]
        for job_id in client.submit_many([{"ops": [op]} for op in ops]):
            client.wait(job_id, 600)
