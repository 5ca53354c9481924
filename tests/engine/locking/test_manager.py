"""LockManager behaviour, driven by real threads blocking on real conditions."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.errors import (
    CanceledError,
    ConflictError,
    LockOrderError,
    LockTimeoutError,
    NotFoundError,
    ValidationError,
)
from herd.locking import ALL, LEVELS, CancelEvent, LockManager

from .conftest import PATIENCE, Call, pending, wait_pending, wait_until


def holders(lm: LockManager, level: str, name: str) -> list[str]:
    return next(r["holders"] for r in lm.info() if r["level"] == level and r["name"] == name)  # type: ignore[return-value]


# -- modes -------------------------------------------------------------------------------


def test_shared_holders_coexist_and_exclude_exclusive(lm: LockManager) -> None:
    assert lm.acquire("a", "node", ["n1"], shared=True) == {"n1"}
    assert lm.acquire("b", "node", ["n1"], shared=True) == {"n1"}
    with pytest.raises(LockTimeoutError):
        lm.acquire("c", "node", ["n1"], timeout=0)
    assert holders(lm, "node", "n1") == ["a", "b"]
    assert lm.owned("a") == {"node": {"n1": "shared"}}


def test_exclusive_excludes_shared(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n1"])
    with pytest.raises(LockTimeoutError):
        lm.acquire("b", "node", ["n1"], shared=True, timeout=0)
    assert lm.owned("a") == {"node": {"n1": "exclusive"}}
    assert lm.owned("b") == {}


def test_single_name_string_and_cluster_lock(lm: LockManager) -> None:
    assert lm.acquire("a", "cluster", "cluster", shared=True) == {"cluster"}
    assert lm.acquire("a", "instance", "i1") == {"i1"}


# -- priorities and fairness --------------------------------------------------------------


def _queue_and_record(lm: LockManager, who: list[tuple[str, int]], shared: bool = False):
    """Queue one thread per (owner, priority) behind a lock held by 'holder'; each one
    records its turn and releases at once."""
    order: list[str] = []
    calls = []
    for owner, prio in who:

        def grab(owner: str = owner, prio: int = prio) -> None:
            lm.acquire(owner, "node", ["n1"], priority=prio, shared=shared)
            order.append(owner)
            lm.release(owner, "node")

        calls.append(Call(grab))
        wait_pending(lm, "node", "n1", owner)
    return order, calls


def test_waiters_served_by_priority(lm: LockManager) -> None:
    lm.acquire("holder", "node", ["n1"])
    order, calls = _queue_and_record(lm, [("low", 10), ("normal", 0), ("high", -10), ("top", -20)])
    assert pending(lm, "node", "n1") == ["top", "high", "normal", "low"]
    lm.release("holder", "node", ["n1"])
    for call in calls:
        call.outcome()
    assert order == ["top", "high", "normal", "low"]


def test_fifo_within_one_priority(lm: LockManager) -> None:
    lm.acquire("holder", "node", ["n1"])
    order, calls = _queue_and_record(lm, [("first", 3), ("second", 3), ("third", 3)])
    lm.release_all("holder")
    for call in calls:
        call.outcome()
    assert order == ["first", "second", "third"]


def test_shared_waiters_at_head_granted_together(lm: LockManager) -> None:
    lm.acquire("holder", "node", ["n1"])
    calls = []
    for owner, shared in [("s1", True), ("s2", True), ("x", False), ("s3", True)]:
        calls.append(Call(lambda o=owner, s=shared: lm.acquire(o, "node", ["n1"], shared=s)))
        wait_pending(lm, "node", "n1", owner)
    lm.release_all("holder")
    calls[0].outcome()
    calls[1].outcome()
    assert holders(lm, "node", "n1") == ["s1", "s2"]
    assert pending(lm, "node", "n1") == ["x", "s3"]
    lm.release_all("s1")
    lm.release_all("s2")
    calls[2].outcome()
    assert holders(lm, "node", "n1") == ["x"]
    lm.release_all("x")
    assert calls[3].outcome() == {"n1"}


def test_exclusive_waiter_not_starved_by_later_shared(lm: LockManager) -> None:
    lm.acquire("reader", "node", ["n1"], shared=True)
    writer = Call(lambda: lm.acquire("writer", "node", ["n1"], priority=-5))
    wait_pending(lm, "node", "n1", "writer")
    for prio in (0, -5):
        with pytest.raises(LockTimeoutError):
            lm.acquire(f"late{prio}", "node", ["n1"], shared=True, priority=prio, timeout=0)
    assert lm.acquire("urgent", "node", ["n1"], shared=True, priority=-6, timeout=0) == {"n1"}
    lm.release_all("reader")
    lm.release_all("urgent")
    assert writer.outcome() == {"n1"}


# -- timeouts and cancel -------------------------------------------------------------------


def test_timeout_gives_back_partial_set(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n3"])
    with pytest.raises(LockTimeoutError) as err:
        lm.acquire("b", "node", ["n1", "n2", "n3"], timeout=0.05)
    assert err.value.details["owner"] == "b"
    assert lm.owned("b") == {}
    assert pending(lm, "node", "n3") == []
    assert lm.acquire("c", "node", ["n1", "n2"], timeout=0) == {"n1", "n2"}


@pytest.mark.parametrize("event_class", [threading.Event, CancelEvent])
def test_cancel_wakes_waiter_and_rolls_back(lm: LockManager, event_class: type) -> None:
    lm.acquire("a", "node", ["n2"])
    cancel = event_class()
    call = Call(lambda: lm.acquire("b", "node", ["n1", "n2"], cancel=cancel))
    wait_pending(lm, "node", "n2", "b")
    assert lm.owned("b") == {"node": {"n1": "exclusive"}}
    cancel.set()
    with pytest.raises(CanceledError):
        call.outcome()
    assert lm.owned("b") == {}
    assert pending(lm, "node", "n2") == []
    assert isinstance(cancel, threading.Event)
    assert cancel.is_set()


def test_cancel_already_set_takes_nothing(lm: LockManager) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CanceledError):
        lm.acquire("b", "node", ["n1"], cancel=cancel)
    assert lm.owned("b") == {}


def test_cancel_rejects_unknown_event_subclass(lm: LockManager) -> None:
    class Odd(threading.Event):
        pass

    with pytest.raises(ValidationError):
        lm.acquire("b", "node", ["n1"], cancel=Odd())


# -- ordering ---------------------------------------------------------------------------------


def test_earlier_level_after_later_is_refused(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n1"])
    with pytest.raises(LockOrderError, match="instance"):
        lm.acquire("a", "instance", ["i1"])
    assert lm.acquire("a", "node-res", ["n1"]) == {"n1"}


def test_reacquire_and_out_of_order_names_are_refused(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n2"])
    with pytest.raises(LockOrderError, match="twice"):
        lm.acquire("a", "node", ["n2"], shared=True)
    with pytest.raises(LockOrderError, match="sorted order"):
        lm.acquire("a", "node", ["n1"])
    with pytest.raises(LockOrderError, match="ALL"):
        lm.acquire("a", "node", ALL)
    assert lm.acquire("a", "node", ["n3", "n4"]) == {"n3", "n4"}


def test_bad_arguments(lm: LockManager) -> None:
    with pytest.raises(ValidationError):
        lm.acquire("a", "rack", ["r1"])
    with pytest.raises(ValidationError):
        lm.acquire("a", "node", ["n1"], priority=20)
    with pytest.raises(ValidationError):
        lm.acquire("a", "node", ["n1"], opportunistic=True, min_count=2)
    with pytest.raises(ValidationError):
        lm.acquire("", "node", ["n1"])
    with pytest.raises(NotFoundError) as err:
        lm.acquire("a", "node", ["n1", "nx"])
    assert err.value.details == {"level": "node", "name": "nx"}
    assert lm.owned("a") == {}


# -- ALL, register, unregister ------------------------------------------------------------------


def test_all_takes_every_name_and_hides_set_lock(lm: LockManager) -> None:
    assert lm.acquire("a", "node", ALL, shared=True) == {"n1", "n2", "n3", "n4"}
    assert lm.owned("a") == {"node": dict.fromkeys(["n1", "n2", "n3", "n4"], "shared")}
    assert holders(lm, "node", "[set]") == ["a"]


def test_register_waits_for_all_holder(lm: LockManager) -> None:
    lm.acquire("a", "node", ALL, shared=True)
    reg = Call(lambda: lm.register("node", ["n5"]))
    wait_until(lambda: bool(pending(lm, "node", "[set]")))
    assert "n5" not in {r["name"] for r in lm.info()}
    lm.release("a", "node")
    reg.outcome()
    assert lm.acquire("b", "node", ["n5"]) == {"n5"}


def test_unregister_waits_for_all_holder(lm: LockManager) -> None:
    lm.acquire("a", "instance", ALL)
    unreg = Call(lambda: lm.unregister("instance", ["i1"]))
    wait_until(lambda: bool(pending(lm, "instance", "[set]")))
    lm.release_all("a")
    unreg.outcome()
    with pytest.raises(NotFoundError):
        lm.acquire("b", "instance", ["i1"])


def test_all_holder_may_register_and_take_new_name(lm: LockManager) -> None:
    lm.acquire("a", "instance", ALL)
    lm.register("instance", ["i0"], owner="a", acquire=True)
    assert lm.owned("a")["instance"]["i0"] == "exclusive"
    with pytest.raises(ConflictError):
        lm.register("instance", ["i0"], owner="a")


def test_register_out_of_order_is_refused(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n1"])
    with pytest.raises(LockOrderError):
        lm.register("instance", ["i9"], owner="a")
    with pytest.raises(ValidationError):
        lm.register("cluster", ["other"])


def test_unregister_held_by_someone_else_conflicts(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n1"], shared=True)
    with pytest.raises(ConflictError) as err:
        lm.unregister("node", ["n1", "n2"])
    assert err.value.details["holders"] == ["a"]
    assert {"n1", "n2"} <= {r["name"] for r in lm.info() if r["level"] == "node"}


def test_unregister_own_lock_releases_and_fails_its_waiters(lm: LockManager) -> None:
    lm.acquire("a", "instance", ["i2"])
    waiter = Call(lambda: lm.acquire("b", "instance", ["i1", "i2"]))
    wait_pending(lm, "instance", "i2", "b")
    lm.unregister("instance", ["i2"], owner="a")
    with pytest.raises(NotFoundError):
        waiter.outcome()
    assert lm.owned("a") == {}
    assert lm.owned("b") == {}


def test_all_waiter_skips_name_removed_while_waiting(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n2"])
    waiter = Call(lambda: lm.acquire("b", "node", ALL))
    wait_pending(lm, "node", "n2", "b")
    lm.unregister("node", ["n2"], owner="a")
    assert waiter.outcome() == {"n1", "n3", "n4"}


# -- opportunistic -------------------------------------------------------------------------------


def test_opportunistic_takes_what_is_free(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n2"])
    got = lm.acquire("b", "node", ["n1", "n2", "n3"], opportunistic=True)
    assert got == {"n1", "n3"}
    assert lm.owned("b") == {"node": {"n1": "exclusive", "n3": "exclusive"}}


def test_opportunistic_min_count_waits_for_enough(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n1", "n2"])
    with pytest.raises(LockTimeoutError):
        lm.acquire("b", "node", ["n1", "n2", "n3"], opportunistic=True, min_count=2, timeout=0)
    assert lm.owned("b") == {}
    call = Call(
        lambda: lm.acquire("b", "node", ["n1", "n2", "n3"], opportunistic=True, min_count=2)
    )
    lm.release("a", "node", ["n1"])
    assert call.outcome() == {"n1", "n3"}
    assert lm.owned("a") == {"node": {"n2": "exclusive"}}


def test_opportunistic_does_not_jump_the_queue(lm: LockManager) -> None:
    lm.acquire("a", "node", ["n1"], shared=True)
    writer = Call(lambda: lm.acquire("w", "node", ["n1"]))
    wait_pending(lm, "node", "n1", "w")
    got = lm.acquire("b", "node", ["n1", "n2"], shared=True, opportunistic=True)
    assert got == {"n2"}
    lm.release_all("a")
    writer.outcome()


def test_opportunistic_cancel(lm: LockManager) -> None:
    lm.acquire("a", "node", ALL)
    cancel = threading.Event()
    call = Call(lambda: lm.acquire("b", "node", ["n1", "n2"], opportunistic=True, cancel=cancel))
    cancel.set()
    with pytest.raises(CanceledError):
        call.outcome()


# -- release ------------------------------------------------------------------------------------


def test_early_release_lets_waiter_in(lm: LockManager) -> None:
    lm.acquire("a", "cluster", "cluster", shared=True)
    lm.acquire("a", "node", ["n1", "n2"])
    waiter = Call(lambda: lm.acquire("b", "node", ["n1"]))
    wait_pending(lm, "node", "n1", "b")
    lm.release("a", "node", ["n1"])
    assert waiter.outcome() == {"n1"}
    assert lm.owned("a") == {"cluster": {"cluster": "shared"}, "node": {"n2": "exclusive"}}
    with pytest.raises(ConflictError):
        lm.release("a", "node", ["n1"])


def test_release_all_frees_every_level(lm: LockManager) -> None:
    lm.acquire("a", "cluster", "cluster")
    lm.acquire("a", "instance", ALL)
    lm.acquire("a", "node", ["n1"])
    lm.release_all("a")
    assert lm.owned("a") == {}
    assert all(not r["holders"] for r in lm.info())
    assert lm.acquire("b", "instance", ALL) == {"i1", "i2", "i3"}


# -- concurrency property --------------------------------------------------------------------------

NAMES = {
    "cluster": ["cluster"],
    "nodegroup": ["g1", "g2"],
    "instance": ["i1", "i2", "i3"],
    "node": ["n1", "n2", "n3"],
    "node-res": ["n1", "n2", "n3"],
}

step = st.tuples(
    st.booleans(),  # shared
    st.one_of(st.just("ALL"), st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True)),
    st.sampled_from(["wait", "timeout", "opportunistic"]),
    st.integers(-3, 3),  # priority
)
plan = st.fixed_dictionaries({}, optional={level: step for level in LEVELS})


class Monitor:
    """What the callers observe: they enter a lock's critical section after acquire
    returns and leave it before release, so any overlap seen here is a manager bug."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.inside: dict[tuple[str, str], Counter[str]] = {}
        self.violations: list[str] = []

    def enter(self, level: str, names: set[str], shared: bool) -> None:
        with self.mutex:
            for name in names:
                seen = self.inside.setdefault((level, name), Counter())
                if seen["exclusive"] or (not shared and seen["shared"]):
                    self.violations.append(f"{level}/{name}: {dict(seen)} + shared={shared}")
                seen["shared" if shared else "exclusive"] += 1

    def leave(self, level: str, names: set[str], shared: bool) -> None:
        with self.mutex:
            for name in names:
                self.inside[(level, name)]["shared" if shared else "exclusive"] -= 1


def run_job(lm: LockManager, owner: str, job: dict, monitor: Monitor) -> None:
    taken: list[tuple[str, set[str], bool]] = []
    try:
        for level in LEVELS:
            if level not in job:
                continue
            shared, which, how, priority = job[level]
            pool = NAMES[level]
            names = ALL if which == "ALL" else {pool[i % len(pool)] for i in which}
            try:
                got = lm.acquire(
                    owner,
                    level,
                    names,
                    shared=shared,
                    priority=priority,
                    timeout=0.01 if how == "timeout" else None,
                    opportunistic=how == "opportunistic" and names is not ALL,
                )
            except LockTimeoutError:
                break
            monitor.enter(level, got, shared)
            taken.append((level, got, shared))
            time.sleep(0.0005)  # stay inside a while, so other jobs really contend
    finally:
        for level, got, shared in taken:
            monitor.leave(level, got, shared)
        lm.release_all(owner)


@settings(max_examples=60)
@given(jobs=st.lists(plan, min_size=2, max_size=6))
def test_random_jobs_never_deadlock_or_overlap(jobs: list[dict]) -> None:
    lm = LockManager()
    for level, names in NAMES.items():
        if level != "cluster":
            lm.register(level, names)
    monitor = Monitor()
    threads = [
        Call(lambda o=f"job-{i}", j=job: run_job(lm, o, j, monitor)) for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.join(PATIENCE)
    assert not any(t.is_alive() for t in threads), "deadlock: some jobs never finished"
    for thread in threads:
        thread.outcome()
    assert monitor.violations == []
    assert all(not r["holders"] and not r["pending"] for r in lm.info())
