"""Loopback node services: the real node agent answering in this process, one directory
per node, so an op runs end to end in milliseconds without SSH, namespaces or root.

``LoopbackServices`` is a ``herd.ops.base.NodeServices``: each call is framed as JSON,
answered by ``herd.node.agent.handle`` against the node's own ``NodeContext`` (its root
a directory under the test's tmp dir, with the fake hypervisor and file storage), and
the answer is decoded by ``herd.rpc.protocol.result_of``, exactly as the SSH client
decodes it. Failure paths are simulated at the two places the real path fails: a node
in ``offline`` is never reached (the client's NodeError for a dead session), and an
action armed with ``fail`` is answered by the agent with an error frame.

``OpEnv`` is a whole op context around it: a SQLite config with a cluster, a group and
the nodes, the lock manager, and the real job queue and runner, so ``run`` takes an op
through the same locks, prerequisites, undo journal and rollback as the master does.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.config import Cluster, Instance, Node, NodeGroup, SQLiteStore
from herd.crypto.ca import ClusterCA
from herd.errors import HerdError, NodeError
from herd.jobs import job as J
from herd.jobs.db import JobDB
from herd.jobs.queue import JobQueue
from herd.jobs.runner import JobRunner
from herd.locking import LockManager
from herd.master.daemon import sync_locks
from herd.master.services import MasterServices
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext
from herd.node.agent import handle
from herd.ops.base import Op, OpContext
from herd.ops.undo import MemoryJournal
from herd.rpc.protocol import CallResult, result_of
from herd.rpc.ssh import NodeAddress
from tests.engine.harness import PATIENCE
from tests.engine.node.conftest import kill_guests

#: Fast heartbeats: a fake guest reports "running" within milliseconds of its start.
FAKE_HVPARAMS = {"fake": {"heartbeat_interval": 0.05}}
#: A log serial no job reaches: waiting past it returns on a status change only.
NO_LOG = 2**62


def _wire(doc: dict[str, Any]) -> dict[str, Any]:
    """A frame as the other side reads it: JSON only, no shared Python objects."""
    return dict(json.loads(json.dumps(doc)))


@dataclass(kw_only=True)
class LoopbackServices(MasterServices):
    """Node services whose nodes are directories under ``nodes_dir``.

    Keys and the crypto dir are the real ones under ``state_dir``; only reaching a
    node differs. ``calls`` records every (node, action) asked, reached or not.
    """

    nodes_dir: Path
    offline: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _failing: dict[tuple[str | None, str], HerdError] = field(default_factory=dict, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def __post_init__(self) -> None:
        load_all()

    def root(self, name: str) -> Path:
        """The state root of node ``name`` (``herd-node``'s ``HERD_NODE_ROOT``)."""
        return self.nodes_dir / name

    def fail(self, action: str, error: HerdError | None = None, node: str | None = None) -> None:
        """Make the agent answer ``action`` (on ``node``, or on every node) with ``error``
        instead of running it, as a node whose action failed does."""
        self._failing[(node, action)] = error or NodeError(f"injected failure of {action}")

    def heal(self) -> None:
        """Every node reachable and every action running again."""
        self.offline.clear()
        self._failing.clear()

    def rpc(self) -> Any:
        """The client the master's ``call``/``call_many`` go through (so their fault
        points and secret scrub run as on the master), answering from the agents here."""
        return _LoopbackClient(self)

    def reset_rpc(self) -> None:
        """Nothing is pooled."""

    def forget_node(self, name: str) -> None:
        """Nothing is pooled."""

    def kill_guests(self) -> None:
        """Fake guests are detached processes: end them so none outlives the test."""
        if self.nodes_dir.is_dir():
            for root in self.nodes_dir.iterdir():
                kill_guests(root)

    def _call(self, node: NodeAddress, action: str, args: dict[str, Any] | None) -> dict[str, Any]:
        """What ``herd.rpc.client.NodeClient.call`` does, the session replaced by the
        agent's handler: a dead node is a NodeError naming it, the action never sent."""
        self.calls.append((node.name, action))
        if node.name in self.offline:
            raise NodeError(
                f"node {node.name} ({node.host}): call {action} failed: node offline (loopback)",
                node=node.name,
                address=node.host,
                stderr="",
            )
        request = _wire({"id": next(self._ids), "action": action, "args": args or {}})
        failure = self._failing.get((node.name, action)) or self._failing.get((None, action))
        if failure is not None:
            answer = {"id": request["id"], "ok": False, "error": failure.to_dict()}
        else:
            answer = handle(NodeContext(self.root(node.name)), request)
        return result_of(_wire(answer), node.name)


@dataclass
class _LoopbackClient:
    """The part of ``NodeClient`` the services use, with sessions replaced by agents in
    this process."""

    services: LoopbackServices

    def call(
        self, node: NodeAddress, action: str, args: dict[str, Any] | None, timeout: float | None
    ) -> dict[str, Any]:
        return self.services._call(node, action, args)

    def call_many(
        self,
        nodes: Sequence[NodeAddress],
        action: str,
        args: dict[str, Any] | None,
        timeout: float | None,
    ) -> dict[str, CallResult]:
        """One node after the other (their agents share this process), each node's
        error in its own result, as the pooled client gives them."""
        answers = {}
        for node in nodes:
            try:
                answers[node.name] = CallResult(
                    node.name, result=self.services._call(node, action, args)
                )
            except HerdError as exc:
                answers[node.name] = CallResult(node.name, error=exc)
        return answers


@dataclass
class OpEnv:
    """A master's op machinery on a tmp dir: config store, locks, queue, loopback nodes."""

    store: SQLiteStore
    locks: LockManager
    nodes: LoopbackServices
    queue: JobQueue
    jobdb: JobDB
    _owners: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def run(self, *ops: Op | dict[str, Any]) -> Any:
        """Run the ops as one job and return the last one's result, raising the job's
        error as its own HerdError, as ``herd.client.Client.run`` does."""
        doc = self.run_job(*ops)
        if doc["status"] != "success":
            raise HerdError.from_dict(
                doc.get("error") or {"message": f"job {doc['id']} ended as {doc['status']}"}
            )
        return doc["ops"][-1]["result"]

    def run_job(self, *ops: Op | dict[str, Any]) -> dict[str, Any]:
        """Run the ops as one job and return the finished job with its log."""
        specs = [op if isinstance(op, dict) else {"op": op.OP_ID, **op.params} for op in ops]
        job_id = self.queue.submit({"ops": specs})
        deadline = time.monotonic() + PATIENCE
        status = None
        while status not in J.FINAL:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {status} after {PATIENCE} s")
            # Only a status change wakes this wait (no log line is that new).
            status = self.queue.wait(job_id, NO_LOG, PATIENCE, status)["status"]
        return self.queue.view(job_id)

    def context(self) -> OpContext:
        """An op context outside any job, for prerequisites and undo handlers on their own."""
        return OpContext(
            store=self.store,
            locks=self.locks,
            owner=f"test-{next(self._owners)}",
            log_fn=lambda message, kind, data: None,
            cancel=threading.Event(),
            services=self.nodes,
            journal=MemoryJournal(),
        )

    def node(self, name: str) -> Node:
        node = self.store.get("node", name)
        assert isinstance(node, Node)
        return node

    def instance(self, name: str) -> Instance:
        inst = self.store.get("instance", name)
        assert isinstance(inst, Instance)
        return inst

    def node_dir(self, name: str) -> Path:
        return self.nodes.root(name)

    def files(self, name: str | None = None) -> list[str]:
        """Every file under one node's root (or all of them), relative: what ops left."""
        base = self.nodes.nodes_dir if name is None else self.node_dir(name)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def close(self) -> None:
        self.queue.stop()
        self.nodes.kill_guests()
        self.jobdb.close()
        self.store.close()


def seed_cluster(store: SQLiteStore, nodes: Sequence[str]) -> None:
    """Cluster ``c1`` with group ``default`` holding ``nodes``, the first the master,
    every node online and a master candidate. Only the fake hypervisor and the file
    template are enabled: the real plain, DRBD and KVM backends would act on this
    machine's LVM, kernel and qemu, so an op asking for them is refused instead."""
    group = NodeGroup(name="default")
    with store.transaction() as txn:
        txn.add(
            Cluster(
                name="c1",
                master_node=nodes[0],
                enabled_hypervisors=["fake"],
                enabled_disk_templates=["file"],
                hvparams=copy.deepcopy(FAKE_HVPARAMS),
            )
        )
        txn.add(group)
        for i, name in enumerate(nodes):
            txn.add(
                Node(
                    name=name,
                    primary_ip=f"192.0.2.{i + 1}",
                    group=group.uuid,
                    master_candidate=True,
                )
            )


def build_env(base: Path, nodes: Sequence[str] = ("n1", "n2")) -> OpEnv:
    """An ``OpEnv`` on ``base`` (state in ``base/state``, nodes in ``base/nodes/<name>``);
    the caller closes it. Locks are registered from the config, as at a master's start."""
    state = base / "state"
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore(state / "config.db")
    seed_cluster(store, nodes)
    for name in nodes:
        (base / "nodes" / name).mkdir(parents=True, exist_ok=True)
    locks = LockManager()
    sync_locks(store, locks)
    services = LoopbackServices(state_dir=state, nodes_dir=base / "nodes")
    jobdb = JobDB(state / "jobs.db")
    queue = JobQueue(jobdb, JobRunner(store, locks, services), max_running=4)
    queue.start()
    return OpEnv(store=store, locks=locks, nodes=services, queue=queue, jobdb=jobdb)


def enable_transfers(env: OpEnv) -> None:
    """Let node-to-node disk streams (moves, imports to another node) run between loopback
    nodes: the cluster CA that signs each transfer's throw-away certificates, and
    127.0.0.1 as every node's address, so each receiver listens and each sender dials on
    this host. The transfer workers are the real ones, TLS included."""
    env.nodes.crypto_dir.mkdir(mode=0o700, exist_ok=True)
    (cluster,) = env.store.list("cluster")
    ClusterCA.create(cluster.name).save(env.nodes.crypto_dir)
    with env.store.transaction() as txn:
        for node in env.store.list("node"):
            node.primary_ip = node.secondary_ip = "127.0.0.1"
            txn.update(node)
