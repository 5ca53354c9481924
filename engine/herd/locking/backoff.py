"""Acquire with growing timeouts and priority aging (Ganeti 2.3's lock acquire strategy).

A job that blocks forever on its locks pins a worker and keeps whatever it already holds
at earlier levels. Trying with short, growing timeouts instead lets the job give the
partial set back between attempts (acquire is all-or-nothing), and raising its priority
one step per failed attempt ("aging") makes sure a low-priority job still gets its turn
against a stream of newer, higher-priority ones. Once attempts run out, or the priority
reaches the top (-20), the job waits without a timeout: it is now first in line anyway.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from herd.errors import LockTimeoutError, ValidationError
from herd.locking.manager import MIN_PRIORITY, LockManager, Names


@dataclass(frozen=True)
class BackoffPolicy:
    """How long each attempt waits: ``first`` seconds, times ``factor`` per attempt,
    capped at ``cap``, each spread by +/- ``jitter`` (a fraction) so jobs that failed
    together do not all retry at the same instant."""

    first: float = 0.05
    factor: float = 2.0
    cap: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.first <= 0:
            raise ValidationError("first", self.first, "a number of seconds > 0")
        if self.factor < 1:
            raise ValidationError("factor", self.factor, "a number >= 1")
        if self.cap < self.first:
            raise ValidationError("cap", self.cap, f"a number >= first ({self.first})")
        if not 0 <= self.jitter < 1:
            raise ValidationError("jitter", self.jitter, "a fraction in [0, 1)")

    def timeouts(self, rng: random.Random) -> Iterator[float]:
        """The endless sequence of per-attempt timeouts."""
        base = self.first
        while True:
            yield base * rng.uniform(1 - self.jitter, 1 + self.jitter)
            base = min(self.cap, base * self.factor)


DEFAULT_POLICY = BackoffPolicy()


def acquire_with_backoff(
    lm: LockManager,
    owner: str,
    level: str,
    names: Names,
    *,
    shared: bool = False,
    priority: int = 0,
    cancel: threading.Event | None = None,
    attempts: int = 8,
    policy: BackoffPolicy = DEFAULT_POLICY,
    on_retry: Callable[[int, LockTimeoutError], None] | None = None,
    rng: random.Random | None = None,
) -> set[str]:
    """Acquire ``names`` like ``lm.acquire``, retrying timed-out attempts with aging.

    ``on_retry(new_priority, error)`` runs after each failed attempt, so the job runner
    can log "waiting for locks" and persist the aged priority, as Ganeti does.
    """
    if attempts < 0:
        raise ValidationError("attempts", attempts, "an integer >= 0")
    timeouts = policy.timeouts(rng or random.Random())
    for _ in range(attempts):
        if priority <= MIN_PRIORITY:
            break
        try:
            return lm.acquire(
                owner,
                level,
                names,
                shared=shared,
                timeout=next(timeouts),
                priority=priority,
                cancel=cancel,
            )
        except LockTimeoutError as err:
            priority -= 1
            if on_retry is not None:
                on_retry(priority, err)
    return lm.acquire(owner, level, names, shared=shared, priority=priority, cancel=cancel)
