"""HerdModule's job policy: check mode submits nothing, wait=false does not wait, and API
errors end the task with fail_json carrying the job ids. The client is a recording stub:
this is the module-side policy only (the client's HTTP is tested in test_herd_client)."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.herd.cluster.plugins import modules
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    JOB_ARGSPEC,
    HerdApiError,
    HerdClient,
    HerdJobFailed,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import (
    DRY_RUN_OPS,
    HerdModule,
    in_option_terms,
    pending_job,
    with_names,
)

from tests.ansible.unit.plugins.modules.test_op_contract import SpecCaptured
from tests.engine.harness import PATIENCE, ThreadMaster

OPS = [{"op": "node.modify", "name": "n1", "drained": True}]


class RecordingClient:
    def __init__(self, job_status: str = "success", op_results: list[Any] | None = None) -> None:
        self.submitted: list[tuple[list[dict[str, Any]], list[list[Any]]]] = []
        self.priorities: list[int] = []
        self.waited: list[int] = []
        self.job_status = job_status
        self.op_results = op_results or []

    def submit(self, ops: list[dict[str, Any]], reason: list[list[Any]], priority: int = 0) -> int:
        self.submitted.append((ops, reason))
        self.priorities.append(priority)
        return 41 + len(self.submitted)

    def wait(self, job_id: int, timeout: float, on_log: Any = None) -> dict[str, Any]:
        self.waited.append(job_id)
        if on_log is not None:
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


class ReconcileClient(RecordingClient):
    """A RecordingClient that also serves the object a module reconciles and the job list."""

    def __init__(self, objects: list[dict[str, Any] | None]) -> None:
        super().__init__()
        self.objects = objects
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def query_node(self) -> dict[str, Any] | None:
        return self.objects.pop(0)

    def request(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((method, path, params))
        return {"items": [{"id": 7, "status": "queued"}]}


def plan_drain(current: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if current and current["drained"]:
        return [], {}
    return OPS, {"before": {"drained": False}, "after": {"drained": True}}


def reconcile_module(
    capsys: pytest.CaptureFixture[str], client: ReconcileClient, **args: Any
) -> dict[str, Any]:
    with patch_module_args(
        {"socket": "/nonexistent.sock", "name": "n1", "state": "present", **args}
    ):
        herd = HerdModule("node", {"name": {"type": "str"}, "state": {"type": "str"}})
        herd.client = client  # type: ignore[assignment]
        with pytest.raises(SystemExit):
            herd.run(lambda h: h.reconcile(client.query_node, plan_drain))
    return json.loads(capsys.readouterr().out)


def test_reconcile_applies_the_plan_and_reports_the_object_read_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ReconcileClient([{"drained": False}, {"drained": True}])
    result = reconcile_module(capsys, client)
    assert client.submitted[0][0] == OPS
    assert client.submitted[0][1][0][:2] == ["ansible:herd.cluster.node", "node n1 state=present"]
    assert (result["changed"], result["node"]) == (True, {"drained": True})
    assert result["diff"] == {"before": {"drained": False}, "after": {"drained": True}}


def test_reconcile_in_check_mode_reports_the_object_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ReconcileClient([{"drained": False}])
    result = reconcile_module(capsys, client, _ansible_check_mode=True)
    assert (client.submitted, client.objects) == ([], [])
    assert (result["changed"], result["node"]) == (True, {"drained": False})
    assert "diff" in result


def test_reconcile_without_changes_has_no_diff(capsys: pytest.CaptureFixture[str]) -> None:
    client = ReconcileClient([{"drained": True}])
    result = reconcile_module(capsys, client)
    assert (client.submitted, result["changed"], result["node"]) == ([], False, {"drained": True})
    assert "diff" not in result


def test_a_dry_run_is_submitted_and_waited_for_in_check_mode_without_a_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = RecordingClient(op_results=[{"result": {"changed": True}}])

    def body(herd: HerdModule) -> dict[str, Any]:
        return {"done": herd.apply(OPS, "evacuate n1", dry_run=True), "seen": herd.result}

    with patch_module_args({"socket": "/nonexistent.sock", "_ansible_check_mode": True}):
        herd = HerdModule("node_evacuate", {})
        herd.client = client  # type: ignore[assignment]
        with pytest.raises(SystemExit):
            herd.run(body)
    result = json.loads(capsys.readouterr().out)
    assert (client.waited, result["job_ids"], result["changed"]) == ([42], [42], False)
    assert (result["done"], result["seen"]) == (True, {"changed": True})


def test_an_unfinished_job_is_found_by_the_masters_filter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ReconcileClient([])
    with patch_module_args({"socket": "/nonexistent.sock"}):
        herd = HerdModule("instance", {})
    herd.client = client  # type: ignore[assignment]
    assert pending_job(herd.client, "instance.add", "web1") == 7
    assert client.requests == [
        ("GET", "/v1/jobs", {"status": "unfinished", "op": "instance.add", "name": "web1"})
    ]


def test_the_real_master_finds_only_the_matching_unfinished_job(master: ThreadMaster) -> None:
    """The filter's contract as the master serves it: op and object name, unfinished only."""
    blocker, *waiting = master.api.submit_many(
        [
            {"ops": [{"op": "debug.delay", "duration": PATIENCE * 4}]},
            {
                "ops": [{"op": "group.add", "name": "rack1"}],
                "depends": [[-1, ["success", "error", "canceled"]]],
            },
            {
                "ops": [{"op": "group.add", "name": "rack2"}],
                "depends": [[-2, ["success", "error", "canceled"]]],
            },
        ]
    )
    client = HerdClient(socket_path=str(master.socket))
    master.wait_status(blocker, "running")
    assert pending_job(client, "group.add", "rack2") == waiting[1]
    assert pending_job(client, "group.remove", "rack2") is None
    assert pending_job(client, "group.add", "rack3") is None


ADD = [{"op": "instance.add", "name": "web1", "disk_template": "file", "disks": ["8M"]}]


def rehearse_module(capsys: pytest.CaptureFixture[str], client: ReconcileClient) -> dict[str, Any]:
    with patch_module_args(
        {"socket": "/nonexistent.sock", "name": "web1", "state": "present",
         "_ansible_check_mode": True}
    ):  # fmt: skip
        herd = HerdModule("instance", {"name": {"type": "str"}, "state": {"type": "str"}})
        herd.client = client  # type: ignore[assignment]
        with pytest.raises(SystemExit):
            herd.run(lambda h: h.reconcile(client.query_node, lambda _: (ADD, {"after": {}})))
    return json.loads(capsys.readouterr().out)


def test_check_mode_has_the_master_dry_run_a_create_and_reports_the_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ReconcileClient([None])
    result = rehearse_module(capsys, client)
    assert [ops for ops, _ in client.submitted] == [[{**ADD[0], "dry_run": True}]]
    assert result["changed"] is True and not result.get("failed")


def test_check_mode_refuses_a_create_the_master_would_refuse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ReconcileClient([None])
    client.job_status = "error"
    result = rehearse_module(capsys, client)
    assert result["failed"] is True and "n1 unreachable" in result["msg"]


def test_the_rehearsed_ops_are_the_engines_dry_runnable_ones() -> None:
    from herd.ops.base import registry

    engine = {
        op_id for op_id, cls in registry().items() if any(p.name == "dry_run" for p in cls.PARAMS)
    }
    assert engine >= DRY_RUN_OPS
    # The rest are ops no module plans through reconcile (their modules dry-run themselves).
    assert engine - DRY_RUN_OPS == {"instance.export", "node.evacuate"}


def test_priority_and_reason_reach_the_job_with_the_awx_job_that_ran_the_task(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_ID", "917")
    monkeypatch.setenv("AWX_HOST", "https://awx.example.com")
    client = RecordingClient()
    run_module(capsys, client, priority=-10, reason="ticket OPS-1234")
    ((_, trail),) = client.submitted
    assert client.priorities == [-10]
    assert [entry[:2] for entry in trail] == [
        ["ansible:herd.cluster.node", "drain n1"],
        ["awx:job", "AWX job 917"],
        ["user", "ticket OPS-1234"],
    ]


def test_outside_awx_the_trail_names_only_the_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOB_ID", raising=False)
    client = RecordingClient()
    run_module(capsys, client)
    ((_, trail),) = client.submitted
    assert [entry[0] for entry in trail] == ["ansible:herd.cluster.node"]
    assert client.priorities == [0]


RENAMES = {"group.rename": {"name": "rename_from", "new_name": "name"}}
RENAME = [
    {"op": "group.modify", "name": "rack1", "tags": []},
    {"op": "group.rename", "name": "rack0", "new_name": "rack1"},
]


def test_a_refused_submission_names_the_option_of_the_op_it_places() -> None:
    refused = HerdApiError(
        "ValidationError",
        "op 'group.rename': invalid value 'x y' for field 'ops[1].new_name': allowed a name",
        {"field": "ops[1].new_name", "value": "x y", "allowed": "a name"},
    )
    in_option_terms(refused, RENAME, RENAMES)
    assert refused.details["field"] == "name"
    assert refused.message == (
        "op 'group.rename': invalid value 'x y' for field 'name': allowed a name"
    )


def test_a_failed_job_names_the_option_of_its_failing_op() -> None:
    job = {
        "id": 7,
        "status": "error",
        "ops": [
            {"op": "group.modify", "params": {"name": "rack1"}, "status": "success"},
            {"op": "group.rename", "params": {"name": "rack0"}, "status": "error"},
        ],
        "error": {
            "type": "NotFoundError",
            "message": "no group 'name'",
            "details": {"field": "name"},
        },
    }
    failed = HerdJobFailed(job)
    in_option_terms(failed, [], RENAMES)
    assert (failed.details["field"], failed.message) == (
        "rename_from",
        "job 7 error: no group 'rename_from'",
    )


def test_fields_without_a_rename_or_an_op_are_left_as_the_master_said() -> None:
    same = HerdApiError("ValidationError", "for field 'ops[0].tags'", {"field": "ops[0].tags"})
    in_option_terms(same, RENAME, RENAMES)
    assert (same.details["field"], same.message) == ("tags", "for field 'tags'")
    other = HerdApiError("ValidationError", "bad 'status'", {"field": "status"})
    in_option_terms(other, [], RENAMES)
    assert (other.details["field"], other.message) == ("status", "bad 'status'")


def test_results_name_nodes_and_groups_where_the_master_holds_uuids() -> None:
    master_answer = {
        "instance": {
            "primary_node": "u1",
            "primary_node_name": "n1",
            "secondary_nodes": ["u2"],
            "secondary_node_names": ["n2"],
            "disks": [{"nodes": ["u1", "u2"]}],
        },
        "nodes": [{"name": "n1", "group": "g1", "group_name": "default"}],
        "job": {"ops": [{"params": {"group": "default"}}]},
    }
    named = with_names(master_answer)
    inst = named["instance"]
    assert (inst["primary_node"], inst["primary_node_uuid"]) == ("n1", "u1")
    assert (inst["secondary_nodes"], inst["secondary_node_uuids"]) == (["n2"], ["u2"])
    assert inst["disks"] == [{"nodes": ["n1", "n2"], "node_uuids": ["u1", "u2"]}]
    assert named["nodes"][0]["group"] == "default" and named["nodes"][0]["group_uuid"] == "g1"
    assert named["job"] == master_answer["job"]


def full_spec(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A module's options as AnsibleModule gets them: its own plus the job options."""
    module = importlib.import_module(f"ansible_collections.herd.cluster.plugins.modules.{name}")

    def capture(_: str, spec: dict[str, Any], submits_jobs: bool = True, **kw: Any) -> None:
        raise SpecCaptured({**(JOB_ARGSPEC if submits_jobs else {}), **spec})

    monkeypatch.setattr(module, "HerdModule", capture)
    with pytest.raises(SpecCaptured) as caught:
        module.main()
    return caught.value.spec


def test_every_module_that_waits_names_the_wait_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting = {}
    for found in pkgutil.iter_modules(modules.__path__):
        spec = full_spec(found.name, monkeypatch)
        if "wait" in spec:
            waiting[found.name] = spec
    assert {"instance", "job_info", "node_evacuate"} <= set(waiting)
    for name, spec in waiting.items():
        assert "timeout" not in spec, name
        assert spec["wait_timeout"]["aliases"] == ["timeout"], name
