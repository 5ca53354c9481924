"""Opportunistic instance creation with retries, against real lab nodes over SSH.

Two nodes; a filler instance uses up every vCPU the allocator allows on the first, so a new
instance fits only on the second. The test holds the second node's lock in the master's
lock manager (as a long job would), so an opportunistic create can lock only the first
node: temporarily infeasible until the holder lets go.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from herd.alloc.model import VCPU_RATIO
from herd.errors import PrerequisiteError, TemporarilyInfeasibleError
from tests.engine.harness import ThreadMaster, cluster_on_lab, poll

pytestmark = pytest.mark.lab

HOLDER = "test-holder"
Env = tuple[ThreadMaster, Any]
#: Every vCPU the allocator lets a lab node carry (lab nodes report this host's CPUs).
FULL = int((os.cpu_count() or 1) * VCPU_RATIO)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with cluster_on_lab(
        tmp_path_factory.mktemp("master"), "o", 2, "opp", enabled_hypervisors=["fake"],
        enabled_disk_templates=["file"], beparams={"memory": 32},
    ) as (running, lab):  # fmt: skip
        running.api.run([add("filler", primary_node=lab.nodes[0].name, vcpus=FULL)],
                        timeout=120)  # fmt: skip
        yield running, lab


def add(name: str, **params: Any) -> dict[str, Any]:
    return {
        "op": "instance.add",
        "name": name,
        "disk_template": "file",
        "disks": ["8M"],
        "install": False,
        "start": False,
        **params,
    }


def holding_second_node(env: Env) -> None:
    running, lab = env
    uuid = running.master.store.get("node", lab.nodes[1].name).uuid
    running.master.locks.acquire(HOLDER, "node", [uuid])


def names(running: ThreadMaster) -> list[str]:
    return [i["name"] for i in running.api.query("instances")]


def retry_lines(doc: dict[str, Any]) -> list[str]:
    return [e["message"] for e in doc["log"] if e["message"].startswith("temporarily infeasible")]


def test_without_retries_the_error_says_try_again(env: Env) -> None:
    running, _ = env
    holding_second_node(env)
    try:
        with pytest.raises(TemporarilyInfeasibleError) as info:
            running.api.run([add("soon", opportunistic=True)], timeout=60)
    finally:
        running.master.locks.release_all(HOLDER)
    assert "retry when they are free" in info.value.message
    assert names(running) == ["filler"]


def test_retries_create_it_once_the_holder_finishes(env: Env) -> None:
    running, lab = env
    holding_second_node(env)
    c = running.client()
    job_id = c.submit([add("later", opportunistic_tries=30, opportunistic_delay=0.2)])
    try:
        poll("a retry", lambda: retry_lines(c.job(job_id)), patience=60)
    finally:
        running.master.locks.release_all(HOLDER)
    c.wait(job_id, timeout=60)
    doc = c.job(job_id)
    assert doc["status"] == "success", doc["error"]
    assert doc["ops"][0]["result"]["primary_node"] == lab.nodes[1].name
    assert doc["ops"][0]["tries"] == len(retry_lines(doc)) >= 1
    assert "does not fit on the locked nodes" in retry_lines(doc)[0]
    (inst,) = running.api.query("instances", ["later"])
    assert inst["primary_node_name"] == lab.nodes[1].name


def test_what_fits_nowhere_fails_at_once(env: Env) -> None:
    running, _ = env
    holding_second_node(env)
    c = running.client()
    try:
        too_big = add("huge", vcpus=256, opportunistic_tries=10, opportunistic_delay=30)
        job_id = c.submit([too_big])
        c.wait(job_id, timeout=60)
        doc = c.job(job_id)
    finally:
        running.master.locks.release_all(HOLDER)
    assert doc["status"] == "error"
    assert doc["error"]["type"] == PrerequisiteError.kind
    assert retry_lines(doc) == [] and doc["ops"][0]["tries"] == 0
    assert "huge" not in names(running)
