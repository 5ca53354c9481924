"""The failed-login brake with a hand-driven clock (pure logic, so no real waiting)."""

from __future__ import annotations

import pytest

from herd.auth.ratelimit import FailureLimiter
from herd.errors import RateLimitedError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_then_refusal_then_forgiveness_after_the_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=3, window=60, clock=clock)
    for _ in range(3):
        limiter.reserve("a")
        clock.now += 1
    with pytest.raises(RateLimitedError) as err:
        limiter.reserve("a")
    assert err.value.details["retry_after"] == 57
    limiter.reserve("b")
    clock.now += 57.5
    limiter.reserve("a")


def test_attempts_still_being_checked_use_up_the_budget() -> None:
    """Parallel guesses: none has failed yet, but the one past the budget is refused."""
    limiter = FailureLimiter(max_failures=3, window=60, clock=Clock())
    in_flight = [limiter.reserve("a") for _ in range(3)]
    with pytest.raises(RateLimitedError):
        limiter.reserve("a")
    limiter.release("a", in_flight[0])
    limiter.reserve("a")


def test_a_released_slot_is_no_failure() -> None:
    limiter = FailureLimiter(max_failures=2, window=60, clock=Clock())
    for _ in range(10):
        limiter.release("a", limiter.reserve("a"))
    assert limiter.tracked() == 0
    limiter.reserve("a")
    limiter.reserve("a")


def test_releasing_a_slot_that_slid_out_of_the_window_is_harmless() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=2, window=10, clock=clock)
    old = limiter.reserve("a")
    clock.now += 11
    limiter.reserve("a")
    limiter.release("a", old)
    limiter.reserve("a")
    with pytest.raises(RateLimitedError):
        limiter.reserve("a")


def test_the_window_slides_one_failure_at_a_time() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=2, window=10, clock=clock)
    limiter.reserve("a")
    clock.now += 6
    limiter.reserve("a")
    clock.now += 5
    limiter.reserve("a")
    with pytest.raises(RateLimitedError):
        limiter.reserve("a")


def test_memory_is_bounded_by_forgetting_the_stalest_address() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=1, window=60, max_clients=100, clock=clock)
    for i in range(1000):
        limiter.reserve(f"10.0.{i // 256}.{i % 256}")
    assert limiter.tracked() == 100
    limiter.reserve("10.0.0.0")
    with pytest.raises(RateLimitedError):
        limiter.reserve("10.0.3.231")


def test_addresses_without_recent_failures_are_dropped() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=5, window=60, clock=clock)
    limiter.reserve("a")
    clock.now += 61
    limiter.reserve("a")
    clock.now += 61
    assert limiter.tracked() == 1
    limiter.release("a", limiter.reserve("a"))
    assert limiter.tracked() == 0
