"""What the fault campaign injected and whether the cluster came through it.

Each fault test calls :func:`record` once per fault, after its assertions (so a fault
counts as survived only once everything was checked); ``bench/faults_report.py`` sets
``HERD_FAULTS_RECORD`` and counts the lines.
"""

from __future__ import annotations

import json
import os
import threading

_lock = threading.Lock()


def record(fault: str, survived: bool, kind: str = "fault", **extra: object) -> None:
    """Append ``{"fault": ..., "survived": ..., "kind": ...}`` to ``$HERD_FAULTS_RECORD``.

    ``kind`` is ``fault`` for an injected fault, ``input`` for one fuzzed request
    (``survived``: answered cleanly; ``status`` its HTTP status).
    """
    path = os.environ.get("HERD_FAULTS_RECORD")
    if not path:
        return
    line = {"fault": fault, "survived": survived, "kind": kind, **extra}
    with _lock, open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
