"""Lock manager: levels, shared/exclusive modes, priorities, timeouts, opportunistic grabs.

See ``manager`` for the ordering rules that make it deadlock-free and ``backoff`` for the
retry-with-aging strategy the job runner uses on top of it.
"""

from herd.locking.backoff import BackoffPolicy, acquire_with_backoff
from herd.locking.cancel import CancelEvent
from herd.locking.manager import ALL, LEVELS, LockManager

__all__ = ["ALL", "LEVELS", "BackoffPolicy", "CancelEvent", "LockManager", "acquire_with_backoff"]
