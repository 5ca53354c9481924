"""The runner: locks taken and always given back, errors recorded, spawned jobs traced."""

from __future__ import annotations

from typing import Any

from tests.engine.harness import ThreadMaster


def delay(**params: Any) -> dict[str, Any]:
    return {"op": "debug.delay", **params}


def holders(tm: ThreadMaster) -> list[tuple[str, str, Any]]:
    return [(i["level"], i["name"], i["holders"]) for i in tm.client().locks() if i["holders"]]


def test_locks_are_released_after_success_and_failure(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    ok = c.submit([delay(lock_nodes=["n1", "n2"])])
    bad = c.submit([delay(lock_nodes=["n1"], fail=True)])
    doc = herd_master.wait_status(ok, "success")
    assert doc["ops"][0]["result"]["locked_nodes"] == ["n1", "n2"]
    failed = herd_master.wait_status(bad, "error")
    assert failed["error"]["message"] == "debug.delay failed on request"
    assert failed["ops"][0]["status"] == "error"
    assert any("debug.delay failed" in e["message"] for e in failed["log"])
    assert holders(herd_master) == []
    assert herd_master.master.locks.owned(f"job-{ok}") == {}


def test_multi_op_job_runs_ops_in_order(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    job_id = c.submit([delay(log_messages=1), delay(lock_nodes=["n2"]), delay(fail=True)])
    doc = herd_master.wait_status(job_id, "error")
    assert [o["status"] for o in doc["ops"]] == ["success", "success", "error"]
    assert doc["ops"][1]["result"]["locked_nodes"] == ["n2"]
    assert doc["ops"][0]["ended_at"] <= doc["ops"][1]["started_at"]


def test_unknown_node_fails_the_job_with_its_error_type(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    doc = herd_master.wait_status(c.submit([delay(lock_nodes=["nope"])]), "error")
    assert doc["error"]["type"] == "ValidationError"
    assert doc["error"]["details"]["field"] == "lock_nodes[0]"
    assert holders(herd_master) == []


def test_opportunistic_locks_take_what_is_free(herd_master: ThreadMaster) -> None:
    m = herd_master.master
    n1 = m.store.get("node", "n1").uuid
    m.locks.acquire("test-holder", "node", [n1])
    try:
        c = herd_master.client()
        job_id = c.submit([delay(lock_nodes=["n1", "n2"], opportunistic=True)])
        doc = herd_master.wait_status(job_id, "success")
    finally:
        m.locks.release_all("test-holder")
    assert doc["ops"][0]["result"]["locked_nodes"] == ["n2"]
    assert any(e["message"].startswith("opportunistic node locks") for e in doc["log"])


def test_spawned_jobs_inherit_the_reason_trail(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    parent = c.submit([delay(spawn_jobs=2)], reason=[["test", "rate-limit:5:spawn", 1000.0]])
    doc = herd_master.wait_status(parent, "success")
    children = doc["ops"][0]["result"]["spawned"]
    assert len(children) == 2
    for child_id in children:
        child = herd_master.wait_status(child_id, "success")
        first, spawned = child["reason"]
        assert first == ["test", "rate-limit:5:spawn", 1000.0]
        assert spawned[:2] == ["herd:job", f"spawned by job {parent}"]
        assert doc["received_at"] <= spawned[2] <= child["received_at"]
