"""Opportunistic tries put back in the queue: the rules, then a real master running them.

The master runs a small op registered for these tests that behaves like an opportunistic
create: it locks whatever nodes are free, is temporarily infeasible unless it holds every
node it needs, and truly infeasible if it needs a node that does not exist. The test owns
node locks in the master's lock manager, so "the holder finishes" is a release, not a sleep.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from herd.errors import HerdError, PrerequisiteError, TemporarilyInfeasibleError
from herd.jobs import retry
from herd.ops import base
from herd.ops.base import ALL_LOCKS, LockSpec, Op, OpContext
from herd.ops.params import Param
from tests.engine.harness import ThreadMaster, poll

HOLDER = "test-holder"


class NeedsNodes(Op):
    """Places "an instance" that needs every node in ``needs`` (node names)."""

    OP_ID = "test.needs_nodes"
    PARAMS = (
        Param("needs", list, item_type=str, required=True),
        Param("opportunistic", bool, default=False),
        Param("opportunistic_tries", int, default=0, minimum=0),
        Param("opportunistic_delay", float, default=5.0, minimum=0),
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level == "node":
            return LockSpec(ALL_LOCKS, opportunistic=self.params["opportunistic"])
        return super().declare_locks(level, ctx)

    def run(self, ctx: OpContext) -> Any:
        names = {n.name for n in ctx.store.list("node")}
        missing = sorted(set(self.params["needs"]) - names)
        if missing:
            raise PrerequisiteError(f"no node {missing[0]}: fits nowhere")
        held = sorted(ctx.store.get("node", u).name for u in ctx.owned("node"))
        lacking = sorted(set(self.params["needs"]) - set(held))
        if lacking:
            raise TemporarilyInfeasibleError(f"needs {lacking} too; retry when they are free")
        ctx.log(f"placed with opportunistic={self.params['opportunistic']}")
        return {"held": held}


class Plain(Op):
    """The same name of parameter without the other two: not retried by the queue."""

    OP_ID = "test.plain"
    PARAMS = (Param("opportunistic", bool, default=False),)


@pytest.fixture
def master(
    master_factory: Callable[..., ThreadMaster], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ThreadMaster]:
    """A master on nodes n1, n2 that also knows the test op (the queue reads the registry
    when it starts, so the op is added first and removed after the test)."""
    monkeypatch.setitem(base._REGISTRY, NeedsNodes.OP_ID, NeedsNodes)
    yield master_factory(nodes=("n1", "n2"))


def hold(tm: ThreadMaster, node: str) -> None:
    tm.master.locks.acquire(HOLDER, "node", [tm.master.store.get("node", node).uuid])


def needs(**params: Any) -> dict[str, Any]:
    return {"op": NeedsNodes.OP_ID, "needs": ["n1", "n2"], **params}


def retry_lines(doc: dict[str, Any]) -> list[str]:
    return [e["message"] for e in doc["log"] if e["message"].startswith("temporarily infeasible")]


def logged(tm: ThreadMaster, job_id: int, text: str) -> Callable[[], bool]:
    c = tm.client()
    return lambda: any(text in e["message"] for e in c.job(job_id)["log"])


# ---- the rules ---------------------------------------------------------------------------


def test_only_ops_declaring_all_three_parameters_are_retried() -> None:
    assert retry.retries(NeedsNodes)
    assert not retry.retries(Plain)
    error = TemporarilyInfeasibleError("x").to_dict()
    assert retry.next_try(Plain, {"opportunistic": True}, 0, error) is None


def test_tries_lock_opportunistically_then_one_blocking_try() -> None:
    params = {"opportunistic": False, "opportunistic_tries": 2, "opportunistic_delay": 1.0}
    assert [retry.params_for_try(NeedsNodes, params, n)["opportunistic"] for n in range(3)] == [
        True,
        True,
        False,
    ]
    off = {"opportunistic": True, "opportunistic_tries": 0, "opportunistic_delay": 1.0}
    assert retry.params_for_try(NeedsNodes, off, 0) == off


def test_next_try_waits_a_varied_delay_then_blocks_then_gives_up() -> None:
    params = {"opportunistic_tries": 3, "opportunistic_delay": 10.0}
    error = TemporarilyInfeasibleError("busy").to_dict()
    rng = random.Random(1)
    delays = [retry.next_try(NeedsNodes, params, 0, error, rng) for _ in range(50)]
    assert all(d is not None and d.opportunistic and 8.0 <= d.delay <= 12.0 for d in delays)
    assert len({d.delay for d in delays if d is not None}) > 1
    assert retry.next_try(NeedsNodes, params, 2, error) == retry.NextTry(0.0, False)
    assert retry.next_try(NeedsNodes, params, 3, error) is None


def test_other_errors_are_never_retried() -> None:
    params = {"opportunistic_tries": 3, "opportunistic_delay": 1.0}
    for error in (PrerequisiteError("fits nowhere"), HerdError("node died")):
        assert retry.next_try(NeedsNodes, params, 0, error.to_dict()) is None


# ---- the queue running them --------------------------------------------------------------


def test_busy_node_is_retried_until_the_holder_finishes(master: ThreadMaster) -> None:
    hold(master, "n1")
    c = master.client()
    job_id = c.submit([needs(opportunistic_tries=100, opportunistic_delay=0.05)])
    try:
        poll("a second try", logged(master, job_id, "opportunistic try 2 of 100"))
    finally:
        master.master.locks.release_all(HOLDER)
    doc = master.wait_status(job_id, "success")
    assert doc["ops"][0]["result"] == {"held": ["n1", "n2"]}
    assert doc["ops"][0]["tries"] >= 2 and len(retry_lines(doc)) == doc["ops"][0]["tries"]
    assert "needs ['n1'] too" in retry_lines(doc)[0]
    assert any(e["message"] == "placed with opportunistic=True" for e in doc["log"])


def test_between_tries_the_job_is_queued_and_holds_no_worker(
    master_factory: Callable[..., ThreadMaster], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one worker, a job in its retry delay must let another job run meanwhile."""
    monkeypatch.setitem(base._REGISTRY, NeedsNodes.OP_ID, NeedsNodes)
    tm = master_factory(nodes=("n1", "n2"), max_running=1)
    hold(tm, "n1")
    try:
        c = tm.client()
        retrying = c.submit([needs(opportunistic_tries=5, opportunistic_delay=60)])
        poll("the first retry", logged(tm, retrying, "opportunistic try 1 of 5"))
        doc = tm.wait_status(retrying, "queued")
        assert doc["not_before"] > doc["log"][-1]["time"]
        other = c.submit([{"op": "debug.delay"}])
        tm.wait_status(other, "success")
        assert c.job(retrying)["status"] == "queued"
        assert c.cancel(retrying)["status"] == "canceled"
    finally:
        tm.master.locks.release_all(HOLDER)


def test_after_the_last_opportunistic_try_a_blocking_try_waits_for_the_locks(
    master: ThreadMaster,
) -> None:
    hold(master, "n1")
    c = master.client()
    job_id = c.submit([needs(opportunistic_tries=2, opportunistic_delay=0.01)])
    try:
        poll("the blocking try", logged(master, job_id, "next: a create with blocking locks"))
        master.wait_status(job_id, "waiting")
    finally:
        master.master.locks.release_all(HOLDER)
    doc = master.wait_status(job_id, "success")
    assert len(retry_lines(doc)) == 2 and doc["ops"][0]["tries"] == 2
    assert any(e["message"] == "placed with opportunistic=False" for e in doc["log"])


def test_without_tries_the_user_gets_temporarily_infeasible(master: ThreadMaster) -> None:
    hold(master, "n1")
    try:
        doc = master.wait_status(master.client().submit([needs(opportunistic=True)]), "error")
    finally:
        master.master.locks.release_all(HOLDER)
    assert doc["error"]["type"] == "TemporarilyInfeasibleError"
    assert "retry when they are free" in doc["error"]["message"]
    assert retry_lines(doc) == [] and doc["ops"][0]["tries"] == 0


def test_truly_infeasible_fails_at_once_without_retrying(master: ThreadMaster) -> None:
    c = master.client()
    job_id = c.submit([needs(needs=["n1", "n9"], opportunistic_tries=5, opportunistic_delay=60)])
    doc = master.wait_status(job_id, "error")
    assert doc["error"]["type"] == "PrerequisiteError"
    assert retry_lines(doc) == [] and doc["ops"][0]["tries"] == 0


def test_ops_that_succeeded_before_a_retry_do_not_run_again(master: ThreadMaster) -> None:
    hold(master, "n2")
    c = master.client()
    first = {"op": "debug.delay", "log_messages": 1}
    job_id = c.submit([first, needs(opportunistic_tries=50, opportunistic_delay=0.05)])
    try:
        poll("a retry", logged(master, job_id, "opportunistic try 1 of 50"))
    finally:
        master.master.locks.release_all(HOLDER)
    doc = master.wait_status(job_id, "success")
    assert [e["message"] for e in doc["log"]].count("delay step 1/1") == 1
    assert [o["status"] for o in doc["ops"]] == ["success", "success"]
