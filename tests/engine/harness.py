"""A real master in a thread of the test process, on a real Unix socket and real SQLite.

Used by the job, API, master and CLI tests (fixtures in ``conftest.py``). Nodes are
written straight into the state directory's config store before the master starts, so
their locks exist (lock names are node UUIDs, registered at start-up) without SSH or a lab.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from herd.client import Client
from herd.config import Node, SQLiteStore
from herd.master.daemon import Master
from tests.conftest import make_lab

#: Bound for anything that should happen "soon"; only reached when a test fails.
PATIENCE = 15.0


def add_nodes(state_dir: Path, names: tuple[str, ...]) -> None:
    """Register nodes in the store a master on ``state_dir`` will open."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore(state_dir / "config.db")
    try:
        with store.transaction() as txn:
            for i, name in enumerate(names):
                txn.add(Node(name=name, primary_ip=f"192.0.2.{i + 1}"))
    finally:
        store.close()


def poll(what: str, check: Callable[[], Any], patience: float = PATIENCE) -> Any:
    """Return ``check()`` once it is truthy; fail naming ``what`` after ``patience`` s."""
    deadline = time.monotonic() + patience
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


@dataclass
class ThreadMaster:
    master: Master
    thread: threading.Thread
    state_dir: Path
    socket: Path
    _clients: list[Client] = field(default_factory=list)

    @functools.cached_property
    def api(self) -> Client:
        """One shared client for tests that talk to the master from a single thread."""
        return self.client()

    def client(self) -> Client:
        """A new client (clients are one-connection, one-thread objects)."""
        c = Client(str(self.socket), timeout=PATIENCE * 2)
        self._clients.append(c)
        return c

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        self.master.shutdown()
        self.thread.join(PATIENCE)
        assert not self.thread.is_alive(), "master did not stop"

    def wait_status(
        self, job_id: int, *statuses: str, patience: float = PATIENCE
    ) -> dict[str, Any]:
        c = self.client()
        return poll(
            f"job {job_id} to reach {statuses}",
            lambda: (doc := c.job(job_id))["status"] in statuses and doc,
            patience,
        )


def start_thread_master(
    base: Path, max_running: int | None = None, https_bind: str | None = None
) -> ThreadMaster:
    """A master on ``base/state`` serving ``base/master.sock`` from a daemon thread (and
    HTTPS on ``https_bind`` once the cluster exists)."""
    state, sock = base / "state", base / "master.sock"
    master = Master(state, sock, max_running=max_running, https_bind=https_bind)
    thread = threading.Thread(target=master.serve, daemon=True, name="test-master")
    thread.start()
    tm = ThreadMaster(master, thread, state, sock)
    poll("the master to answer", lambda: tm.api.info())
    return tm


@contextlib.contextmanager
def cluster_on_lab(
    base: Path, suffix: str, nodes: int, name: str, https_bind: str | None = None, **settings: Any
) -> Iterator[tuple[ThreadMaster, Any]]:
    """A fresh lab, a master in this process and cluster ``name`` on every lab node.

    Teardown removes whatever instances the tests left (a dead node does not stop it),
    stops the master and takes the lab down.
    """
    labs = make_lab(suffix, nodes)
    lab = next(labs)
    mp = pytest.MonkeyPatch()
    mp.setenv("HERD_BOOTSTRAP_KEY", lab.key_path)
    running = start_thread_master(base, https_bind=https_bind)
    first = lab.nodes[0]
    try:
        running.api.run(
            [
                {"op": "cluster.init", "name": name, "master_node": first.name,
                 "primary_ip": first.ip, "ssh_port": first.port, **settings},
                *({"op": "node.add", "name": n.name, "primary_ip": n.ip, "ssh_port": n.port}
                  for n in lab.nodes[1:]),
            ],
            timeout=120,
        )  # fmt: skip
        yield running, lab
    finally:
        for inst in running.api.query("instances"):
            running.api.run(
                [{"op": "instance.remove", "name": inst["name"], "shutdown_timeout": 0,
                  "ignore_failures": True}],
                timeout=120,
            )  # fmt: skip
        running.stop()
        mp.undo()
        labs.close()
