"""node_evacuate's pure parts: which instances a mode moves, which jobs are in flight; and
against a real master in a thread, that it finds and waits for those jobs through the
master's filter."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdClient
from ansible_collections.herd.cluster.plugins.modules.node_evacuate import (
    instance_ops,
    jobs_on,
    on_node,
    wait_in_flight,
)

from tests.engine.harness import PATIENCE, ThreadMaster

INSTANCES: list[dict[str, Any]] = [
    {"name": "web1", "primary_node_name": "a", "secondary_node_names": []},
    {"name": "db1", "primary_node_name": "b", "secondary_node_names": ["a"]},
    {"name": "db2", "primary_node_name": "a", "secondary_node_names": ["c"]},
    {"name": "far", "primary_node_name": "b", "secondary_node_names": ["c"]},
]


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("all", ["db1", "db2", "web1"]),
        ("primary-only", ["db2", "web1"]),
        ("secondary-only", ["db1"]),
    ],
)
def test_on_node_follows_the_mode(mode: str, names: list[str]) -> None:
    assert on_node(INSTANCES, "a", mode) == names
    assert on_node(INSTANCES, "d", mode) == []


def test_only_instance_ops_are_asked_about() -> None:
    listing = [
        {"id": 3, "summary": "instance.stop,instance.migrate"},
        {"id": 2, "summary": "node.modify"},
        {"id": 1, "summary": "instance.migrate"},
    ]
    assert instance_ops(listing) == ["instance.migrate", "instance.stop"]
    assert instance_ops([{"id": 4, "summary": ""}]) == []


class FilteringMaster:
    """Answers the job listing and the op-and-name filter from ``jobs``; reading a job
    document is a test failure, since the module must not need one."""

    def __init__(self, jobs: dict[int, list[tuple[str, str]]]) -> None:
        self.jobs = jobs
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        assert (method, path, params["status"]) == ("GET", "/v1/jobs", "unfinished")
        self.requests.append(params)
        if "op" not in params:
            summaries = {i: ",".join(op for op, _ in ops) for i, ops in self.jobs.items()}
            return {"items": [{"id": i, "summary": s} for i, s in sorted(summaries.items())]}
        wanted = (params["op"], params["name"])
        return {"items": [{"id": i} for i, ops in sorted(self.jobs.items()) if wanted in ops]}

    def job(self, job_id: int) -> dict[str, Any]:
        raise AssertionError(f"job {job_id} was fetched")


def test_in_flight_jobs_come_from_the_masters_filter_only() -> None:
    master = FilteringMaster(
        {7: [("instance.migrate", "web1")], 8: [("node.modify", "web1")], 9: []}
    )
    assert jobs_on(master, {"web1", "db1"}) == [7]  # type: ignore[arg-type]
    assert master.requests == [
        {"status": "unfinished"},
        {"status": "unfinished", "op": "instance.migrate", "name": "db1"},
        {"status": "unfinished", "op": "instance.migrate", "name": "web1"},
    ]
    assert jobs_on(master, {"db1"}) == []  # type: ignore[arg-type]


def test_nothing_is_filtered_when_no_instance_op_is_in_flight() -> None:
    master = FilteringMaster({8: [("node.modify", "web1")]})
    assert jobs_on(master, {"web1"}) == []  # type: ignore[arg-type]
    assert master.requests == [{"status": "unfinished"}]


def test_waits_for_the_real_masters_unfinished_jobs_on_the_instances(
    master: ThreadMaster,
) -> None:
    def after_blocker(back: int) -> list[list[Any]]:
        return [[-back, ["success", "error", "canceled"]]]

    blocker, move, other, unrelated = master.api.submit_many(
        [
            {"ops": [{"op": "debug.delay", "duration": PATIENCE * 4}]},
            {"ops": [{"op": "instance.migrate", "name": "web1"}], "depends": after_blocker(1)},
            {"ops": [{"op": "instance.start", "name": "far"}], "depends": after_blocker(2)},
            {"ops": [{"op": "node.modify", "name": "web1", "drained": True}],
             "depends": after_blocker(3)},
        ]
    )  # fmt: skip
    master.wait_status(blocker, "running")
    client = EndingClient(master, socket_path=str(master.socket))
    assert jobs_on(client, {"web1", "db1"}) == [move]
    herd = SimpleNamespace(client=client)
    deadline = time.monotonic() + PATIENCE
    assert wait_in_flight(herd, {"web1"}, deadline) == [move]  # type: ignore[arg-type]
    assert client.job(move)["status"] == "canceled"
    # Not waited for (which would have cancelled them): still behind the blocker.
    assert {client.job(i)["status"] for i in (other, unrelated)} <= {"queued", "waiting"}


class EndingClient(HerdClient):
    """A real client that cancels each job it starts waiting for, so the wait ends
    without depending on how long the master takes to run anything."""

    def __init__(self, master: ThreadMaster, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.master = master

    def wait(self, job_id: int, timeout: float, on_log: Any = None) -> dict[str, Any]:
        self.master.api.cancel(job_id)
        return super().wait(job_id, timeout, on_log)
