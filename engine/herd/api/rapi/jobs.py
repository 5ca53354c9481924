"""Herd's job documents in the shape of Ganeti's RAPI job objects.

Ganeti's status words are Herd's (queued, waiting, canceling, running, canceled,
success, error), so they pass through; timestamps become Ganeti's ``[seconds,
microseconds]`` pairs and the job log becomes per-op ``oplog`` entries of ``[serial,
timestamp, type, message]``.
"""

from __future__ import annotations

import bisect
from typing import Any

from herd.errors import ValidationError

#: What ``GET /2/jobs?bulk=1`` gives per job; ``GET /2/jobs/ID`` adds :data:`DETAIL_FIELDS`.
BULK_FIELDS = (
    "id", "ops", "status", "summary", "opstatus", "received_ts", "start_ts", "end_ts",
)  # fmt: skip
DETAIL_FIELDS = (*BULK_FIELDS, "oplog", "opresult")
#: Everything a wait may name in ``fields``.
WAIT_FIELDS = frozenset({*DETAIL_FIELDS, "priority", "reason"})


def timestamp(value: float | None) -> list[int] | None:
    """Ganeti's ``(seconds, microseconds)`` pair."""
    if value is None:
        return None
    seconds = int(value)
    return [seconds, int((value - seconds) * 1_000_000)]


def log_entry(line: dict[str, Any]) -> list[Any]:
    """One Herd log line as Ganeti's ``(serial, timestamp, type, message)``."""
    return [line["serial"], timestamp(line["time"]), line["type"], line["message"]]


def _oplogs(job: dict[str, Any]) -> list[list[list[Any]]]:
    """Herd logs per job, Ganeti per op: a line belongs to the last op started by its
    time (lines from before the first op started, to the first op)."""
    starts = [op.get("started_at") or float("inf") for op in job["ops"]]
    logs: list[list[list[Any]]] = [[] for _ in job["ops"]]
    for line in job.get("log", []):
        index = max(bisect.bisect_right(starts, line["time"]) - 1, 0)
        logs[min(index, len(logs) - 1)].append(log_entry(line))
    return logs


def _opresult(op: dict[str, Any]) -> Any:
    """An op's result, or its error as Ganeti encodes one: ``[class, [message]]``."""
    if op.get("error"):
        return [op["error"].get("type", "HerdError"), [op["error"].get("message", "")]]
    return op.get("result")


def job_shape(job: dict[str, Any], fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``job`` (``JobQueue.view``, with its log) as a Ganeti job object of ``fields``."""
    values: dict[str, Any] = {
        "id": job["id"],
        "ops": [{"OP_ID": op["op"], **op["params"]} for op in job["ops"]],
        "status": job["status"],
        "summary": [op["op"] for op in job["ops"]],
        "opstatus": [op["status"] for op in job["ops"]],
        "received_ts": timestamp(job["received_at"]),
        "start_ts": timestamp(job["started_at"]),
        "end_ts": timestamp(job["ended_at"]),
        "priority": job["priority"],
        "reason": job["reason"],
    }
    if "oplog" in fields:
        values["oplog"] = _oplogs(job)
    if "opresult" in fields:
        values["opresult"] = [_opresult(op) for op in job["ops"]]
    return {f: values[f] for f in fields}


def wait_fields(raw: Any) -> list[str]:
    """The ``fields`` of a job wait request, checked against what a job object has."""
    if not isinstance(raw, list) or not raw or not all(isinstance(f, str) for f in raw):
        raise ValidationError("fields", raw, "a non-empty list of job field names")
    unknown = sorted(set(raw) - WAIT_FIELDS)
    if unknown:
        raise ValidationError("fields", unknown, "job fields " + ", ".join(sorted(WAIT_FIELDS)))
    return raw
