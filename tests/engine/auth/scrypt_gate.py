"""A stand-in for the password check that counts scrypt runs and holds them at a gate.

Login floods are tested by what the master does, not by how long it takes: the gate keeps
every check that started inside it until the test opens it, so a test can see how many
checks run at once and in all while the other requests are answered or refused.
"""

from __future__ import annotations

import threading

import pytest

import herd.auth.store
from tests.engine.harness import PATIENCE


class ScryptGate:
    """Counts calls of ``check_password`` (in all, at once, at most at once) and holds
    each until :meth:`open`."""

    def __init__(self) -> None:
        self._real = herd.auth.store.check_password
        self._opened = threading.Event()
        self._lock = threading.Lock()
        self.calls = 0
        self.inside = 0
        self.peak = 0

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self.calls += 1
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        try:
            # Far beyond any poll of a test, so a stuck check shows as that test's failure.
            self._opened.wait(PATIENCE * 8)
            return self._real(password, stored)
        finally:
            with self._lock:
                self.inside -= 1

    def open(self) -> None:
        self._opened.set()


def install(monkeypatch: pytest.MonkeyPatch) -> ScryptGate:
    """Put a closed gate in front of every password check of every AuthStore."""
    gate = ScryptGate()
    monkeypatch.setattr(herd.auth.store, "check_password", gate)
    return gate
