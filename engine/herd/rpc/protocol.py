"""The wire contract between the master and ``herd-node``, shared by both sides.

The agent (``herd.node.agent``) writes frames and the master's clients read them; this
module is all either needs of the other, so the master never imports the node program
(and its action modules) just to learn the protocol number, and a client that answers
in process (the tests' loopback nodes) decodes answers exactly as the SSH client does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herd.errors import HerdError, NodeError

PROTOCOL = 1


@dataclass(frozen=True)
class CallResult:
    """One node's outcome in ``call_many``: a result or the error, never both."""

    node: str
    result: dict[str, Any] | None = None
    error: HerdError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def naming_node(doc: dict[str, Any], node: str) -> HerdError:
    """The agent's error with the node recorded, and for a NodeError also named in the
    message: an agent reports its own failure (an OS script's log tail, a full disk)
    without knowing the name the cluster gave it, and the message is what people read."""
    message = str(doc.get("message", ""))
    if doc.get("type") == NodeError.kind and f"node {node}" not in message:
        doc = {**doc, "message": f"node {node}: {message}"}
    error = HerdError.from_dict(doc)
    error.details.setdefault("node", node)
    return error


def result_of(answer: dict[str, Any], node: str) -> dict[str, Any]:
    """The result of an answer frame, or the agent's error raised as its own HerdError."""
    if answer.get("ok") is True:
        return dict(answer.get("result") or {})
    raise naming_node(dict(answer.get("error") or {}), node)
