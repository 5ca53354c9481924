"""debug.delay on loopback nodes: the op that only waits, logs, holds locks, spawns jobs
and fails on request, so each of those must do exactly what it says."""

from __future__ import annotations

import pytest

from herd.errors import CanceledError, HerdError, ValidationError
from herd.ops.debug import DebugDelay
from tests.engine.loopback import OpEnv


def node_holders(env: OpEnv) -> dict[str, list[str]]:
    """Lock holders by node name, for the nodes someone holds."""
    names = {n.uuid: n.name for n in env.store.list("node")}
    return {
        names[str(row["name"])]: list(row["holders"])  # type: ignore[call-overload]
        for row in env.locks.info()
        if row["level"] == "node" and row["holders"]
    }


def test_a_delay_logs_each_step_and_returns_what_it_did(env: OpEnv) -> None:
    doc = env.run_job({"op": "debug.delay", "log_messages": 3})
    assert doc["status"] == "success"
    assert [line["message"] for line in doc["log"]] == [f"delay step {i}/3" for i in (1, 2, 3)]
    assert doc["ops"][0]["result"] == {"slept": 0.0, "locked_nodes": [], "spawned": []}
    assert env.nodes.calls == []


def test_the_nodes_asked_for_are_held_and_given_back(env: OpEnv) -> None:
    assert env.run({"op": "debug.delay", "lock_nodes": ["n2", "n1"]})["locked_nodes"] == [
        "n1",
        "n2",
    ]
    assert node_holders(env) == {}


def test_opportunistic_takes_only_the_free_nodes(env: OpEnv) -> None:
    env.locks.acquire("other", "cluster", ["cluster"], shared=True)
    env.locks.acquire("other", "node", [env.node("n1").uuid])
    try:
        result = env.run({"op": "debug.delay", "lock_nodes": ["n1", "n2"], "opportunistic": True})
    finally:
        env.locks.release_all("other")
    assert result["locked_nodes"] == ["n2"]


def test_a_failing_delay_fails_its_job(env: OpEnv) -> None:
    with pytest.raises(HerdError, match=r"debug\.delay failed on request"):
        env.run({"op": "debug.delay", "fail": True, "spawn_jobs": 1})
    assert env.run_job({"op": "debug.delay"})["id"] == 2, "no job was spawned before the failure"


def test_spawned_jobs_are_queued_delays(env: OpEnv) -> None:
    spawned = env.run({"op": "debug.delay", "spawn_jobs": 2})["spawned"]
    assert len(spawned) == 2
    for job_id in spawned:
        assert [op["op"] for op in env.queue.view(job_id)["ops"]] == ["debug.delay"]


def test_a_canceled_delay_stops_at_once(env: OpEnv) -> None:
    ctx = env.context()
    ctx.cancel.set()
    with pytest.raises(CanceledError):
        DebugDelay({"duration": 3600}).run(ctx)


@pytest.mark.parametrize(
    ("param", "value"),
    [("duration", -1), ("duration", 86401), ("log_messages", 10001), ("spawn_jobs", -1)],
)
def test_out_of_range_values_are_refused_naming_the_field(
    env: OpEnv, param: str, value: int
) -> None:
    with pytest.raises(ValidationError) as failed:
        env.run({"op": "debug.delay", param: value})
    assert failed.value.details["field"] == f"ops[0].{param}"


def test_an_unknown_node_to_lock_names_the_field_and_the_nodes(env: OpEnv) -> None:
    with pytest.raises(ValidationError, match="an existing node: n1, n2") as failed:
        env.run({"op": "debug.delay", "lock_nodes": ["n1", "n9"]})
    assert (failed.value.details["field"], failed.value.details["value"]) == ("lock_nodes[1]", "n9")
