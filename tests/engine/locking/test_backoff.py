"""acquire_with_backoff: growing timeouts, priority aging, blocking fallback."""

from __future__ import annotations

import random
import threading

import pytest

from herd.errors import LockTimeoutError, ValidationError
from herd.locking import BackoffPolicy, LockManager, acquire_with_backoff

from .conftest import Call, pending, wait_until

FAST = BackoffPolicy(first=0.001, factor=2.0, cap=0.004, jitter=0.0)


def test_timeouts_double_up_to_cap_with_bounded_jitter() -> None:
    policy = BackoffPolicy(first=0.05, factor=2.0, cap=0.3, jitter=0.1)
    gen = policy.timeouts(random.Random(7))
    got = [next(gen) for _ in range(6)]
    for value, base in zip(got, [0.05, 0.1, 0.2, 0.3, 0.3, 0.3], strict=True):
        assert base * 0.9 <= value <= base * 1.1
    assert len(set(got)) == len(got), "jitter should spread equal bases"


@pytest.mark.parametrize(
    "kwargs", [{"first": 0}, {"factor": 0.5}, {"first": 1, "cap": 0.5}, {"jitter": 1.0}]
)
def test_policy_validation(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        BackoffPolicy(**kwargs)


def test_priority_ages_each_failed_attempt_until_lock_is_free(lm: LockManager) -> None:
    lm.acquire("holder", "node", ["n1"])
    seen: list[int] = []

    def on_retry(priority: int, err: LockTimeoutError) -> None:
        seen.append(priority)
        if len(seen) == 3:
            lm.release_all("holder")

    got = acquire_with_backoff(
        lm, "job", "node", ["n1"], priority=5, attempts=10, policy=FAST, on_retry=on_retry
    )
    assert got == {"n1"}
    assert seen == [4, 3, 2]
    assert lm.owned("job") == {"node": {"n1": "exclusive"}}


def test_falls_back_to_blocking_after_attempts(lm: LockManager) -> None:
    lm.acquire("holder", "node", ["n1"])
    retried = threading.Event()
    seen: list[int] = []

    def on_retry(priority: int, err: LockTimeoutError) -> None:
        seen.append(priority)
        if len(seen) == 2:
            retried.set()

    call = Call(
        lambda: acquire_with_backoff(
            lm, "job", "node", ["n1"], attempts=2, policy=FAST, on_retry=on_retry
        )
    )
    assert retried.wait(10)
    lm.release_all("holder")
    assert call.outcome() == {"n1"}
    assert seen == [-1, -2]


def test_priority_never_goes_above_top(lm: LockManager) -> None:
    lm.acquire("holder", "node", ["n1"])
    seen: list[int] = []
    waiting = Call(
        lambda: acquire_with_backoff(
            lm,
            "job",
            "node",
            ["n1"],
            priority=-19,
            attempts=5,
            policy=FAST,
            on_retry=lambda p, e: seen.append(p),
        )
    )
    wait_until(lambda: len(seen) == 1 and pending(lm, "node", "n1") == ["job"])
    assert next(r["pending"] for r in lm.info() if r["name"] == "n1")[0]["priority"] == -20
    lm.release_all("holder")
    assert waiting.outcome() == {"n1"}
    assert seen == [-20]
