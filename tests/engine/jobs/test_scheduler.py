"""The scheduler's decisions on plain jobs: no database, no queue, and a clock the test sets.

Every pick is asked at an explicit ``now`` with explicit job statuses, so aging and
``not_before`` are arithmetic here, never a wait.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from herd.jobs import job as J
from herd.jobs.job import Job, OpState
from herd.jobs.scheduler import IDLE_RECHECK, Scheduler

NOW = 1_000_000.0
AGING = 30.0


def make_job(job_id: int, priority: int = J.PRIO_NORMAL, **fields: Any) -> Job:
    fields.setdefault("received_at", NOW)
    ops = [OpState(op="debug.delay", params={})]
    return Job(id=job_id, ops=ops, priority=priority, **fields)


def idle(slot: int) -> None:
    """A worker body for schedulers whose slots these tests never start."""
    raise AssertionError(f"slot {slot} started")


def scheduler(*jobs: Job, aging: float = AGING) -> Scheduler:
    sched = Scheduler(idle, max_running=1, aging_seconds=aging)
    for job in jobs:
        sched.add(job)
    return sched


def order(sched: Scheduler, statuses: dict[int, str] | None = None) -> list[int]:
    """The ids in the order workers would take them, each started as it is picked."""
    taken = []
    while (job := sched.pick(statuses or {}, NOW).job) is not None:
        sched.start(job)
        taken.append(job.id)
    return taken


def limited(job_id: int, label: str = "x", limit: int = 2) -> Job:
    return make_job(job_id, reason=[["test", f"rate-limit:{limit}:{label}", NOW]])


def test_best_priority_first_then_the_oldest() -> None:
    sched = scheduler(
        make_job(1, J.PRIO_LOW), make_job(2), make_job(3, J.PRIO_HIGH), make_job(4, J.PRIO_HIGH)
    )
    assert order(sched) == [3, 4, 2, 1]


@pytest.mark.parametrize(("aging", "first"), [(AGING, 1), (0.0, 2)])
def test_aging_lets_a_long_queued_low_job_overtake(aging: float, first: int) -> None:
    steps = J.PRIO_MAX - J.PRIO_MIN
    old_low = make_job(1, J.PRIO_MAX, received_at=NOW - steps * AGING)
    new_high = make_job(2, J.PRIO_MIN + 1)
    assert order(scheduler(old_low, new_high, aging=aging))[0] == first


def test_aging_stops_at_the_top_priority_and_age_breaks_no_tie() -> None:
    """A job aged past PRIO_MIN ties with a fresh PRIO_MIN job: the lower id goes first."""
    ancient = make_job(2, J.PRIO_MAX, received_at=NOW - 1000 * AGING)
    assert order(scheduler(ancient, make_job(1, J.PRIO_MIN))) == [1, 2]


def test_a_dependency_not_ended_holds_the_job_back() -> None:
    sched = scheduler(make_job(5, depends=[[4, [J.SUCCESS]]]))
    for status in (None, J.QUEUED, J.WAITING, J.RUNNING, J.CANCELING):
        statuses = {} if status is None else {4: status}
        pick = sched.pick(statuses, NOW)
        assert (pick.job, pick.failed) == (None, [])
    assert order(sched, {4: J.SUCCESS}) == [5]


def test_a_dependency_ended_as_the_job_accepts_lets_it_run() -> None:
    sched = scheduler(make_job(5, depends=[[3, [J.SUCCESS]], [4, [J.ERROR, J.CANCELED]]]))
    assert order(sched, {3: J.SUCCESS, 4: J.CANCELED}) == [5]


def test_a_dependency_ended_otherwise_fails_the_job_and_says_why() -> None:
    doomed = make_job(5, J.PRIO_HIGH, depends=[[4, [J.SUCCESS]]])
    sched = scheduler(doomed, make_job(6))
    pick = sched.pick({4: J.ERROR}, NOW)
    assert pick.failed == [(doomed, "dependency job 4 ended as error, this job needed success")]
    assert pick.job is not None and pick.job.id == 6
    assert sched.is_queued(5), "the scheduler only decides: the queue ends the job"


def test_a_rate_limit_keeps_labelled_jobs_back_but_not_others() -> None:
    sched = scheduler(*(limited(i) for i in (1, 2, 3)), limited(4, label="y"), make_job(5))
    assert order(sched) == [1, 2, 4, 5]
    assert sched.is_queued(3)
    sched.forget(1)
    assert order(sched) == [3]


def test_a_job_put_back_frees_its_rate_limit_room() -> None:
    first = limited(1, limit=1)
    sched = scheduler(first, limited(2, limit=1))
    assert order(sched) == [1]
    first.not_before = NOW + 10.0
    sched.add(first)
    assert sched.is_queued(1)
    assert order(sched) == [2]


def test_a_job_put_back_waits_for_its_time_and_sets_the_wake_up() -> None:
    later = make_job(1, J.PRIO_HIGH, not_before=NOW + 2.0)
    sched = scheduler(later, make_job(2, J.PRIO_LOW, depends=[[9, [J.SUCCESS]]]))
    pick = sched.pick({}, NOW)
    assert (pick.job, pick.wake_at) == (None, NOW + 2.0)
    assert sched.pick({}, NOW + 2.0).job is later


def test_an_idle_pick_looks_again_within_the_recheck_time() -> None:
    pick = scheduler().pick({}, NOW)
    assert (pick.job, pick.failed, pick.wake_at) == (None, [], NOW + IDLE_RECHECK)


def test_get_and_active_see_only_live_jobs() -> None:
    job = make_job(1)
    sched = scheduler(job)
    assert sched.get(1) is job
    with pytest.raises(KeyError):
        sched.active(1)
    sched.start(job)
    assert sched.active(1) is job and not sched.is_queued(1)
    sched.forget(1)
    assert sched.get(1) is None


class Slots:
    """Worker bodies that report their slot and hold it until the test lets go."""

    def __init__(self) -> None:
        self.started: queue.Queue[int] = queue.Queue()
        self.release = threading.Event()

    def work(self, slot: int) -> None:
        self.started.put(slot)
        self.release.wait(60)

    def take(self, count: int) -> list[int]:
        return sorted(self.started.get(timeout=60) for _ in range(count))


@pytest.fixture
def slots() -> Iterator[tuple[Slots, Scheduler]]:
    body = Slots()
    sched = Scheduler(body.work, max_running=2)
    yield body, sched
    body.release.set()
    for worker in sched.workers():
        worker.join(60)


def test_resize_runs_one_worker_per_slot(slots: tuple[Slots, Scheduler]) -> None:
    body, sched = slots
    sched.resize(sched.max_running)
    assert body.take(2) == [0, 1]
    assert sorted(w.name for w in sched.workers()) == ["herd-worker-0", "herd-worker-1"]
    sched.resize(3)
    assert body.take(1) == [2], "only the new slot gets a worker"
    assert sched.max_running == 3


def test_shrinking_ends_the_slots_above_and_growing_fills_them_again(
    slots: tuple[Slots, Scheduler],
) -> None:
    body, sched = slots
    sched.resize(2)
    body.take(2)
    sched.resize(1)
    assert body.started.empty(), "shrinking starts nothing"
    assert not sched.slot_ends(0, stopping=False)
    assert sched.slot_ends(1, stopping=False)
    assert [w.name for w in sched.workers()] == ["herd-worker-0"]
    sched.resize(2)
    assert body.take(1) == [1]


def test_every_slot_ends_when_the_queue_stops(slots: tuple[Slots, Scheduler]) -> None:
    _, sched = slots
    assert sched.slot_ends(0, stopping=True)
