"""Who may use the master's HTTPS API: API tokens, users with passwords, and a brake on
guessing them. The Unix socket needs none of this: only root can open it."""

from herd.auth.ratelimit import FailureLimiter
from herd.auth.store import AuthStore, Principal

__all__ = ["AuthStore", "FailureLimiter", "Principal"]
