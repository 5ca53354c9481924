"""Job statuses and priority limits, as plain constants.

Apart from ``herd.jobs.job`` (which re-exports them) so that a client can tell a final
job from a running one without loading the job document's dataclasses, whose import
(``dataclasses`` pulls in ``inspect``) is a sizeable part of a CLI command's start-up.
"""

from __future__ import annotations

QUEUED = "queued"
WAITING = "waiting"
RUNNING = "running"
SUCCESS = "success"
ERROR = "error"
CANCELING = "canceling"
CANCELED = "canceled"

STATUSES = (QUEUED, WAITING, RUNNING, SUCCESS, ERROR, CANCELING, CANCELED)
FINAL = frozenset({SUCCESS, ERROR, CANCELED})
#: The job-list filter for every status not in FINAL.
UNFINISHED = "unfinished"
CANCELABLE = frozenset({QUEUED, WAITING})

PRIO_HIGH, PRIO_NORMAL, PRIO_LOW = -10, 0, 10
PRIO_MIN, PRIO_MAX = -20, 19
