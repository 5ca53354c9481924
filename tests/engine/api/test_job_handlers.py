"""The job handlers called directly with a context and a request: what they hand the
queue, and the bad input they refuse naming the field. The same over a real socket and
HTTPS is in test_https.py and test_https_exposure.py."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import job_handlers
from herd.api.context import ApiContext, Request
from herd.api.server import LOCAL, Caller
from herd.auth import Principal
from herd.errors import ForbiddenError, ValidationError
from herd.ops import exposure

REMOTE = Caller("https", Principal("tokens", "ci", read_only=False), "192.0.2.9")


class FakeQueue:
    """Records what it was handed instead of running anything."""

    def __init__(self) -> None:
        self.submitted: list[Any] = []
        self.waits: list[tuple[Any, ...]] = []
        self.cancelled: list[int] = []

    def submit(self, spec: Any) -> int:
        self.submitted.append(spec)
        return len(self.submitted)

    def submit_many(self, specs: list[Any]) -> list[int]:
        return [self.submit(s) for s in specs]

    def wait(self, job_id: int, log_since: int, timeout: float, known: str | None) -> Any:
        self.waits.append((job_id, log_since, timeout, known))
        return {"id": job_id}

    def cancel(self, job_id: int) -> Any:
        self.cancelled.append(job_id)
        return {"id": job_id}


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def ctx(queue: FakeQueue) -> ApiContext:
    return ApiContext(store=None, queue=queue, locks=None, auth=None)  # type: ignore[arg-type]


def request(
    query: dict[str, str] | None = None, body: Any = None, caller: Caller = LOCAL
) -> Request:
    return Request(query or {}, body, caller)


def test_wait_hands_the_queue_parsed_arguments(ctx: ApiContext, queue: FakeQueue) -> None:
    query = {"log_since": "4", "timeout": "2.5", "status": "running"}
    assert job_handlers.wait_job(ctx, request(query), "9") == {"id": 9}
    assert job_handlers.wait_job(ctx, request(), "9") == {"id": 9}
    assert queue.waits == [(9, 4, 2.5, "running"), (9, 0, 10.0, None)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"timeout": str(job_handlers.MAX_WAIT + 1)}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"log_since": "-1"}, "log_since"),
    ],
)
def test_wait_refuses_bad_input_naming_the_field(
    ctx: ApiContext, queue: FakeQueue, query: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        job_handlers.wait_job(ctx, request(query), "9")
    assert err.value.details["field"] == field
    assert queue.waits == []


def test_a_job_id_past_sqlite_integers_is_refused(ctx: ApiContext, queue: FakeQueue) -> None:
    with pytest.raises(ValidationError) as err:
        job_handlers.cancel_job(ctx, request(), str(2**63))
    assert err.value.details["field"] == "job_id"
    job_handlers.cancel_job(ctx, request(), str(2**63 - 1))
    assert queue.cancelled == [2**63 - 1]


def test_a_remote_job_carries_its_sender_in_the_reason_trail(
    ctx: ApiContext, queue: FakeQueue
) -> None:
    job = {"ops": [{"op": "instance.start", "name": "i1"}], "reason": [["awx", "run 12"]]}
    assert job_handlers.submit(ctx, request(body={"jobs": [job, job]}, caller=REMOTE)) == {
        "job_ids": [1, 2]
    }
    for spec in queue.submitted:
        assert spec["reason"][0] == ["awx", "run 12"]
        assert spec["reason"][1][:2] == [exposure.REMOTE_SOURCE, "tokens ci from 192.0.2.9"]
    job_handlers.submit(ctx, request(body=job))
    assert queue.submitted[-1] == job


def test_a_remote_local_only_op_is_refused_before_it_is_queued(
    ctx: ApiContext, queue: FakeQueue
) -> None:
    job = {"ops": [{"op": "config.restore", "data": {}}]}
    with pytest.raises(ForbiddenError):
        job_handlers.submit(ctx, request(body=job, caller=REMOTE))
    assert queue.submitted == []
