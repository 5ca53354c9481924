"""HerdModule's job policy: check mode submits nothing, wait=false does not wait, and API
errors end the task with fail_json carrying the job ids. The client is a recording stub:
this is the module-side policy only (the client's HTTP is tested in test_herd_client)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdJobFailed
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule

OPS = [{"op": "node.modify", "name": "n1", "drained": True}]


class RecordingClient:
    def __init__(self, job_status: str = "success", op_results: list[Any] | None = None) -> None:
        self.submitted: list[tuple[list[dict[str, Any]], list[list[Any]]]] = []
        self.waited: list[int] = []
        self.job_status = job_status
        self.op_results = op_results or []

    def submit(self, ops: list[dict[str, Any]], reason: list[list[Any]]) -> int:
        self.submitted.append((ops, reason))
        return 41 + len(self.submitted)

    def wait(self, job_id: int, timeout: float, on_log: Any) -> dict[str, Any]:
        self.waited.append(job_id)
        on_log({"serial": 1, "message": "draining"})
        job = {"id": job_id, "status": self.job_status, "error": None, "ops": self.op_results}
        if self.job_status != "success":
            job["error"] = {"type": "NodeError", "message": "n1 unreachable", "details": {}}
            raise HerdJobFailed(job)
        return job


def run_module(
    capsys: pytest.CaptureFixture[str], client: RecordingClient, **args: Any
) -> dict[str, Any]:
    def body(herd: HerdModule) -> dict[str, Any]:
        herd.apply(OPS, "drain n1")
        return {"node": {"name": "n1"}}

    with patch_module_args({"socket": "/nonexistent.sock", **args}):
        herd = HerdModule("node", {})
        herd.client = client  # type: ignore[assignment]
        with pytest.raises(SystemExit):
            herd.run(body)
    return json.loads(capsys.readouterr().out)


def test_submits_one_job_with_reason_and_waits(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient()
    result = run_module(capsys, client)
    ops, reason = client.submitted[0]
    assert ops == OPS
    assert reason[0][:2] == ["ansible:herd.cluster.node", "drain n1"]
    assert client.waited == [42]
    assert (result["changed"], result["job_ids"]) == (True, [42])
    assert result["job_log"] == [{"serial": 1, "message": "draining"}]


def test_check_mode_submits_nothing_but_reports_change(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient()
    result = run_module(capsys, client, _ansible_check_mode=True)
    assert client.submitted == []
    assert (result["changed"], result["job_ids"]) == (True, [])


def test_no_wait_returns_the_job_id(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient()
    result = run_module(capsys, client, wait=False)
    assert client.waited == []
    assert result["job_ids"] == [42]


def test_failed_job_fails_the_task_with_job_details(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_module(capsys, RecordingClient(job_status="error"))
    assert result["failed"] is True
    assert result["msg"] == "NodeError: job 42 error: n1 unreachable"
    assert result["job_ids"] == [42]
    assert result["job"]["status"] == "error"
    assert result["changed"] is False


def test_failed_job_is_changed_when_an_earlier_op_changed_something(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ops = [
        {"op": "node.add", "status": "success", "result": {"changed": True}},
        {"op": "node.modify", "status": "error", "result": None},
    ]
    result = run_module(capsys, RecordingClient(job_status="error", op_results=ops))
    assert (result["failed"], result["changed"]) == (True, True)


def test_client_errors_fail_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with patch_module_args({"api_url": "http://master"}), pytest.raises(SystemExit):
        HerdModule("node", {})
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert "https://" in result["msg"]
    assert result["error"]["type"] == "ValidationError"
