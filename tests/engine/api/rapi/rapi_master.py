"""A real master serving RAPI beside /v1, on a seeded cluster (no lab, no SSH).

The cluster is the one ``https_master.seed_cluster`` writes, plus an offline node ``n3``
holding instance ``web1``: an offline primary is never called, so instance reads answer
at once without a node to ask, and a write to ``web1`` is a real job that fails cleanly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from herd.api.rapi.users import USERS_FILE, ha1
from herd.config import Disk, Instance, Nic, Node, SQLiteStore
from herd.crypto.ca import ClusterCA
from herd.master.daemon import Master
from tests.engine.api.https_master import seed_cluster
from tests.engine.harness import ThreadMaster, poll

#: user → (password, the users file line).
USERS = {
    "admin": ("s3cret", "admin {HA1}" + ha1("admin", "s3cret") + " write"),
    "viewer": ("look", "viewer {cleartext}look read"),
}


@dataclass
class RapiMaster:
    running: ThreadMaster
    port: int
    ca_file: Path


def seed_instance(state_dir: Path) -> None:
    store = SQLiteStore(state_dir / "config.db")
    try:
        group = store.list("nodegroup")[0]
        n3 = Node(name="n3", primary_ip="192.0.2.3", group=group.uuid, offline=True)
        with store.transaction() as txn:
            txn.add(n3)
            txn.add(
                Instance(
                    name="web1",
                    primary_node=n3.uuid,
                    os="noop",
                    hypervisor="fake",
                    disk_template="file",
                    disks=[Disk(name="d0", size_mib=1024, template="file", nodes=[n3.uuid])],
                    nics=[Nic(name="n0", mac="aa:00:00:00:00:01", link="br0")],
                    admin_state="up",
                )
            )
    finally:
        store.close()


def start_rapi_master(base: Path) -> RapiMaster:
    state, sock = base / "state", base / "master.sock"
    seed_cluster(state)
    seed_instance(state)
    users = state / USERS_FILE
    users.parent.mkdir(mode=0o700)
    users.write_text("# RAPI users\n" + "".join(line + "\n" for _, line in USERS.values()))
    users.chmod(0o600)
    master = Master(state, sock, https_bind="127.0.0.1:0", rapi_bind="127.0.0.1:0")
    thread = threading.Thread(target=master.serve, daemon=True, name="test-rapi-master")
    thread.start()
    running = ThreadMaster(master, thread, state, sock)
    poll("the master to answer", lambda: running.api.info())
    rapi = poll("RAPI to start", lambda: master.rapi)
    ca_file = base / "cluster-ca.pem"
    ca_file.write_bytes((state / "crypto" / ClusterCA.CERT_FILE).read_bytes())
    return RapiMaster(running, int(rapi.server_address[1]), ca_file)
