"""Cancellation events that can wake a thread blocked on some other condition.

A job waiting for locks blocks on a condition of the lock manager, while the job queue
cancels it by setting a ``threading.Event``. A plain Event only wakes threads waiting on
the Event itself, so without help the waiter would notice the cancel only at its next
timeout, or by polling. ``CancelEvent`` runs callbacks when it is set, which lets the lock
manager notify exactly the waiter concerned, at once and without a watcher thread.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import cast

from herd.errors import ValidationError

_lock = threading.Lock()
_tokens = itertools.count()


class CancelEvent(threading.Event):
    """A ``threading.Event`` whose ``set()`` also calls the subscribed wake-up callbacks.

    The callback table lives in the instance dict and is created lazily, because plain
    Events passed by callers are upgraded in place (see ``wakeable``) and therefore never
    ran this class's ``__init__``.
    """

    def set(self) -> None:
        super().set()
        with _lock:
            callbacks = list(self._callbacks().values())
        for callback in callbacks:
            callback()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the event is set; returns the function that unsubscribes."""
        token = next(_tokens)
        with _lock:
            self._callbacks()[token] = callback

        def unsubscribe() -> None:
            with _lock:
                self._callbacks().pop(token, None)

        return unsubscribe

    def _callbacks(self) -> dict[int, Callable[[], None]]:
        table: dict[int, Callable[[], None]] | None = self.__dict__.get("_herd_callbacks")
        if table is None:
            table = self.__dict__["_herd_callbacks"] = {}
        return table


def wakeable(event: threading.Event) -> CancelEvent:
    """Return ``event`` able to run wake-up callbacks, upgrading a plain Event in place.

    The layers above hand us the ``threading.Event`` they already use to cancel a job. A
    plain Event has the same instance layout as ``CancelEvent``, so switching its class
    keeps every reference, flag and waiter intact and only adds the callbacks on ``set()``;
    this keeps the public contract (any Event) while waking waiters promptly. Subclasses
    we know nothing about could override ``set()``, so those are refused.
    """
    if isinstance(event, CancelEvent):
        return event
    if type(event) is not threading.Event:
        raise ValidationError(
            "cancel", repr(event), "threading.Event or herd.locking.CancelEvent instances"
        )
    with _lock:
        event.__class__ = CancelEvent
    return cast(CancelEvent, event)
