"""CancelEvent: callbacks on set(), and in-place upgrade of plain Events."""

from __future__ import annotations

import threading

import pytest

from herd.errors import ValidationError
from herd.locking.cancel import CancelEvent, wakeable


def test_set_runs_subscribed_callbacks_until_unsubscribed() -> None:
    event = CancelEvent()
    calls: list[str] = []
    stop_a = event.subscribe(lambda: calls.append("a"))
    event.subscribe(lambda: calls.append("b"))
    stop_a()
    event.set()
    assert calls == ["b"]
    assert event.is_set()


def test_plain_event_is_upgraded_in_place_and_keeps_its_state() -> None:
    event = threading.Event()
    waiter_done = threading.Event()

    def waiter() -> None:
        event.wait()
        waiter_done.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    upgraded = wakeable(event)
    assert upgraded is event
    calls: list[int] = []
    upgraded.subscribe(lambda: calls.append(1))
    event.set()
    assert waiter_done.wait(10)
    assert calls == [1]


def test_unknown_subclass_is_refused() -> None:
    class Custom(threading.Event):
        def set(self) -> None:
            super().set()

    with pytest.raises(ValidationError):
        wakeable(Custom())
