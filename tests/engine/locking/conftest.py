"""Helpers for driving the lock manager from real threads.

Tests need to know that a thread is *queued* before they release what it waits for, or
they would test nothing; ``info()`` shows the queue, so ``wait_pending`` watches it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from herd.locking import LockManager

#: Generous bound for anything that should happen "at once"; only hit when a test fails.
PATIENCE = 10.0


class Call(threading.Thread):
    """Run one call in a thread and keep its result or exception for the test to check."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def outcome(self) -> Any:
        self.join(PATIENCE)
        assert not self.is_alive(), "call did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.001)


def pending(lm: LockManager, level: str, name: str) -> list[str]:
    for row in lm.info():
        if row["level"] == level and row["name"] == name:
            return [p["owner"] for p in row["pending"]]  # type: ignore[attr-defined]
    return []


def wait_pending(lm: LockManager, level: str, name: str, owner: str) -> None:
    wait_until(lambda: owner in pending(lm, level, name))


@pytest.fixture
def lm() -> Iterator[LockManager]:
    manager = LockManager()
    manager.register("nodegroup", ["default"])
    manager.register("instance", ["i1", "i2", "i3"])
    manager.register("node", ["n1", "n2", "n3", "n4"])
    manager.register("node-res", ["n1", "n2", "n3", "n4"])
    yield manager
