"""The job queue against a real master: scheduling order, limits, dependencies, cancel.

Jobs are held back deterministically by a node lock the test itself owns in the
master's lock manager: a job that needs it sits in ``waiting`` (occupying a worker and
counting as active) until the test lets go, so no test depends on how long a sleep is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from herd.config import Node, SQLiteStore
from herd.errors import ConflictError, HerdError, NodeError, NotFoundError, ValidationError
from herd.jobs import job as J
from herd.jobs.db import JobDB
from herd.jobs.job import Job
from herd.jobs.queue import JobQueue, LogFn
from herd.jobs.runner import JobRunner
from herd.locking import LockManager
from herd.master.daemon import sync_locks
from herd.master.services import MasterServices
from herd.ops.undo import UndoJournal
from herd.redact import REDACTED
from tests.engine.harness import ThreadMaster, add_nodes
from tests.engine.rpc.scripted_agent import ScriptedChannel, scripted_client

HOLDER = "test-holder"


def delay(**params: Any) -> dict[str, Any]:
    return {"op": "debug.delay", **params}


@contextmanager
def holding(locks: LockManager, store: Any, node: str) -> Iterator[None]:
    """Own a node's lock from the test, so jobs that need it wait until the block ends."""
    uuid = store.get("node", node).uuid
    locks.acquire(HOLDER, "node", [uuid])
    try:
        yield
    finally:
        locks.release_all(HOLDER)


def hold(tm: ThreadMaster, node: str = "n1") -> Any:
    return holding(tm.master.locks, tm.master.store, node)


def blocker(tm: ThreadMaster, node: str = "n1") -> int:
    """Submit a job that waits for ``node`` and return once it is waiting."""
    job_id = tm.client().submit([delay(lock_nodes=[node])])
    tm.wait_status(job_id, "waiting")
    return job_id


def test_submit_answers_with_an_id_before_the_job_runs(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    with hold(herd_master):
        job_id = c.submit([delay(lock_nodes=["n1"])])
        assert c.job(job_id)["status"] in ("queued", "waiting")
    doc = herd_master.wait_status(job_id, "success")
    assert doc["ops"][0]["result"]["locked_nodes"] == ["n1"]


def test_priorities_order_execution(master_factory: Callable[..., ThreadMaster]) -> None:
    tm = master_factory(nodes=("n1",), max_running=1)
    c = tm.client()
    with hold(tm):
        first = blocker(tm)
        ids = {prio: c.submit([delay()], priority=prio) for prio in (10, 0, -10)}
    for job_id in [first, *ids.values()]:
        tm.wait_status(job_id, "success")
    started = sorted(ids, key=lambda prio: c.job(ids[prio])["started_at"])
    assert started == [-10, 0, 10]


@pytest.mark.parametrize(("aging", "expected"), [(0.001, ["low", "high"]), (0.0, ["high", "low"])])
def test_aging_lets_an_old_low_priority_job_overtake(
    tmp_path: Path, poll: Callable[..., Any], aging: float, expected: list[str]
) -> None:
    add_nodes(tmp_path, ("n1",))
    store = SQLiteStore(tmp_path / "config.db")
    locks = LockManager()
    sync_locks(store, locks)
    queue = JobQueue(
        JobDB(tmp_path / "jobs.db"),
        JobRunner(store, locks),
        max_running=1,
        aging_seconds=aging,
    )
    queue.start()
    try:
        with holding(locks, store, "n1"):
            first = queue.submit({"ops": [delay(lock_nodes=["n1"])]})
            poll("blocker waiting", lambda: queue.get(first).status == "waiting")
            ids = {"low": queue.submit({"ops": [delay()], "priority": J.PRIO_MAX})}
            if aging:
                low = queue.get(ids["low"])
                poll(
                    "the low job to age to the top priority",
                    lambda: low.effective_priority(time.time(), aging) == J.PRIO_MIN,
                )
            ids["high"] = queue.submit({"ops": [delay()], "priority": J.PRIO_MIN})
        poll("all done", lambda: all(queue.get(i).final for i in ids.values()))
        assert sorted(ids, key=lambda k: queue.get(ids[k]).started_at or 0) == expected
    finally:
        queue.stop()
        store.close()


def test_rate_limit_reason_caps_jobs_running_at_once(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    reason = [["test", "rate-limit:2:x"]]
    with hold(herd_master):
        limited = [c.submit([delay(lock_nodes=["n1"])], reason=reason) for _ in range(4)]
        herd_master.wait_status(limited[0], "waiting")
        herd_master.wait_status(limited[1], "waiting")
        # A later job without the label is picked while the limited ones stay queued:
        # workers were free, only the limit kept jobs 3 and 4 back.
        free = c.submit([delay(lock_nodes=["n1"])])
        herd_master.wait_status(free, "waiting")
        assert [c.job(i)["status"] for i in limited[2:]] == ["queued", "queued"]
    docs = [herd_master.wait_status(i, "success") for i in limited]
    spans = [(d["started_at"], d["ended_at"]) for d in docs]
    for start, _ in spans:
        assert sum(s <= start < e for s, e in spans) <= 2


def test_dependencies_with_relative_ids(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    ok = c.submit([delay(duration=0.05)])
    after_ok, failing, after_fail, on_error = c.submit_many(
        [
            {"ops": [delay()], "depends": [[ok, ["success"]]]},
            {"ops": [delay(fail=True)]},
            {"ops": [delay()], "depends": [[-1, ["success"]]]},
            {"ops": [delay()], "depends": [[-2, ["error"]], [-3, ["success"]]]},
        ]
    )
    first = herd_master.wait_status(ok, "success")
    second = herd_master.wait_status(after_ok, "success")
    assert second["started_at"] >= first["ended_at"]
    assert second["depends"] == [[ok, ["success"]]]
    herd_master.wait_status(failing, "error")
    blocked = herd_master.wait_status(after_fail, "error")
    assert f"dependency job {failing} ended as error" in blocked["error"]["message"]
    assert blocked["started_at"] is None
    assert any("dependency" in e["message"] for e in blocked["log"])
    herd_master.wait_status(on_error, "success")


@pytest.mark.parametrize(
    ("depends", "field"),
    [
        ([[-1, ["success"]]], "depends"),
        ([[999, ["success"]]], "depends"),
        ([[1, ["finished"]]], "depends"),
        ([[1, [["success"]]]], "depends"),
        ("1", "depends"),
    ],
)
def test_bad_dependencies_are_refused(herd_master: ThreadMaster, depends: Any, field: str) -> None:
    c = herd_master.client()
    c.run([delay()])
    with pytest.raises(ValidationError) as err:
        c.request("POST", "/v1/jobs", {"ops": [delay()], "depends": depends})
    assert err.value.details["field"] == field
    assert len(c.jobs()) == 1


def test_cancel_queued_job(master_factory: Callable[..., ThreadMaster]) -> None:
    tm = master_factory(nodes=("n1",), max_running=1)
    c = tm.client()
    with hold(tm):
        first = blocker(tm)
        queued = c.submit([delay()])
        assert c.cancel(queued) == {"id": queued, "status": "canceled"}
    tm.wait_status(first, "success")
    doc = c.job(queued)
    assert doc["status"] == "canceled"
    assert doc["started_at"] is None
    assert doc["ops"][0]["status"] == "canceled"
    assert any("cancel" in e["message"] for e in doc["log"])


def test_cancel_job_waiting_for_locks(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    with hold(herd_master):
        waiting = blocker(herd_master)
        assert c.cancel(waiting)["status"] == "canceling"
        doc = herd_master.wait_status(waiting, "canceled")
    assert doc["ops"][0]["status"] == "canceled"
    assert doc["ops"][0]["result"] is None
    assert any("cancel" in e["message"] for e in doc["log"])
    assert c.locks() == [i for i in c.locks() if not i["holders"]]
    after = c.submit([delay(lock_nodes=["n1"])])
    assert herd_master.wait_status(after, "success")["ops"][0]["result"]["locked_nodes"] == ["n1"]


def test_cancel_refused_once_finished_or_unknown(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    job_id = c.submit([delay()])
    herd_master.wait_status(job_id, "success")
    with pytest.raises(ConflictError) as err:
        c.cancel(job_id)
    assert err.value.details["status"] == "success"
    with pytest.raises(NotFoundError):
        c.cancel(12345)


def test_max_running_changes_at_run_time(master_factory: Callable[..., ThreadMaster]) -> None:
    tm = master_factory(nodes=("n1",), max_running=1)
    c = tm.client()
    with hold(tm):
        first = blocker(tm)
        second = c.submit([delay()])
        assert c.job(second)["status"] == "queued"
        assert c.set_queue(2)["max_running"] == 2
        tm.wait_status(second, "success")
        assert c.job(first)["status"] == "waiting"
    tm.wait_status(first, "success")
    with pytest.raises(ValidationError) as err:
        c.set_queue(0)
    assert err.value.details["field"] == "max_running"
    assert c.queue()["max_running"] == 2


def test_long_poll_returns_on_a_new_log_line(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    job_id = c.submit([delay(duration=60, log_messages=2)])
    doc = c.request("GET", f"/v1/jobs/{job_id}/wait", query={"log_since": 0, "timeout": 50})
    assert doc["status"] == "running"
    assert [e["message"] for e in doc["log"]] == ["delay step 1/2"]
    assert doc["log"][0]["time"] >= doc["received_at"]


def test_long_poll_returns_on_status_change(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    with hold(herd_master):
        job_id = blocker(herd_master)
        c2 = herd_master.client()
        c2.cancel(job_id)
    query = {"log_since": 99, "timeout": 50, "status": "waiting"}
    doc = c.request("GET", f"/v1/jobs/{job_id}/wait", query=query)
    assert doc["status"] != "waiting"


def test_multi_submit_with_one_bad_job_stores_none(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    with pytest.raises(ValidationError) as err:
        c.submit_many([{"ops": [delay()]}, {"ops": [delay(duration=-1)]}])
    assert err.value.details["field"] == "jobs[1].ops[0].duration"
    assert err.value.details["value"] == -1
    assert "0" in err.value.details["allowed"]
    assert c.jobs() == []
    assert c.submit([delay()]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ops": []}, "ops"),
        ({"ops": [{"op": "no.such"}]}, "ops[0].op"),
        ({"ops": [delay(bogus=1)]}, "ops[0].bogus"),
        ({"ops": [delay()], "priority": 20}, "priority"),
        ({"ops": [delay()], "priority": True}, "priority"),
        ({"ops": [delay()], "reason": [["a"]]}, "reason"),
        ({"ops": [delay()], "reason": [["a", "b", "yesterday"]]}, "reason"),
        ({"ops": [delay()], "colour": "red"}, "colour"),
    ],
)
def test_submit_validation_names_the_field(
    herd_master: ThreadMaster, body: dict[str, Any], field: str
) -> None:
    c = herd_master.client()
    with pytest.raises(ValidationError) as err:
        c.request("POST", "/v1/jobs", body)
    assert err.value.details["field"] == field
    assert err.value.details["allowed"]
    assert c.jobs() == []


def test_reason_trail_and_log_are_recorded(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    job_id = c.submit([delay(log_messages=2)], reason=[["test:src", "because", 1000.0]])
    doc = herd_master.wait_status(job_id, "success")
    assert doc["reason"] == [["test:src", "because", 1000.0]]
    assert [e["serial"] for e in doc["log"]] == [1, 2]
    assert all(doc["received_at"] <= e["time"] <= doc["ended_at"] for e in doc["log"])
    assert c.job(job_id, log_since=1)["log"][0]["message"] == "delay step 2/2"


def test_queued_jobs_survive_a_graceful_restart(
    master_factory: Callable[..., ThreadMaster],
) -> None:
    tm = master_factory(nodes=("n1",))
    c = tm.client()
    c.set_queue(1)
    with hold(tm):
        first = blocker(tm)
        queued = c.submit([delay()], priority=-5)
        tm.stop()
    tm2 = master_factory()
    c2 = tm2.client()
    interrupted = c2.job(first)
    assert interrupted["status"] == "error"
    assert "shut down" in interrupted["error"]["message"]
    done = tm2.wait_status(queued, "success")
    assert done["priority"] == -5
    assert c2.queue()["max_running"] == 1


DRBD_SECRET = "drbd-shared-secret-1"
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
KEY_FILE = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----"


class NodeCallingRunner:
    """Runs every job as one failing node call through the master's services, reported as
    JobRunner reports an op's error: a line in the job log and the job's error."""

    def __init__(self, services: MasterServices) -> None:
        self.services = services

    def __call__(self, job: Job, cancel: Any, queue: JobQueue) -> None:
        queue.set_status(job, J.RUNNING, 0)
        args = {"disk": {"params": {"secret": DRBD_SECRET}}}
        try:
            self.services.call(Node(name="n1", primary_ip="192.0.2.1"), "disk_attach_net", args)
        except HerdError as exc:
            queue.log(job.id, f"disk_attach_net failed: {exc.message}", "error")
            queue.op_done(job, 0, J.ERROR, None, exc.to_dict())
            queue.finish(job, J.ERROR, exc.to_dict())

    def finish_undo(self, job: Job, journal: UndoJournal, log: LogFn) -> list[str]:
        return []


def test_a_node_error_quoting_a_drbd_secret_and_a_key_is_read_back_hidden(
    tmp_path: Path, poll: Callable[..., Any]
) -> None:
    quoting = NodeError(
        f"Command 'drbdsetup connect --shared-secret={DRBD_SECRET}' terminated; "
        f"stderr: could not load {KEY_FILE} (bad permissions)",
        stderr=KEY_FILE,
    )
    answer = {"id": 1, "ok": False, "error": quoting.to_dict()}
    client = scripted_client(ScriptedChannel([answer]))
    runner = NodeCallingRunner(MasterServices(state_dir=tmp_path, _client=client))
    queue = JobQueue(JobDB(tmp_path / "jobs.db"), runner, max_running=1)
    queue.start()
    try:
        job_id = queue.submit({"ops": [delay()]})
        poll("job ended", lambda: queue.get(job_id).final)
        doc = queue.view(job_id)
    finally:
        queue.stop()
    text = json.dumps(doc)
    assert DRBD_SECRET not in text and KEY_BODY not in text
    hidden = f"-----BEGIN OPENSSH PRIVATE KEY-----{REDACTED}-----END OPENSSH PRIVATE KEY-----"
    for message in (doc["error"]["message"], doc["ops"][0]["error"]["message"]):
        assert f"--shared-secret={REDACTED}' terminated" in message
        assert f"could not load {hidden} (bad permissions)" in message
    assert doc["error"]["details"]["stderr"] == hidden
    assert f"could not load {hidden}" in doc["log"][-1]["message"]
