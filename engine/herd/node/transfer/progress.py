"""Progress accounting, the status file both ends publish, and the bandwidth limit.

A transfer runs for minutes in a background process while the master polls it with short
node calls, so the process publishes its counters to a JSON file that ``transfer_status``
reads.  Logical bytes count the disk offset reached (holes included, since skipping them
is progress too): that is the number the ETA must use.  Wire bytes are what crossed the
network after compression, which is what a bandwidth limit and an operator watching the
link care about.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Publishing more often than this would make the status file the bottleneck of fast runs.
PUBLISH_INTERVAL = 0.5

Clock = Callable[[], float]


class TokenBucket:
    """Average ``rate`` bytes/s with bursts of at most ``burst`` bytes.

    Debt is allowed (a 1 MiB chunk may be sent against a 256 KiB bucket, then the sender
    sleeps it off), so chunk size and burst need not agree.  ``throttled`` sums the sleeps:
    the accounting a test can check without measuring wall time.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate / 4, 64 * 1024))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self.taken = 0
        self.throttled = 0.0

    def take(self, amount: int) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= amount
        self.taken += amount
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            self.throttled += wait
            self._sleep(wait)


class Progress:
    """Counters of one end of a transfer, published atomically to ``status_path``."""

    def __init__(
        self,
        role: str,
        size: int = 0,
        status_path: Path | None = None,
        *,
        clock: Clock = time.monotonic,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.role = role
        self.size = size
        self.status_path = status_path
        self.state = "running"
        self.bytes = 0
        self.data_bytes = 0
        self.wire_bytes = 0
        self.error: dict[str, Any] | None = None
        self.digest: str | None = None
        self.extra = dict(extra or {})
        #: The bandwidth limiter of a sender, whose sleeps are part of the published status.
        self.throttle: TokenBucket | None = None
        self._clock = clock
        self._start = clock()
        self._published = float("-inf")
        self.last_change = self._start

    def advance(self, *, position: int | None = None, data: int = 0, wire: int = 0) -> None:
        if position is not None and position > self.bytes:
            self.bytes = position
        self.data_bytes += data
        self.wire_bytes += wire
        now = self._clock()
        self.last_change = now
        if now - self._published >= PUBLISH_INTERVAL:
            self.publish(now)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = self._clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.bytes / elapsed
        remaining = max(self.size - self.bytes, 0)
        eta = 0.0 if self.state != "running" else (remaining / rate if rate > 0 else None)
        return {
            "role": self.role,
            "state": self.state,
            "size": self.size,
            "bytes": self.bytes,
            "data_bytes": self.data_bytes,
            "wire_bytes": self.wire_bytes,
            "rate": rate,
            "wire_rate": self.wire_bytes / elapsed,
            "eta": eta,
            "elapsed": elapsed,
            "digest": self.digest,
            "error": self.error,
            "pid": os.getpid(),
            "updated": time.time(),
            "throttled_seconds": self.throttle.throttled if self.throttle else None,
            **self.extra,
        }

    def publish(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._published = now
        if self.status_path is None:
            return
        tmp = self.status_path.with_name(f".{self.status_path.name}.tmp")
        tmp.write_text(json.dumps(self.snapshot(now)))
        os.replace(tmp, self.status_path)

    def finish(
        self, state: str, *, error: dict[str, Any] | None = None, digest: str | None = None
    ) -> None:
        self.state = state
        self.error = error
        if digest is not None:
            self.digest = digest
        if state == "done":
            self.bytes = self.size
        self.publish()
