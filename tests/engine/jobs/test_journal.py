"""The durable undo journal: steps stored before they are needed, replayed newest first
by another process's context, each at least once, and finished by a restarted queue."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from herd.config import SQLiteStore
from herd.config.model import Cluster, Disk, Instance, Node, NodeGroup
from herd.jobs import job as J
from herd.jobs.db import JobDB
from herd.jobs.job import Job, OpState
from herd.jobs.journal import JobJournal
from herd.jobs.queue import JobQueue
from herd.jobs.runner import JobRunner
from herd.locking import LockManager
from herd.master.daemon import sync_locks
from herd.node.storage.drbd_config import DrbdResource
from herd.ops import drbd
from herd.ops.base import OpContext
from herd.ops.undo import undo_handler
from herd.rpc.client import CallResult
from tests.engine.harness import add_nodes, poll

#: What the test handlers did, in order: (kind, label).
CALLS: list[tuple[str, str]] = []


class Died(BaseException):
    """Stands for the process dying inside a handler: no ``except Exception`` stops it."""


@undo_handler("test.record")
def _record(ctx: OpContext, args: dict[str, Any]) -> None:
    CALLS.append(("record", args["label"]))


@undo_handler("test.die_once")
def _die_once(ctx: OpContext, args: dict[str, Any]) -> None:
    CALLS.append(("die_once", args["label"]))
    if CALLS.count(("die_once", args["label"])) == 1:
        raise Died


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


def context(journal: Any, store: Any = None, services: Any = None) -> OpContext:
    return OpContext(
        store=store,
        locks=LockManager(),
        owner="job-1",
        log_fn=lambda message, kind, data: None,
        cancel=threading.Event(),
        services=services,
        journal=journal,
    )


def stored_rows(path: Path) -> list[tuple[str, str]]:
    """What another process would read from the file right now."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT kind, what FROM undo_steps ORDER BY id").fetchall()


def test_a_step_is_on_disk_before_undo_returns(tmp_path: Path) -> None:
    db = JobDB(tmp_path / "jobs.db")
    ctx = context(JobJournal(db, 1, 0))
    ctx.undo("remove the thing", "test.record", label="a")
    assert stored_rows(tmp_path / "jobs.db") == [("test.record", "remove the thing")]
    db.close()


def test_replacing_the_chain_is_one_commit(tmp_path: Path) -> None:
    """Found in review: forgetting the chain, then adding migrate's settle step, left a
    moment with an empty journal while DRBD was dual-primary."""
    db = JobDB(tmp_path / "jobs.db")
    ctx = context(JobJournal(db, 1, 0))
    ctx.undo("first", "test.record", label="a")
    ctx.undo("second", "test.record", label="b")
    ctx.replace_undo("settle", "test.record", label="c")
    assert stored_rows(tmp_path / "jobs.db") == [("test.record", "settle")]
    assert [s.args for _, s in JobJournal(db, 1, 0).pending()] == [{"label": "c"}]
    db.close()


def test_a_new_process_replays_the_steps_newest_first(tmp_path: Path) -> None:
    first = JobDB(tmp_path / "jobs.db")
    ctx = context(JobJournal(first, 1, 0))
    for label in ("a", "b", "c"):
        ctx.undo(f"undo {label}", "test.record", label=label)
    first.close()

    second = JobDB(tmp_path / "jobs.db")
    assert context(JobJournal(second, 1, 0)).run_undo() == []
    assert CALLS == [("record", "c"), ("record", "b"), ("record", "a")]
    assert stored_rows(tmp_path / "jobs.db") == []
    second.close()


def test_a_step_cut_off_while_running_runs_again(tmp_path: Path) -> None:
    db = JobDB(tmp_path / "jobs.db")
    ctx = context(JobJournal(db, 1, 0))
    ctx.undo("undo a", "test.record", label="a")
    ctx.undo("undo b", "test.die_once", label="b")
    ctx.undo("undo c", "test.record", label="c")
    with pytest.raises(Died):
        ctx.run_undo()
    assert [w for _, w in stored_rows(tmp_path / "jobs.db")] == ["undo a", "undo b"]

    assert context(JobJournal(db, 1, 0)).run_undo() == []
    assert CALLS == [("record", "c"), ("die_once", "b"), ("die_once", "b"), ("record", "a")]
    assert stored_rows(tmp_path / "jobs.db") == []
    db.close()


def test_journals_of_other_ops_and_jobs_are_apart(tmp_path: Path) -> None:
    db = JobDB(tmp_path / "jobs.db")
    committed = context(JobJournal(db, 1, 1))
    context(JobJournal(db, 1, 0)).undo("job 1 op 0", "test.record", label="1/0")
    committed.undo("job 1 op 1", "test.record", label="1/1")
    context(JobJournal(db, 2, 0)).undo("job 2 op 0", "test.record", label="2/0")
    committed.forget_undo()
    assert context(JobJournal(db, 1, 0)).run_undo() == []
    assert CALLS == [("record", "1/0")]
    assert [w for _, w in stored_rows(tmp_path / "jobs.db")] == ["job 2 op 0"]
    db.close()


def test_arguments_that_are_not_json_are_refused_when_recorded(tmp_path: Path) -> None:
    db = JobDB(tmp_path / "jobs.db")
    with pytest.raises(TypeError, match=r"test\.record"):
        context(JobJournal(db, 1, 0)).undo("bad", "test.record", label=object())
    assert stored_rows(tmp_path / "jobs.db") == []
    db.close()


# ---- the queue at start-up ------------------------------------------------------------


def stored_job(db: JobDB, job_id: int, status: str, op_statuses: list[str]) -> Job:
    job = Job(
        id=job_id,
        ops=[OpState(op="debug.delay", params={}, status=s) for s in op_statuses],
        status=status,
    )
    db.save(job)
    return job


def restarted_queue(tmp_path: Path, db: JobDB) -> tuple[JobQueue, SQLiteStore]:
    add_nodes(tmp_path, ("n1",))
    store = SQLiteStore(tmp_path / "config.db")
    locks = LockManager()
    sync_locks(store, locks)
    return JobQueue(db, JobRunner(store, locks), max_running=1), store


def test_restart_finishes_the_undo_of_a_running_job(tmp_path: Path) -> None:
    db = JobDB(tmp_path / "jobs.db")
    stored_job(db, 1, J.RUNNING, [J.RUNNING])
    ctx = context(JobJournal(db, 1, 0))
    ctx.undo("remove disk 0", "test.record", label="disk")
    ctx.undo("stop the guest", "test.record", label="guest")

    queue, store = restarted_queue(tmp_path, db)
    doc = queue.view(1)
    assert doc["status"] == J.ERROR
    assert "master restarted while this job was running" in doc["error"]["message"]
    assert doc["error"]["details"]["undone"] == ["stop the guest", "remove disk 0"]
    assert CALLS == [("record", "guest"), ("record", "disk")]
    lines = [e["message"] for e in doc["log"]]
    assert "after restart, rollback: stop the guest" in lines
    assert lines.index("after restart, rollback: stop the guest") < lines.index(
        "after restart, rollback: remove disk 0"
    )
    assert lines[-1] == "master restarted: job marked error"
    assert stored_rows(tmp_path / "jobs.db") == []
    store.close()


def test_restart_keeps_a_succeeded_op_and_requeues_a_waiting_job(tmp_path: Path) -> None:
    db = JobDB(tmp_path / "jobs.db")
    stored_job(db, 1, J.WAITING, [J.SUCCESS, J.WAITING])
    context(JobJournal(db, 1, 0)).undo("left by op 0", "test.record", label="op0")

    queue, store = restarted_queue(tmp_path, db)
    assert CALLS == []
    assert stored_rows(tmp_path / "jobs.db") == []
    assert queue.get(1).status == J.QUEUED
    queue.start()
    try:
        poll("the requeued job to end", lambda: queue.get(1).final)
        done = queue.view(1)
    finally:
        queue.stop()
        store.close()
    assert done["status"] == J.SUCCESS
    assert [o["status"] for o in done["ops"]] == [J.SUCCESS, J.SUCCESS]
    assert "queued again" in done["log"][0]["message"]


def test_restart_after_the_last_op_succeeded_ends_the_job_in_success(tmp_path: Path) -> None:
    """Found by the crash campaign: death between storing the last op's success and
    ending the job used to fail a job whose work was done and kept."""
    db = JobDB(tmp_path / "jobs.db")
    stored_job(db, 1, J.RUNNING, [J.SUCCESS])
    context(JobJournal(db, 1, 0)).undo("left by the op", "test.record", label="op")

    queue, store = restarted_queue(tmp_path, db)
    doc = queue.view(1)
    store.close()
    assert doc["status"] == J.SUCCESS
    assert CALLS == []
    assert stored_rows(tmp_path / "jobs.db") == []
    assert "job marked success" in doc["log"][-1]["message"]


# ---- secrets stay out of the journal ---------------------------------------------------

HEALTHY = {"connected": True, "cstate": "Connected", "done": True, "changed": True, "path": "/x",
           "role": "Secondary", "peer_role": "Secondary"}  # fmt: skip


class ScriptedNodes:
    """Node answers that always succeed; the call ``die_on`` (action, node) is where the
    master dies, after ``seen`` took what another process would read from jobs.db."""

    def __init__(self, db_path: Path, die_on: tuple[str, str] | None = None) -> None:
        self.db_path, self.die_on = db_path, die_on
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.seen: list[str] = []

    def call(self, node: Node, action: str, args: dict[str, Any], timeout: float = 0) -> Any:
        self.calls.append((node.name, action, args))
        with sqlite3.connect(self.db_path) as conn:
            self.seen += [a for (a,) in conn.execute("SELECT args FROM undo_steps")]
        if self.die_on == (action, node.name):
            raise Died
        return HEALTHY

    def call_many(
        self, nodes: list[Node], action: str, args: dict[str, Any], timeout: float = 0
    ) -> dict[str, CallResult]:
        return {n.name: CallResult(n.name, self.call(n, action, args)) for n in nodes}

    def disks(self, action: str) -> list[tuple[str, dict[str, Any]]]:
        return [(node, args["disk"]) for node, a, args in self.calls if a == action]


@pytest.fixture
def drbd_store(tmp_path: Path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "config.db")
    group = NodeGroup(name="default")
    with store.transaction() as txn:
        txn.add(Cluster(name="c", drbd_port_range=(11000, 11009)))
        txn.add(group)
        for i in (1, 2):
            txn.add(Node(name=f"n{i}", primary_ip=f"10.0.0.{i}", group=group.uuid))
    return store


def new_drbd_instance(ctx: OpContext, n1: Node, n2: Node) -> Instance:
    disk = Disk(name="disk0", size_mib=64, template="drbd", nodes=[n1.uuid, n2.uuid])
    inst = Instance(
        name="app",
        disk_template="drbd",
        primary_node=n1.uuid,
        secondary_nodes=[n2.uuid],
        disks=[disk],
    )
    drbd.assign_params(ctx, inst, n1, n2, table=drbd.Reservations())
    return inst


def node_accepts(disk: dict[str, Any]) -> bool:
    """Whether the node's own parser takes the disk (its secret must look like one)."""
    return bool(DrbdResource.from_params(f"herd-{disk['uuid']}", disk["params"], "herd"))


def test_a_drbd_create_journals_no_secret_and_a_restart_still_removes_it(
    tmp_path: Path, drbd_store: SQLiteStore
) -> None:
    """Found in review: every undo step naming a DRBD disk stored its shared secret in
    jobs.db until the op ended (or for good, with a master killed mid-op)."""
    db = JobDB(tmp_path / "jobs.db")
    nodes = ScriptedNodes(tmp_path / "jobs.db", die_on=("drbd_primary", "n1"))
    ctx = context(JobJournal(db, 1, 0), drbd_store, nodes)
    n1, n2 = drbd_store.get("node", "n1"), drbd_store.get("node", "n2")
    inst = new_drbd_instance(ctx, n1, n2)
    secret = inst.disks[0].params["secret"]
    with pytest.raises(Died):
        drbd.create(ctx, inst, n1, n2, skip_sync=False)
    db.close()
    assert nodes.disks("disk_create")[0][1]["params"]["secret"] == secret
    assert len(set(nodes.seen)) == 3 and not [row for row in nodes.seen if secret in row]

    restarted = ScriptedNodes(tmp_path / "jobs.db")
    second = JobDB(tmp_path / "jobs.db")
    assert context(JobJournal(second, 1, 0), drbd_store, restarted).run_undo() == []
    assert [(n, a) for n, a, _ in restarted.calls] == [
        ("n1", "drbd_secondary"), ("n2", "disk_remove"), ("n1", "disk_remove"),
    ]  # fmt: skip
    assert all(node_accepts(args["disk"]) for _, _, args in restarted.calls)
    assert stored_rows(tmp_path / "jobs.db") == []
    second.close()


def test_a_restart_undoes_a_migration_with_the_secret_from_the_config(
    tmp_path: Path, drbd_store: SQLiteStore
) -> None:
    """Forbidding two primaries rewrites the node's resource file: its undo needs the
    real secret, which the journal does not hold and the config does."""
    db = JobDB(tmp_path / "jobs.db")
    nodes = ScriptedNodes(tmp_path / "jobs.db", die_on=("drbd_primary", "n2"))
    ctx = context(JobJournal(db, 1, 0), drbd_store, nodes)
    n1, n2 = drbd_store.get("node", "n1"), drbd_store.get("node", "n2")
    inst = new_drbd_instance(ctx, n1, n2)
    with drbd_store.transaction() as txn:
        txn.add(inst)
    secret = inst.disks[0].params["secret"]
    with pytest.raises(Died):
        drbd.migration_prepare(ctx, inst, n1, n2)
    db.close()
    assert nodes.seen and not [row for row in nodes.seen if secret in row]

    restarted = ScriptedNodes(tmp_path / "jobs.db")
    second = JobDB(tmp_path / "jobs.db")
    assert context(JobJournal(second, 1, 0), drbd_store, restarted).run_undo() == []
    assert [(n, a, args.get("enabled")) for n, a, args in restarted.calls] == [
        ("n2", "drbd_secondary", None),
        ("n1", "drbd_status", None),
        ("n1", "drbd_allow_dual_primary", False),
        ("n2", "drbd_status", None),
        ("n2", "drbd_allow_dual_primary", False),
    ]
    assert {d["params"]["secret"] for _, d in restarted.disks("drbd_allow_dual_primary")} == {
        secret
    }
    second.close()
