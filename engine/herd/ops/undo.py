"""Undo steps as data, so that a rollback outlives the process that planned it.

An op that is about to create something records *what* would take it away again as a
named step (a kind plus JSON arguments) rather than a closure. The runner writes each
step to the job's journal before the op goes on, so a master killed mid-op leaves a
list that the next master can finish: it looks each kind up in the handler registry
and calls the handler with a fresh context and the recorded arguments.

Handlers live beside the op code that creates the thing they remove. Each one must be
idempotent and treat "already gone" as success: a step may run twice (the master died
while it ran) or find that the op never got as far as creating the thing.

A step is stored without its secrets (a DRBD disk's shared secret, in every disk or
instance it names): the journal outlives the op, and a secret is kept only where it
lives, the config. :func:`with_secrets` puts them back just before a handler runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from herd.config.model import Disk, Instance, Node
from herd.redact import REDACTED

if TYPE_CHECKING:
    from herd.config.store import Store
    from herd.ops.base import OpContext

UndoHandler = Callable[["OpContext", dict[str, Any]], None]

#: The keys of a disk's params that hold secrets, as the model declares them.
_DISK_SECRETS: frozenset[str] = next(
    f.metadata["secret_keys"] for f in dataclasses.fields(Disk) if f.name == "params"
)

_HANDLERS: dict[str, UndoHandler] = {}


@dataclass(frozen=True)
class UndoStep:
    """One rollback step: ``kind`` names its handler, ``what`` is the line for the log."""

    kind: str
    args: dict[str, Any]
    what: str

    def args_json(self) -> str:
        """The arguments as stored, secrets hidden; a value JSON cannot hold is a bug in
        the op, found when the step is recorded rather than when a restarted master
        needs it."""
        try:
            stored = _each_disk(self.args, _without_secret)
            return json.dumps(stored, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"undo step {self.kind!r}: arguments are not JSON: {exc}") from None

    def stored(self) -> UndoStep:
        """The step as a journal gives it back: what :meth:`args_json` keeps."""
        return UndoStep(self.kind, json.loads(self.args_json()), self.what)


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
        self._next += 1
        self._steps[self._next] = step.stored()
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


def with_secrets(store: Store, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` as a handler needs them: every disk's hidden secret (see
    :meth:`UndoStep.args_json`) taken from the config's disk of the same uuid and port.

    A disk the config does not hold that way is one the op made and had not committed
    (a new instance's, a move's new copy): its only undo is taking it down, for which the
    node finds the resource by name and by its own resource file. It gets a fresh random
    secret, which passes the node's check and could never let a peer connect.
    """

    @functools.cache
    def config_disks() -> dict[str, Disk]:
        return {d.uuid: d for i in store.list("instance") for d in i.disks}

    def restore(disk: dict[str, Any]) -> dict[str, Any]:
        params = disk["params"]
        hidden = [k for k in _DISK_SECRETS if params.get(k) == REDACTED]
        if not hidden:
            return disk
        stored = config_disks().get(disk["uuid"])
        if stored is not None and stored.params.get("port") == params.get("port"):
            known = stored.params
        else:
            known = {}
        found = {k: known.get(k) or secrets.token_urlsafe(24) for k in hidden}
        return {**disk, "params": {**params, **found}}

    result: dict[str, Any] = _each_disk(args, restore)
    return result


def _without_secret(disk: dict[str, Any]) -> dict[str, Any]:
    params = disk["params"]
    return {**disk, "params": {k: REDACTED if k in _DISK_SECRETS else v for k, v in params.items()}}


def _each_disk(value: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """A copy of ``value`` with ``change`` applied to every disk in it: a mapping with a
    ``uuid`` and a ``params`` mapping, as disk specs and stored disks both are, however
    deep (an instance's disks, a settle step's recorded rollback)."""
    if isinstance(value, list):
        return [_each_disk(v, change) for v in value]
    if not isinstance(value, dict):
        return value
    copy = {k: _each_disk(v, change) for k, v in value.items()}
    if isinstance(copy.get("params"), dict) and isinstance(copy.get("uuid"), str):
        return change(copy)
    return copy
