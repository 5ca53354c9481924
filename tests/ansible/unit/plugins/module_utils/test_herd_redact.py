"""No task result carries a secret: HerdModule hides the declared secret keys in whatever
the master answered, on success and on failure, even from a master that did not redact
(issue 10, hole 3). The client is a stub that answers with the secrets in clear."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.herd.cluster.plugins.module_utils import herd_module
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdJobFailed
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import (
    REDACTED,
    SECRET_KEYS,
    HerdModule,
    redact,
)
from ansible_collections.herd.cluster.plugins.modules import cluster_info, instance_info

from herd.config.model import SECRET_KEYS as ENGINE_SECRET_KEYS

DOMAIN_SECRET = "d0" * 32
DRBD_SECRET = "drbd-secret-in-clear"
INSTANCE = {
    "name": "db1",
    "disks": [{"size_mib": 1024, "params": {"port": 11000, "secret": DRBD_SECRET}}],
}
CLUSTER = {"name": "alpha", "domain_secret": DOMAIN_SECRET, "tags": []}
CHANGE = {"changed": True, "changes": {"domain_secret": {"before": DOMAIN_SECRET, "after": "x"}}}


class LeakyClient:
    """A master that answers with secrets in clear (as one before the fix did)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def info(self) -> dict[str, Any]:
        return {"version": "1", "cluster": "alpha"}

    def cluster(self) -> dict[str, Any]:
        return CLUSTER

    def query(self, kind: str) -> Any:
        return [INSTANCE] if kind == "instances" else []

    def request(self, method: str, path: str, params: Any = None) -> Any:
        return {"items": [INSTANCE]}

    def submit(self, ops: list[dict[str, Any]], reason: list[list[Any]], priority: int = 0) -> int:
        return 7

    def wait(self, job_id: int, timeout: float, on_log: Any) -> dict[str, Any]:
        on_log({"serial": 1, "message": "changed domain_secret", "data": CHANGE})
        job = {"id": job_id, "status": "success", "error": None, "ops": [{"result": CHANGE}]}
        if self.fail:
            job["status"] = "error"
            job["error"] = {"type": "HerdError", "message": "no", "details": {"cluster": CLUSTER}}
            raise HerdJobFailed(job)
        return job


def run_body(
    capsys: pytest.CaptureFixture[str],
    body: Any,
    client: LeakyClient,
    spec: dict[str, Any] | None = None,
    **args: Any,
) -> str:
    with patch_module_args({"socket": "/nonexistent.sock", **args}):
        herd = HerdModule("test", spec or {})
        herd.client = client  # type: ignore[assignment]
        with pytest.raises(SystemExit):
            herd.run(body)
    return capsys.readouterr().out


def assert_clean(out: str) -> None:
    assert DOMAIN_SECRET not in out and DRBD_SECRET not in out
    assert REDACTED in out


def test_the_modules_hide_the_keys_the_engine_declares_secret() -> None:
    assert SECRET_KEYS == ENGINE_SECRET_KEYS


def test_instance_info_results_carry_no_drbd_secret(capsys: pytest.CaptureFixture[str]) -> None:
    spec = {
        "names": {"type": "list", "elements": "str"},
        "live": {"type": "bool"},
        "tags": {"type": "list", "elements": "str"},
        "node": {"type": "str"},
        "state": {"type": "str"},
    }
    out = run_body(capsys, instance_info.run, LeakyClient(), spec, live=True)
    assert_clean(out)
    (inst,) = json.loads(out)["instances"]
    assert inst["disks"][0]["params"] == {"port": 11000, "secret": REDACTED}


def test_cluster_info_results_carry_no_domain_secret(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_body(capsys, cluster_info.run, LeakyClient())
    assert_clean(out)


def test_job_results_and_logs_carry_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    def body(herd: HerdModule) -> dict[str, Any]:
        herd.apply([{"op": "cluster.modify", "tags": ["a"]}], "modify")
        return {"result": herd.result}

    out = run_body(capsys, body, LeakyClient())
    assert_clean(out)
    assert json.loads(out)["result"]["changes"]["domain_secret"] == {
        "before": REDACTED,
        "after": REDACTED,
    }


def test_a_failed_task_carries_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    def body(herd: HerdModule) -> dict[str, Any]:
        herd.apply([{"op": "cluster.modify", "tags": ["a"]}], "modify")
        return {}

    out = run_body(capsys, body, LeakyClient(fail=True))
    assert_clean(out)
    assert json.loads(out)["failed"] is True


def test_redact_keeps_everything_else_and_unset_secrets() -> None:
    doc = {"name": "a", "secret": None, "nested": [{"secret": "s", "port": 1}]}
    assert redact(doc) == {"name": "a", "secret": None, "nested": [{"secret": REDACTED, "port": 1}]}
    assert herd_module.redact("plain") == "plain"
