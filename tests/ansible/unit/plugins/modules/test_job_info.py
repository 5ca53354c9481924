"""job_info against a real master in a thread: read a job, wait for one, list the
unfinished ones on an object; and it changes nothing, also in check mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.herd.cluster.plugins.modules import job_info

from tests.engine.harness import PATIENCE, ThreadMaster


def run(capsys: pytest.CaptureFixture[str], master: ThreadMaster, **args: Any) -> dict[str, Any]:
    with patch_module_args({"socket": str(master.socket), **args}), pytest.raises(SystemExit):
        job_info.main()
    return json.loads(capsys.readouterr().out)


def test_waits_for_a_job_and_returns_it_however_it_ended(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    done = master.api.submit([{"op": "debug.delay", "duration": 0.2, "log_messages": 2}])
    failed = master.api.submit([{"op": "group.remove", "name": "nope"}])
    result = run(capsys, master, id=done, wait=True, timeout=PATIENCE)
    assert (result["changed"], result["job"]["status"]) == (False, "success")
    assert len(result["job"]["log"]) >= 2
    ended = run(capsys, master, id=failed, wait=True, timeout=PATIENCE, _ansible_check_mode=True)
    assert ended["job"]["status"] == "error" and not ended.get("failed")


def test_lists_only_the_unfinished_jobs_on_the_named_object(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    blocker, waiting = master.api.submit_many(
        [
            {"ops": [{"op": "debug.delay", "duration": PATIENCE * 4}]},
            {"ops": [{"op": "group.add", "name": "rack1"}],
             "depends": [[-1, ["success", "error", "canceled"]]]},
        ]
    )  # fmt: skip
    master.wait_status(blocker, "running")
    found = run(capsys, master, op="group.add", name="rack1")
    assert [job["id"] for job in found["jobs"]] == [waiting]
    assert run(capsys, master, op="group.add", name="rack2")["jobs"] == []


def test_a_wait_that_runs_out_fails_the_task_and_leaves_the_job(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    slow = master.api.submit([{"op": "debug.delay", "duration": PATIENCE * 4}])
    result = run(capsys, master, id=slow, wait=True, timeout=0.2)
    assert result["failed"] is True and "keeps running" in result["msg"]
    assert master.api.job(slow)["status"] in ("queued", "waiting", "running")
