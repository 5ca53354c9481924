"""The lock manager: named shared/exclusive locks in levels, with priorities.

Deadlock freedom rests on one global order: level (``LEVELS``), then inside a level the
set lock (taken by ``ALL`` and by register/unregister) before any name, then names in
sorted order. An owner only ever waits for a lock that sorts after everything it holds,
so the wait-for graph cannot close a cycle; ``LockOrderError`` enforces the rule instead of
trusting every op to follow it.

Everything runs under one mutex. Lock calls are short in-memory bookkeeping, so one mutex
costs little and makes multi-lock decisions (opportunistic grabs, unregistering several
names, ``info()``) consistent snapshots. Waiters block on their own condition of that
mutex and are handed the lock directly by whoever frees it, so a woken waiter never has to
race for it again and the priority order decided at release time is the one that holds.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

from herd.errors import (
    CanceledError,
    ConflictError,
    LockOrderError,
    LockTimeoutError,
    NotFoundError,
    ValidationError,
)
from herd.locking.cancel import CancelEvent, wakeable

LEVELS: Final = ("cluster", "nodegroup", "instance", "node", "node-res")
#: The one lock of the ``cluster`` level.
CLUSTER_LOCK: Final = "cluster"
#: How the per-level set lock shows up in ``info()``; brackets cannot occur in object names.
SET_LOCK_NAME: Final = "[set]"
MIN_PRIORITY: Final = -20
MAX_PRIORITY: Final = 19

Mode = Literal["shared", "exclusive"]


class _AllNames:
    """Type of ``ALL``: a sentinel, so it can never be mistaken for a lock name."""

    _instance: _AllNames | None = None

    def __new__(cls) -> _AllNames:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ALL"


#: Every registered name of a level, plus the level's set lock in the same mode.
ALL: Final = _AllNames()

Names = Iterable[str] | str | _AllNames


@dataclass(eq=False)
class _Request:
    """One owner queued for one lock; ``granted``/``removed`` are set by the waker."""

    owner: str
    shared: bool
    priority: int
    seq: int
    cond: threading.Condition
    granted: bool = False
    removed: bool = False

    def key(self) -> tuple[int, int]:
        return (self.priority, self.seq)


@dataclass(eq=False)
class _Lock:
    level: str
    name: str
    is_set: bool = False
    exclusive: str | None = None
    shared: set[str] = field(default_factory=set)
    queue: list[_Request] = field(default_factory=list)

    def compatible(self, shared: bool) -> bool:
        return self.exclusive is None and (shared or not self.shared)

    def holders(self) -> set[str]:
        return {self.exclusive} if self.exclusive is not None else set(self.shared)


@dataclass(eq=False)
class _Level:
    name: str
    index: int
    set_lock: _Lock
    locks: dict[str, _Lock] = field(default_factory=dict)
    #: Conditions of opportunistic waiters: they wait for "enough locks free", not for one
    #: lock's queue, so every release at the level wakes them to count again.
    watchers: set[threading.Condition] = field(default_factory=set)


class LockManager:
    """Shared/exclusive locks per level with priorities, timeouts, cancel and ``ALL``."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._seq = itertools.count()
        self._levels = {
            name: _Level(name, index, _Lock(name, SET_LOCK_NAME, is_set=True))
            for index, name in enumerate(LEVELS)
        }
        self._levels["cluster"].locks[CLUSTER_LOCK] = _Lock("cluster", CLUSTER_LOCK)
        #: owner -> level -> lock -> shared?; the reverse index of the locks' holders.
        self._held: dict[str, dict[str, dict[_Lock, bool]]] = {}

    # -- public API -------------------------------------------------------------------

    def acquire(
        self,
        owner: str,
        level: str,
        names: Names,
        *,
        shared: bool = False,
        timeout: float | None = None,
        priority: int = 0,
        opportunistic: bool = False,
        min_count: int = 1,
        cancel: threading.Event | None = None,
    ) -> set[str]:
        """Take locks at one level; all-or-nothing unless ``opportunistic``.

        On timeout or cancel everything this call took is given back before raising, so a
        caller that retries (see ``acquire_with_backoff``) never sits on a partial set that
        could block others while it waits again.
        """
        _check_owner(owner)
        lvl = self._level(level)
        wanted = self._wanted(names)
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not MIN_PRIORITY <= priority <= MAX_PRIORITY
        ):
            raise ValidationError("priority", priority, f"integers {MIN_PRIORITY}..{MAX_PRIORITY}")
        if min_count < 1 or (wanted is not None and opportunistic and min_count > len(wanted)):
            raise ValidationError("min_count", min_count, "1 up to the number of names requested")
        if timeout is not None and timeout < 0:
            raise ValidationError("timeout", timeout, "None or a number >= 0")
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter(self, owner, shared, priority, deadline, timeout, cancel)
        with waiter, self._mutex:
            self._check_order(owner, lvl, wanted)
            if waiter.cancel is not None and waiter.cancel.is_set():
                raise CanceledError(f"{owner}: canceled before acquiring {level} locks")
            taken: list[_Lock] = []
            try:
                if wanted is None:
                    waiter.take(lvl, lvl.set_lock)
                    taken.append(lvl.set_lock)
                    targets = sorted(lvl.locks)
                else:
                    targets = sorted(wanted)
                    missing = [n for n in targets if n not in lvl.locks]
                    if missing:
                        raise NotFoundError(
                            f"no {level} lock named {missing[0]!r}", level=level, name=missing[0]
                        )
                if opportunistic:
                    taken.extend(self._grab_free(waiter, lvl, targets, min_count))
                else:
                    self._take_all(waiter, lvl, targets, taken, skip_removed=wanted is None)
            except BaseException:
                for lock in reversed(taken):
                    self._release_lock(lvl, lock, owner)
                raise
            return {lock.name for lock in taken if not lock.is_set}

    def release(self, owner: str, level: str, names: Iterable[str] | str | None = None) -> None:
        """Give back some locks of a level (early release) or, with None, the whole level."""
        lvl = self._level(level)
        with self._mutex:
            held = self._held.get(owner, {}).get(level, {})
            if names is None:
                locks = list(held)
            else:
                wanted = {names} if isinstance(names, str) else set(names)
                by_name = {lock.name: lock for lock in held if not lock.is_set}
                not_held = sorted(wanted - by_name.keys())
                if not_held:
                    raise ConflictError(
                        f"{owner} does not hold {level} lock {not_held[0]!r}",
                        owner=owner,
                        level=level,
                        name=not_held[0],
                    )
                locks = [by_name[n] for n in sorted(wanted)]
            for lock in locks:
                self._release_lock(lvl, lock, owner)

    def release_all(self, owner: str) -> None:
        """Give back everything, deepest level first (the reverse of acquisition order)."""
        with self._mutex:
            for level in reversed(LEVELS):
                for lock in list(self._held.get(owner, {}).get(level, {})):
                    self._release_lock(self._levels[level], lock, owner)

    def owned(self, owner: str) -> dict[str, dict[str, Mode]]:
        """Locks held by ``owner`` per level; the set lock behind ``ALL`` is not listed."""
        with self._mutex:
            result: dict[str, dict[str, Mode]] = {}
            for level, locks in self._held.get(owner, {}).items():
                names = {lock.name: _mode(s) for lock, s in locks.items() if not lock.is_set}
                if names:
                    result[level] = dict(sorted(names.items()))
            return result

    def info(self) -> list[dict[str, object]]:
        """Every lock with holders and queue, for ``herd lock list`` and debugging.

        The set lock of a level is listed (as ``[set]``) only while someone holds or
        waits for it, since an idle one says nothing.
        """
        with self._mutex:
            rows: list[dict[str, object]] = []
            for lvl in self._levels.values():
                locks = [lvl.locks[n] for n in sorted(lvl.locks)]
                if lvl.set_lock.holders() or lvl.set_lock.queue:
                    locks.insert(0, lvl.set_lock)
                for lock in locks:
                    mode: Mode | None = None
                    if lock.exclusive is not None:
                        mode = "exclusive"
                    elif lock.shared:
                        mode = "shared"
                    rows.append(
                        {
                            "level": lvl.name,
                            "name": lock.name,
                            "mode": mode,
                            "holders": sorted(lock.holders()),
                            "pending": [
                                {"owner": r.owner, "mode": _mode(r.shared), "priority": r.priority}
                                for r in lock.queue
                            ],
                        }
                    )
            return rows

    def register(
        self,
        level: str,
        names: Iterable[str] | str,
        owner: str | None = None,
        *,
        timeout: float | None = None,
        acquire: bool = False,
    ) -> None:
        """Add lock names to a level, waiting while anyone holds the level's set (``ALL``).

        ``acquire=True`` hands the new locks to ``owner`` exclusively in the same step, so
        no other job can grab a freshly created object's lock in between (which could also
        break the owner's name order if it holds ALL and the new name sorts early). A job
        must pass itself as ``owner``: that is what lets the call check lock order (and
        skip the wait when the job already holds the set lock exclusively); without an
        owner the call assumes a caller that holds no locks, such as master start-up.
        """
        lvl = self._mutable_level(level)
        new = self._plain_names(names)
        if acquire and owner is None:
            raise ValidationError("owner", None, "an owner when acquire=True")
        with self._mutex, self._set_lock(lvl, owner, timeout):
            dup = sorted(n for n in new if n in lvl.locks)
            if dup:
                raise ConflictError(
                    f"{level} lock {dup[0]!r} is already registered", level=level, name=dup[0]
                )
            for name in sorted(new):
                lock = lvl.locks[name] = _Lock(level, name)
                if acquire and owner is not None:
                    self._grant(lock, owner, shared=False)

    def unregister(
        self,
        level: str,
        names: Iterable[str] | str,
        owner: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Remove lock names; refused while anyone but ``owner`` holds one of them.

        An owner holding every one of the names exclusively removes them at once: nobody
        can hold ALL of the level then, and taking the set lock would break lock order.
        Otherwise the set lock is taken, so removal waits for current ``ALL`` holders.
        Jobs queued for a removed name fail with NotFoundError (an ``ALL`` waiter skips it).
        """
        lvl = self._mutable_level(level)
        gone = sorted(self._plain_names(names))
        with self._mutex:
            self._check_registered(lvl, gone)
            if owner is not None and all(lvl.locks[n].exclusive == owner for n in gone):
                self._remove(lvl, gone, owner)
                return
            with self._set_lock(lvl, owner, timeout):
                self._check_registered(lvl, gone)
                for name in gone:
                    others = sorted(lvl.locks[name].holders() - {owner})
                    if others:
                        raise ConflictError(
                            f"{level} lock {name!r} is held by {others[0]}",
                            level=level,
                            name=name,
                            holders=others,
                        )
                self._remove(lvl, gone, owner)

    # -- waiting ----------------------------------------------------------------------

    def _take_all(
        self,
        waiter: _Waiter,
        lvl: _Level,
        targets: list[str],
        taken: list[_Lock],
        *,
        skip_removed: bool,
    ) -> None:
        """Take the locks one by one in name order, appending each to ``taken`` at once.

        ``taken`` is the caller's list so that, if a later lock times out, the caller
        still knows every lock this call already got and can give them all back.
        """
        for name in targets:
            lock = lvl.locks.get(name)
            if lock is not None and waiter.take(lvl, lock):
                taken.append(lock)
            elif not skip_removed:
                raise NotFoundError(
                    f"{lvl.name} lock {name!r} was removed while waiting for it",
                    level=lvl.name,
                    name=name,
                )

    def _grab_free(
        self, waiter: _Waiter, lvl: _Level, targets: list[str], min_count: int
    ) -> list[_Lock]:
        """Take whatever is free now; if fewer than ``min_count``, wait until enough are."""

        def free() -> list[_Lock]:
            alive = [lvl.locks[n] for n in targets if n in lvl.locks]
            if len(alive) < min_count:
                raise NotFoundError(
                    f"only {len(alive)} of the requested {lvl.name} locks exist, "
                    f"fewer than min_count={min_count}",
                    level=lvl.name,
                    min_count=min_count,
                )
            return [lock for lock in alive if waiter.grantable(lock)]

        lvl.watchers.add(waiter.cond)
        try:
            waiter.wait(lambda: len(free()) >= min_count, f"{min_count} of {lvl.name} locks")
        finally:
            lvl.watchers.discard(waiter.cond)
        got = free()
        for lock in got:
            self._grant(lock, waiter.owner, waiter.shared)
        return got

    @contextmanager
    def _set_lock(self, lvl: _Level, owner: str | None, timeout: float | None) -> Iterator[None]:
        """Hold the level's set lock exclusively for a register/unregister (caller has mutex)."""
        if owner is not None and lvl.set_lock.exclusive == owner:
            yield
            return
        token = owner if owner is not None else f"register-{next(self._seq)}"
        if owner is not None:
            self._check_order(owner, lvl, None)
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter(self, token, False, MIN_PRIORITY, deadline, timeout, None)
        waiter.take(lvl, lvl.set_lock)
        try:
            yield
        finally:
            self._release_lock(lvl, lvl.set_lock, token)

    # -- bookkeeping (caller holds the mutex) -----------------------------------------

    def _grant(self, lock: _Lock, owner: str, shared: bool) -> None:
        if shared:
            lock.shared.add(owner)
        else:
            lock.exclusive = owner
        self._held.setdefault(owner, {}).setdefault(lock.level, {})[lock] = shared

    def _dispatch(self, lock: _Lock) -> None:
        """Hand the lock to the head of its queue while the head is compatible.

        Consecutive shared requests at the head are granted together; an exclusive head
        stops the sweep, so later shared requests (same or lower priority) queue behind it
        instead of starving it.
        """
        while lock.queue and lock.compatible(lock.queue[0].shared):
            req = lock.queue.pop(0)
            req.granted = True
            self._grant(lock, req.owner, req.shared)
            req.cond.notify_all()

    def _freed(self, lvl: _Level, lock: _Lock) -> None:
        self._dispatch(lock)
        for cond in lvl.watchers:
            cond.notify_all()

    def _release_lock(self, lvl: _Level, lock: _Lock, owner: str) -> None:
        if lock.exclusive == owner:
            lock.exclusive = None
        else:
            lock.shared.discard(owner)
        levels = self._held.get(owner, {})
        levels.get(lvl.name, {}).pop(lock, None)
        if not levels.get(lvl.name, True):
            del levels[lvl.name]
        if not levels:
            self._held.pop(owner, None)
        self._freed(lvl, lock)

    def _remove(self, lvl: _Level, names: list[str], owner: str | None) -> None:
        for name in names:
            lock = lvl.locks.pop(name)
            for req in lock.queue:
                req.removed = True
                req.cond.notify_all()
            lock.queue.clear()
            if owner is not None and owner in lock.holders():
                self._release_lock(lvl, lock, owner)
        for cond in lvl.watchers:
            cond.notify_all()

    def _check_order(self, owner: str, lvl: _Level, wanted: set[str] | None) -> None:
        """Refuse any request that could wait out of the global lock order."""
        held = self._held.get(owner, {})
        for later in LEVELS[lvl.index + 1 :]:
            if held.get(later):
                raise LockOrderError(
                    f"{owner} holds {later} locks, so it cannot acquire at the earlier level "
                    f"{lvl.name}; locks are taken in the order {', '.join(LEVELS)}",
                    owner=owner,
                    level=lvl.name,
                    held_level=later,
                )
        here = held.get(lvl.name, {})
        if not here:
            return
        if wanted is None:
            raise LockOrderError(
                f"{owner} already holds {lvl.name} locks; ALL (and register/unregister) must "
                "come before any other lock of the level",
                owner=owner,
                level=lvl.name,
            )
        names = {lock.name for lock in here if not lock.is_set}
        again = sorted(wanted & names)
        if again:
            raise LockOrderError(
                f"{owner} already holds {lvl.name} lock {again[0]!r}; a lock cannot be "
                "acquired twice",
                owner=owner,
                level=lvl.name,
                name=again[0],
            )
        if names and wanted and min(wanted) < max(names):
            raise LockOrderError(
                f"{owner} holds {lvl.name} lock {max(names)!r}, so it cannot acquire "
                f"{min(wanted)!r} now: names within a level are taken in sorted order",
                owner=owner,
                level=lvl.name,
                name=min(wanted),
            )

    def _check_registered(self, lvl: _Level, names: list[str]) -> None:
        missing = [n for n in names if n not in lvl.locks]
        if missing:
            raise NotFoundError(
                f"no {lvl.name} lock named {missing[0]!r}", level=lvl.name, name=missing[0]
            )

    def _level(self, level: str) -> _Level:
        lvl = self._levels.get(level)
        if lvl is None:
            raise ValidationError("level", level, ", ".join(LEVELS))
        return lvl

    def _mutable_level(self, level: str) -> _Level:
        if level == "cluster":
            raise ValidationError("level", level, ", ".join(LEVELS[1:]) + " (cluster is fixed)")
        return self._level(level)

    def _wanted(self, names: Names) -> set[str] | None:
        return None if isinstance(names, _AllNames) else self._plain_names(names)

    @staticmethod
    def _plain_names(names: Iterable[str] | str) -> set[str]:
        wanted = {names} if isinstance(names, str) else set(names)
        for name in wanted:
            if not isinstance(name, str) or not name or name == SET_LOCK_NAME:
                raise ValidationError("names", name, "non-empty strings other than [set]")
        return wanted


class _Waiter:
    """One acquire call's waiting state: its condition, deadline and cancel hook.

    As a context manager it subscribes to the cancel event (before the mutex is taken,
    since ``CancelEvent.set`` calls back into the manager under that mutex).
    """

    def __init__(
        self,
        manager: LockManager,
        owner: str,
        shared: bool,
        priority: int,
        deadline: float | None,
        timeout: float | None,
        cancel: threading.Event | None,
    ) -> None:
        self.manager = manager
        self.owner = owner
        self.shared = shared
        self.priority = priority
        self.deadline = deadline
        self.timeout = timeout
        self._cond: threading.Condition | None = None
        self.cancel: CancelEvent | None = None if cancel is None else wakeable(cancel)
        self._unsubscribe: Callable[[], None] | None = None

    def __enter__(self) -> _Waiter:
        if self.cancel is not None:
            self._unsubscribe = self.cancel.subscribe(self._wake)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    @property
    def cond(self) -> threading.Condition:
        """Created on first wait (under the mutex): most acquires never wait."""
        if self._cond is None:
            self._cond = threading.Condition(self.manager._mutex)
        return self._cond

    def _wake(self) -> None:
        with self.manager._mutex:
            if self._cond is not None:
                self._cond.notify_all()

    def grantable(self, lock: _Lock) -> bool:
        """Free for us right now: compatible, and nobody queued would be served first."""
        if not lock.compatible(self.shared):
            return False
        return not lock.queue or self.priority < lock.queue[0].priority

    def take(self, lvl: _Level, lock: _Lock) -> bool:
        """Queue for one lock and wait for it; False if the lock was removed meanwhile."""
        if not lock.queue and lock.compatible(self.shared):
            self.manager._grant(lock, self.owner, self.shared)
            return True
        req = _Request(self.owner, self.shared, self.priority, next(self.manager._seq), self.cond)
        bisect.insort(lock.queue, req, key=_Request.key)
        self.manager._dispatch(lock)
        try:
            self.wait(lambda: req.granted or req.removed, f"{lvl.name} lock {lock.name!r}")
        except BaseException:
            if req.granted:
                self.manager._release_lock(lvl, lock, self.owner)
            elif not req.removed:
                lock.queue.remove(req)
                self.manager._freed(lvl, lock)
            raise
        return req.granted

    def wait(self, done: Callable[[], bool], what: str) -> None:
        """Block on our condition until ``done()``; raise on deadline or cancel."""
        while not done():
            if self.cancel is not None and self.cancel.is_set():
                raise CanceledError(f"{self.owner}: canceled while waiting for {what}")
            remaining = None if self.deadline is None else self.deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise LockTimeoutError(
                    f"{self.owner}: no {what} within {self.timeout} s",
                    owner=self.owner,
                    waiting_for=what,
                    timeout=self.timeout,
                )
            self.cond.wait(remaining)


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner:
        raise ValidationError("owner", owner, "a non-empty job id string")


def _mode(shared: bool) -> Mode:
    return "shared" if shared else "exclusive"
