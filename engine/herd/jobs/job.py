"""The job document: what a client submitted and everything that happened to it."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from herd.jobs.status import (
    CANCELABLE,
    CANCELED,
    CANCELING,
    ERROR,
    FINAL,
    PRIO_HIGH,
    PRIO_LOW,
    PRIO_MAX,
    PRIO_MIN,
    PRIO_NORMAL,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCESS,
    UNFINISHED,
    WAITING,
)

#: The statuses and limits are re-exported: the queue, the API and tests use them from here.
__all__ = [
    "CANCELABLE",
    "CANCELED",
    "CANCELING",
    "ERROR",
    "FINAL",
    "PRIO_HIGH",
    "PRIO_LOW",
    "PRIO_MAX",
    "PRIO_MIN",
    "PRIO_NORMAL",
    "QUEUED",
    "RUNNING",
    "STATUSES",
    "SUCCESS",
    "UNFINISHED",
    "WAITING",
    "Job",
    "OpState",
]

_RATE_LIMIT = re.compile(r"^rate-limit:(\d+):(.+)$")


@dataclass
class OpState:
    """One opcode of a job, with its own status and result."""

    op: str
    params: dict[str, Any]
    status: str = QUEUED
    result: Any = None
    error: dict[str, Any] | None = None
    started_at: float | None = None
    ended_at: float | None = None
    #: Tries of this op that ended temporarily infeasible and were put back in the queue.
    tries: int = 0


@dataclass
class Job:
    """A submitted job; persisted as JSON, log lines stored beside it."""

    id: int
    ops: list[OpState]
    priority: int = PRIO_NORMAL
    reason: list[list[Any]] = field(default_factory=list)
    depends: list[list[Any]] = field(default_factory=list)
    status: str = QUEUED
    received_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    error: dict[str, Any] | None = None
    log_serial: int = 0
    #: Epoch seconds before which no worker picks the job (set when a try is put back).
    not_before: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        ops = [OpState(**o) for o in data["ops"]]
        return cls(**{**data, "ops": ops})

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def rate_limits(self) -> list[tuple[str, int]]:
        """The ``rate-limit:N:label`` reasons in the trail, as (label, N)."""
        found = []
        for entry in self.reason:
            m = _RATE_LIMIT.match(str(entry[1]) if len(entry) > 1 else "")
            if m:
                found.append((m.group(2), int(m.group(1))))
        return found

    def effective_priority(self, now: float, aging_seconds: float) -> int:
        """Priority raised one step per ``aging_seconds`` queued, so low jobs never starve."""
        steps = int((now - self.received_at) / aging_seconds) if aging_seconds > 0 else 0
        return max(PRIO_MIN, self.priority - steps)

    def summary(self) -> str:
        return ",".join(o.op for o in self.ops)
