"""Herd job documents as Ganeti's RAPI job objects."""

from __future__ import annotations

import pytest

from herd.api.rapi import jobs
from herd.errors import ValidationError

JOB = {
    "id": 7,
    "status": "error",
    "priority": 0,
    "reason": [],
    "received_at": 100.25,
    "started_at": 101.0,
    "ended_at": 105.5,
    "ops": [
        {"op": "debug.delay", "params": {"duration": 1}, "status": "success", "result": 1,
         "error": None, "started_at": 101.0},
        {"op": "debug.delay", "params": {"fail": True}, "status": "error", "result": None,
         "error": {"type": "HerdError", "message": "boom"}, "started_at": 103.0},
    ],
    "log": [
        {"serial": 1, "time": 100.5, "type": "message", "message": "queued"},
        {"serial": 2, "time": 102.0, "type": "message", "message": "first"},
        {"serial": 3, "time": 104.0, "type": "message", "message": "second"},
    ],
}  # fmt: skip


def test_job_carries_ganetis_fields_and_timestamps() -> None:
    doc = jobs.job_shape(JOB, jobs.DETAIL_FIELDS)
    assert list(doc) == list(jobs.DETAIL_FIELDS)
    assert doc["ops"][0] == {"OP_ID": "debug.delay", "duration": 1}
    assert doc["opstatus"] == ["success", "error"]
    assert doc["received_ts"] == [100, 250000] and doc["start_ts"] == [101, 0]
    assert doc["opresult"] == [1, ["HerdError", ["boom"]]]


def test_log_lines_go_to_the_op_that_was_running() -> None:
    oplog = jobs.job_shape(JOB, ("oplog",))["oplog"]
    assert [[e[0] for e in op] for op in oplog] == [[1, 2], [3]]
    assert oplog[1][0] == [3, [104, 0], "message", "second"]


def test_wait_fields_must_be_job_fields() -> None:
    assert jobs.wait_fields(["status"]) == ["status"]
    for bad in (None, [], ["status", "bogus"], "status"):
        with pytest.raises(ValidationError):
            jobs.wait_fields(bad)
