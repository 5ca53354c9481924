"""Undo steps as data, so that a rollback outlives the process that planned it.

An op that is about to create something records *what* would take it away again as a
named step (a kind plus JSON arguments) rather than a closure. The runner writes each
step to the job's journal before the op goes on, so a master killed mid-op leaves a
list that the next master can finish: it looks each kind up in the handler registry
and calls the handler with a fresh context and the recorded arguments.

Handlers live beside the op code that creates the thing they remove. Each one must be
idempotent and treat "already gone" as success: a step may run twice (the master died
while it ran) or find that the op never got as far as creating the thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from herd.config.model import Instance, Node

if TYPE_CHECKING:
    from herd.ops.base import OpContext

UndoHandler = Callable[["OpContext", dict[str, Any]], None]

_HANDLERS: dict[str, UndoHandler] = {}


@dataclass(frozen=True)
class UndoStep:
    """One rollback step: ``kind`` names its handler, ``what`` is the line for the log."""

    kind: str
    args: dict[str, Any]
    what: str

    def args_json(self) -> str:
        """The arguments as stored; a value JSON cannot hold is a bug in the op, found
        when the step is recorded rather than when a restarted master needs it."""
        try:
            return json.dumps(self.args, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"undo step {self.kind!r}: arguments are not JSON: {exc}") from None


class UndoJournal(Protocol):
    """Where a context keeps its undo steps; the job runner's copy is durable."""

    def add(self, step: UndoStep) -> int:
        """Record ``step``; it must be safely stored when this returns."""
        ...

    def pending(self) -> list[tuple[int, UndoStep]]:
        """The steps not yet undone, oldest first, with the ids ``add`` gave them."""
        ...

    def done(self, step_id: int) -> None: ...

    def clear(self) -> None: ...

    def replace(self, step: UndoStep) -> int:
        """Drop every step and record ``step`` instead, at once: a process dying in
        between must find either the old chain or the new step, never neither."""
        ...


class MemoryJournal:
    """The journal of a context that no other process will ever resume (unit tests,
    ops run in-process); same behaviour as the durable one, minus the disk."""

    def __init__(self) -> None:
        self._steps: dict[int, UndoStep] = {}
        self._next = 0

    def add(self, step: UndoStep) -> int:
        step.args_json()
        self._next += 1
        self._steps[self._next] = step
        return self._next

    def pending(self) -> list[tuple[int, UndoStep]]:
        return sorted(self._steps.items())

    def done(self, step_id: int) -> None:
        self._steps.pop(step_id, None)

    def clear(self) -> None:
        self._steps.clear()

    def replace(self, step: UndoStep) -> int:
        step.args_json()
        self._steps.clear()
        return self.add(step)


def undo_handler(kind: str) -> Callable[[UndoHandler], UndoHandler]:
    """Register the function that undoes steps of ``kind``."""

    def add(fn: UndoHandler) -> UndoHandler:
        if kind in _HANDLERS:
            raise ValueError(f"undo handler registered twice: {kind!r}")
        _HANDLERS[kind] = fn
        return fn

    return add


def handler(kind: str) -> UndoHandler:
    """The handler for ``kind``, after every op module (and so every handler) is loaded."""
    from herd.ops import catalog  # noqa: F401 - importing the catalog registers every handler

    try:
        return _HANDLERS[kind]
    except KeyError:
        raise LookupError(f"no undo handler for step kind {kind!r}") from None


def node_arg(node: Node) -> dict[str, Any]:
    """A node as a step argument: the whole object, because the step may have to reach
    a node the config does not (yet) hold, as a rolled-back node add does."""
    return node.to_dict()


def instance_arg(inst: Instance) -> dict[str, Any]:
    """An instance as a step argument: the object as the op saw it, which may differ
    from the stored one (a move's new disks exist only in the op until it commits)."""
    return inst.to_dict()


def node_of(args: dict[str, Any], key: str = "node") -> Node:
    return Node.from_dict(args[key])


def instance_of(args: dict[str, Any], key: str = "instance") -> Instance:
    return Instance.from_dict(args[key])
