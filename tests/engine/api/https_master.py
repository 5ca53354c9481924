"""A real master serving HTTPS, for the HTTPS API tests and the collection's HTTPS play.

``cluster init`` needs SSH to a node, so the cluster is written into the state directory
the way init leaves it (CA in ``crypto/``, cluster, default group and master node in the
store) before the master starts; everything after that is the real master, real TLS on a
real TCP port and the real credential store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from herd.client import Client
from herd.config import Cluster, Node, NodeGroup, SQLiteStore
from herd.crypto.ca import ClusterCA
from herd.master.daemon import Master
from tests.engine.harness import ThreadMaster, poll

CLUSTER = "alpha"
MASTER_NODE = "m1"


def seed_cluster(state_dir: Path, name: str = CLUSTER) -> ClusterCA:
    """State as ``cluster init`` leaves it, with nodes m1 (the master) and n2."""
    crypto = state_dir / "crypto"
    crypto.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = ClusterCA.create(name)
    ca.save(crypto)
    store = SQLiteStore(state_dir / "config.db")
    try:
        group = NodeGroup(name="default")
        with store.transaction() as txn:
            txn.add(Cluster(name=name, master_node=MASTER_NODE, ca_cert_pem=ca.cert_pem.decode()))
            txn.add(group)
            txn.add(Node(name=MASTER_NODE, primary_ip="192.0.2.1", group=group.uuid))
            txn.add(Node(name="n2", primary_ip="192.0.2.2", group=group.uuid))
    finally:
        store.close()
    return ca


@dataclass
class HTTPSMaster:
    """The running master, its HTTPS URL and the cluster CA file clients verify it with."""

    running: ThreadMaster
    url: str
    ca_file: Path

    def client(self, **credentials: str) -> Client:
        """An HTTPS client (``token=`` or ``user=``/``password=``) verifying the cluster CA."""
        return Client(api_url=self.url, ca_file=str(self.ca_file), timeout=30, **credentials)


def start_https_master(base: Path, seed: bool = True) -> HTTPSMaster:
    """A master on ``base/state`` serving the socket and HTTPS on a free loopback port."""
    state, sock = base / "state", base / "master.sock"
    if seed:
        seed_cluster(state)
    master = Master(state, sock, https_bind="127.0.0.1:0")
    thread = threading.Thread(target=master.serve, daemon=True, name="test-https-master")
    thread.start()
    running = ThreadMaster(master, thread, state, sock)
    poll("the master to answer", lambda: running.api.info())
    ca_file = base / "cluster-ca.pem"
    if seed:
        ca_file.write_bytes((state / "crypto" / ClusterCA.CERT_FILE).read_bytes())
        poll("HTTPS to start", lambda: master.https)
    return HTTPSMaster(running, https_url(master), ca_file)


def https_url(master: Master) -> str:
    """Where ``master`` serves HTTPS; empty until it does."""
    if master.https is None:
        return ""
    host, port = master.https.server_address[:2]
    return f"https://{host}:{port}"
