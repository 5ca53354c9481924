"""Crash points: a test-only way to make the master die at a named place in an op.

The fault campaign (tests/faults/) proves that a master killed between any two steps of
an op loses nothing: it runs an op once with a trace, learning every point it passes,
then once per point with the master set to die there (``os._exit``, no cleanup, no
flush: what a power cut or ``kill -9`` leaves), restarts it and checks what is left.

Points are named by what has just become durable: ``undo:KIND`` once an undo step is in
the journal and the op is about to do what it undoes, ``op:ID:ran`` once an op's body
returned and ``op:ID:stored`` once its success is stored. Each name carries its
occurrence in this process (``undo:disk.remove#2``), so the same trace replays.

A production master never arms any of this: the settings are read at start-up only, and
refused unless ``HERD_ENABLE_CRASH_POINTS=1`` is in the environment too, so a stray
``HERD_CRASH_AT`` cannot take a real cluster's master down.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from herd.errors import HerdError

ENABLE_ENV = "HERD_ENABLE_CRASH_POINTS"
CRASH_AT_ENV = "HERD_CRASH_AT"
TRACE_ENV = "HERD_CRASH_TRACE"
#: The exit status of a master that died at its crash point (tests tell it from a bug).
CRASH_EXIT = 86

_lock = threading.Lock()
_seen: Counter[str] = Counter()
_crash_at: str | None = None
_trace: Path | None = None


def configure(environ: Mapping[str, str]) -> None:
    """Arm the crash point and trace named in ``environ``; called once at master start."""
    global _crash_at, _trace
    crash_at, trace = environ.get(CRASH_AT_ENV) or None, environ.get(TRACE_ENV) or None
    if (crash_at or trace) and environ.get(ENABLE_ENV) != "1":
        raise HerdError(
            f"{CRASH_AT_ENV}/{TRACE_ENV} are test-only settings: refused unless "
            f"{ENABLE_ENV}=1 is set when the master starts",
            setting=CRASH_AT_ENV if crash_at else TRACE_ENV,
        )
    with _lock:
        _seen.clear()
        _crash_at = crash_at
        _trace = Path(trace) if trace else None


def point(name: str) -> None:
    """Pass crash point ``name``: note it in the trace, and die here if it is the armed one."""
    if _crash_at is None and _trace is None:
        return
    with _lock:
        _seen[name] += 1
        here = f"{name}#{_seen[name]}"
        if _trace is not None:
            with _trace.open("a") as out:
                out.write(here + "\n")
        if here == _crash_at:
            os._exit(CRASH_EXIT)
