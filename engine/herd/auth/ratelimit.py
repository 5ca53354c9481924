"""A brake on guessing credentials over the HTTPS API.

Tokens are 256-bit random and cannot be guessed, but passwords can, and every wrong one
costs the master an scrypt run. So each client address gets a small budget of failed
attempts per time window; past it, requests are refused before any credential is checked.

An attempt takes its slot in the budget *before* its credentials are checked and counts
as a failure until it succeeds. Checking first and recording afterwards would let many
parallel guesses all pass the check while none had failed yet, so a burst of N wrong
passwords would cost N scrypt runs however small the budget.

Memory stays bounded however many addresses try: the least recently failing ones are
forgotten first.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from herd.errors import RateLimitedError

MAX_FAILURES = 10
WINDOW_SECONDS = 60.0
MAX_CLIENTS = 4096


class FailureLimiter:
    """Counts failed authentications per client address in a sliding window, attempts
    still being checked included."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def reserve(self, client: str) -> float:
        """Take one of ``client``'s failure slots for an attempt about to be checked.

        Returns the slot, to hand to :meth:`release` if the attempt turns out not to be a
        failure. Raises RateLimitedError (with ``retry_after`` seconds) when every slot is
        taken, by past failures and by attempts still being checked alike.
        """
        with self._lock:
            recent = self._recent(client)
            if recent is None:
                recent = self._failures[client] = deque(maxlen=self.max_failures)
                while len(self._failures) > self.max_clients:
                    self._failures.popitem(last=False)
            elif len(recent) >= self.max_failures:
                wait = max(1, math.ceil(recent[0] + self.window - self._clock()))
                raise RateLimitedError(
                    f"too many failed authentication attempts from {client}; try again in {wait} s",
                    client=client,
                    retry_after=wait,
                )
            self._failures.move_to_end(client)
            slot = self._clock()
            recent.append(slot)
            return slot

    def release(self, client: str, slot: float) -> None:
        """Give back a slot whose attempt succeeded (or was never checked)."""
        with self._lock:
            recent = self._failures.get(client)
            if recent is None:
                return
            with contextlib.suppress(ValueError):  # already slid out of the window
                recent.remove(slot)
            if not recent:
                del self._failures[client]

    def tracked(self) -> int:
        """How many addresses are remembered (bounded by ``max_clients``)."""
        with self._lock:
            return len(self._failures)

    def _recent(self, client: str) -> deque[float] | None:
        """The client's failures still inside the window; forgets the client once none are."""
        recent = self._failures.get(client)
        if recent is None:
            return None
        horizon = self._clock() - self.window
        while recent and recent[0] <= horizon:
            recent.popleft()
        if not recent:
            del self._failures[client]
            return None
        return recent
