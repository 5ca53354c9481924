"""The one exception hierarchy every layer raises.

Errors cross process boundaries (node agent -> master -> API -> CLI/Ansible), so each
carries a stable ``kind`` and a JSON-safe ``details`` dict; ``to_dict``/``from_dict``
rebuild the same exception type on the far side instead of flattening it to a string.
"""

from __future__ import annotations

import math
from typing import Any


class HerdError(Exception):
    """Base class: a message for humans plus machine-readable details."""

    kind = "HerdError"
    #: HTTP status the API answers with when this error ends a request.
    http_status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "message": self.message, "details": self.details}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> HerdError:
        kinds = {c.kind: c for c in _all_subclasses(HerdError)}
        cls = kinds.get(str(data.get("type")), HerdError)
        err = cls.__new__(cls)
        HerdError.__init__(err, str(data.get("message", "")), **dict(data.get("details") or {}))
        return err


class ValidationError(HerdError):
    """Bad input: names the field, the value given and what would have been accepted."""

    kind = "ValidationError"
    http_status = 400

    def __init__(self, field: str, value: Any, allowed: str, message: str | None = None) -> None:
        text = message or f"invalid value {value!r} for field '{field}': allowed {allowed}"
        super().__init__(text, field=field, value=_json_safe(value), allowed=allowed)


class NotFoundError(HerdError):
    """A named object (node, instance, job …) does not exist."""

    kind = "NotFoundError"
    http_status = 404


class ConflictError(HerdError):
    """The request contradicts current state: duplicate name, IP in use, node still busy."""

    kind = "ConflictError"
    http_status = 409


class StaleSerialError(ConflictError):
    """A config write was based on an object version that someone else has since changed."""

    kind = "StaleSerialError"


class PrerequisiteError(HerdError):
    """An operation cannot run in the cluster's current state (Ganeti's OpPrereqError)."""

    kind = "PrerequisiteError"
    http_status = 409


class TemporarilyInfeasibleError(PrerequisiteError):
    """Placement failed only because of the locks we could grab now; retrying may succeed."""

    kind = "TemporarilyInfeasibleError"


class LockTimeoutError(HerdError):
    """Locks could not be acquired within the allowed time."""

    kind = "LockTimeoutError"
    http_status = 503


class LockOrderError(HerdError):
    """Locks were requested against level order: a programming error in an op."""

    kind = "LockOrderError"


class CanceledError(HerdError):
    """The job was canceled before it started running."""

    kind = "CanceledError"
    http_status = 409


class NodeError(HerdError):
    """A node could not be reached or its agent reported a failure; names the node."""

    kind = "NodeError"
    http_status = 502


class MasterUnreachableError(NodeError):
    """No master answers on the API socket: not started yet, or running elsewhere."""

    kind = "MasterUnreachableError"


class HostKeyMismatchError(NodeError):
    """A node presented a host key other than the one pinned when it was added."""

    kind = "HostKeyMismatchError"


class AuthenticationError(HerdError):
    """A peer's credentials did not check out: bad signature, expired or foreign certificate."""

    kind = "AuthenticationError"
    http_status = 401


class ForbiddenError(HerdError):
    """The caller is known but may not do this: a read-only token writing, a remote caller
    reaching what only root on the master may touch."""

    kind = "ForbiddenError"
    http_status = 403


class RateLimitedError(AuthenticationError):
    """Too many failed logins from one address: refused before the credentials are checked,
    so guessing costs the guesser time instead of the master CPU."""

    kind = "RateLimitedError"
    http_status = 429


class TransferError(HerdError):
    """A disk stream failed: connection, checksum or timeout."""

    kind = "TransferError"
    http_status = 502


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # NaN and Infinity are not JSON: say them as text
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def _all_subclasses(cls: type[HerdError]) -> list[type[HerdError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found
