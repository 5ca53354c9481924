"""What every operation is made of: parameters, declared locks, prerequisites, a body.

An op never touches a node itself (it asks ``ctx.rpc``), never takes a lock it did not
declare, and registers the undo step for anything it creates *before* creating it, so
that a failure anywhere leaves the cluster as it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from herd import faults
from herd.config.model import Node
from herd.config.store import Store
from herd.crypto.secrets import ReplayCache
from herd.errors import CanceledError, HerdError
from herd.ops.params import Param, validate_params
from herd.ops.undo import MemoryJournal, UndoJournal, UndoStep, handler, with_secrets
from herd.rpc.protocol import CallResult

if TYPE_CHECKING:
    import paramiko

#: Sentinel meaning "every lock of this level" (mirrors herd.locking.ALL without importing
#: the lock manager into op definitions).
ALL_LOCKS = "__all__"


@dataclass(frozen=True)
class LockSpec:
    """The locks an op wants at one level."""

    names: tuple[str, ...] | str
    shared: bool = False
    opportunistic: bool = False
    min_count: int = 1


class Locks(Protocol):
    """The part of the lock manager an op may use while it runs."""

    def register(self, level: str, names: Iterable[str], owner: str | None = None) -> None: ...

    def unregister(self, level: str, names: Iterable[str], owner: str | None = None) -> None: ...

    def release(self, owner: str, level: str, names: Iterable[str] | None = None) -> None: ...

    def owned(self, owner: str) -> Mapping[str, Mapping[str, str]]: ...


class NodeServices(Protocol):
    """What an op may ask of the long-lived node services: calls to node agents, the
    cluster's key material, and forgetting pooled sessions.

    The master gives ``herd.rpc.services.Services`` (SSH to each node's ``herd-node``);
    tests give loopback nodes that run the same agent in process. Ops see only this.
    """

    @property
    def crypto_dir(self) -> Path: ...

    @property
    def ssh_key_path(self) -> Path: ...

    def cluster_key(self) -> paramiko.PKey: ...

    def bootstrap_key(self) -> paramiko.PKey: ...

    def call(
        self,
        node: Node,
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]: ...

    def call_many(
        self,
        nodes: Sequence[Node],
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, CallResult]: ...

    def reset_rpc(self) -> None: ...

    def forget_node(self, name: str) -> None: ...


class NoNodeServices:
    """The services of a context built without any (queue, lock and undo tests): reaching
    a node is a clear error instead of an AttributeError on None; with nothing pooled,
    forgetting sessions has nothing to do."""

    def _refuse(self) -> HerdError:
        return HerdError("this operation context reaches no nodes (it has no node services)")

    @property
    def crypto_dir(self) -> Path:
        raise self._refuse()

    @property
    def ssh_key_path(self) -> Path:
        raise self._refuse()

    def cluster_key(self) -> paramiko.PKey:
        raise self._refuse()

    def bootstrap_key(self) -> paramiko.PKey:
        raise self._refuse()

    def call(
        self,
        node: Node,
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        raise self._refuse()

    def call_many(
        self,
        nodes: Sequence[Node],
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, CallResult]:
        raise self._refuse()

    def reset_rpc(self) -> None:
        pass

    def forget_node(self, name: str) -> None:
        pass


@dataclass
class OpContext:
    """Everything an op may reach while it runs, and nothing more."""

    store: Store
    locks: Locks
    owner: str
    log_fn: Callable[[str, str, dict[str, Any] | None], None]
    cancel: threading.Event
    services: NodeServices = field(default_factory=NoNodeServices)
    submit_fn: Callable[[list[dict[str, Any]]], list[int]] | None = None
    #: Where undo steps are kept; the runner gives a durable one (see herd.ops.undo).
    journal: UndoJournal = field(default_factory=MemoryJournal)
    #: Nonces of accepted signed messages; the runner gives the master's persistent one.
    replay: ReplayCache = field(default_factory=ReplayCache)

    def log(self, message: str, kind: str = "message", data: dict[str, Any] | None = None) -> None:
        self.log_fn(message, kind, data)

    def progress(self, message: str, **data: Any) -> None:
        self.log_fn(message, "progress", data)

    def undo(self, what: str, kind: str, **args: Any) -> None:
        """Record a rollback step; call it *before* doing the thing it undoes.

        ``kind`` names a handler registered with :func:`herd.ops.undo.undo_handler`;
        ``args`` must be JSON, as a restarted master runs the step from its journal.
        """
        self.journal.add(UndoStep(kind, args, what))
        faults.point(f"undo:{kind}")

    def replace_undo(self, what: str, kind: str, **args: Any) -> None:
        """Swap the whole chain for one step at once: for an op past its point of no
        return, whose way back is no longer the steps that brought it here."""
        self.journal.replace(UndoStep(kind, args, what))
        faults.point(f"undo:{kind}")

    def forget_undo(self) -> None:
        """Drop the chain once the op has committed its result."""
        self.journal.clear()

    def run_undo(self) -> list[str]:
        """Run the chain newest first; every step runs even if an earlier one fails.

        A step leaves the journal only once it has run, so a master that dies in the
        middle runs it again at its next start (handlers are idempotent).
        """
        problems: list[str] = []
        for step_id, step in reversed(self.journal.pending()):
            self.log(f"rollback: {step.what}")
            try:
                handler(step.kind)(self, with_secrets(self.store, step.args))
            except Exception as exc:  # noqa: BLE001 - a failing undo must not stop the others
                problems.append(f"{step.what}: {exc}")
                self.log(f"rollback step failed: {step.what}: {exc}", "error")
            self.journal.done(step_id)
        return problems

    def owned(self, level: str) -> set[str]:
        return set(self.locks.owned(self.owner).get(level, {}))

    def release_locks(self, level: str, names: Iterable[str] | None = None) -> None:
        """Give locks back early once the op no longer needs them (Ganeti's lock reduction)."""
        self.locks.release(self.owner, level, None if names is None else list(names))

    def submit_jobs(self, jobs: list[dict[str, Any]]) -> list[int]:
        """Spawn follow-up jobs; they inherit this job's reason trail."""
        if self.submit_fn is None:
            raise HerdError("this context cannot submit jobs")
        return self.submit_fn(jobs)

    def check_cancel(self) -> None:
        """Long loops call this so a shutdown can stop them between steps."""
        if self.cancel.is_set():
            raise CanceledError("operation interrupted")


class Op:
    """Base class. Subclasses set OP_ID, SUMMARY, PARAMS and override the hooks."""

    OP_ID: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    #: Ops that change cluster-wide settings take the cluster lock exclusively; all
    #: others share it, so they can run side by side.
    CLUSTER_LOCK_SHARED: ClassVar[bool] = True

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = validate_params(self.PARAMS, params, op_id=self.OP_ID)
        self.started = time.time()

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        """Locks wanted at ``level``; called level by level, after the levels before it
        are held, so an op can lock an instance and then exactly that instance's nodes."""
        if level == "cluster":
            return LockSpec(("cluster",), shared=self.CLUSTER_LOCK_SHARED)
        return None

    def check(self, ctx: OpContext) -> None:
        """Prerequisites, checked with all locks held; must not change anything."""

    def run(self, ctx: OpContext) -> Any:
        """Do the work and return a JSON-able result."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator adding an op to the registry under its OP_ID."""
    if not cls.OP_ID or cls.OP_ID in _REGISTRY:
        raise ValueError(f"op id missing or registered twice: {cls.OP_ID!r}")
    _REGISTRY[cls.OP_ID] = cls
    return cls


def registry() -> dict[str, type[Op]]:
    from herd.ops import catalog  # noqa: F401 - importing the catalog registers every op

    return dict(_REGISTRY)
