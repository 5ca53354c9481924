"""tag against a real master in a thread: add, remove and set tags on each kind of object,
check mode and diff, idempotence, and the refusals made before anything is submitted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.herd.cluster.plugins.modules import tag

from herd.config import Cluster, Instance, Node, NodeGroup, SQLiteStore, TopObject
from herd.ops import params as engine_params
from tests.engine.harness import PATIENCE, ThreadMaster, start_thread_master


def store_objects(state_dir: Path, objects: list[TopObject]) -> None:
    """Write ``objects`` into the store a master on ``state_dir`` will open: reading and
    tagging them touches only the config, so no node has to exist for real."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore(state_dir / "config.db")
    try:
        with store.transaction() as txn:
            for obj in objects:
                txn.add(obj)
    finally:
        store.close()


def seed(state_dir: Path) -> None:
    """Cluster c1 with group default (tagged rack1), node n1 and instance web1 (tagged web)."""
    group = NodeGroup(name="default", tags=["rack1"])
    node = Node(name="n1", primary_ip="192.0.2.1", group=group.uuid)
    web1 = Instance(
        name="web1", primary_node=node.uuid, hypervisor="fake", disk_template="file", tags=["web"]
    )
    store_objects(state_dir, [Cluster(name="c1", master_node="n1"), group, node, web1])


@pytest.fixture
def master(tmp_path: Path) -> Iterator[ThreadMaster]:
    seed(tmp_path / "state")
    running = start_thread_master(tmp_path)
    yield running
    running.stop()


def run(capsys: pytest.CaptureFixture[str], master: ThreadMaster, **args: Any) -> dict[str, Any]:
    module_args = {"socket": str(master.socket), "timeout": int(PATIENCE * 4), **args}
    with patch_module_args(module_args), pytest.raises(SystemExit):
        tag.main()
    return json.loads(capsys.readouterr().out)


def tags_of(master: ThreadMaster, kind: str, name: str) -> list[str]:
    if kind == "cluster":
        return master.api.request("GET", "/v1/query/cluster")["tags"]
    listed = tag.KINDS[kind][0]
    return next(o["tags"] for o in master.api.query(listed) if o["name"] == name)


def job_count(master: ThreadMaster) -> int:
    return len(master.api.request("GET", "/v1/jobs")["items"])


@pytest.mark.parametrize(
    ("kind", "name", "before"),
    [("cluster", None, []), ("node", "n1", []), ("group", "default", ["rack1"]),
     ("instance", "web1", ["web"])],
)  # fmt: skip
def test_add_remove_and_exact_on_each_kind_then_nothing_on_a_rerun(
    capsys: pytest.CaptureFixture[str],
    master: ThreadMaster,
    kind: str,
    name: str | None,
    before: list[str],
) -> None:
    target = {"kind": kind, "name": name}
    added = run(capsys, master, **target, tags=["prod", "prod", "b"])
    assert (added["changed"], added["tags"]) == (True, [*before, "prod", "b"])
    assert run(capsys, master, **target, tags=["b"])["changed"] is False
    removed = run(capsys, master, **target, tags=["prod", "nope"], state="absent")
    assert (removed["changed"], removed["tags"]) == (True, [*before, "b"])
    assert run(capsys, master, **target, tags=["prod"], state="absent")["changed"] is False
    exact = run(capsys, master, **target, tags=["x", "y"], state="exact")
    assert (exact["changed"], tags_of(master, kind, name or "c1")) == (True, ["x", "y"])
    again = run(capsys, master, **target, tags=["y", "x"], state="exact")
    assert (again["changed"], again["job_ids"]) == (False, [])
    cleared = run(capsys, master, **target, tags=[], state="exact")
    assert (cleared["changed"], cleared["tags"]) == (True, [])


def test_check_mode_shows_the_diff_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    jobs = job_count(master)
    result = run(
        capsys, master, kind="instance", name="web1", tags=["db"], state="exact",
        _ansible_check_mode=True, _ansible_diff=True,
    )  # fmt: skip
    assert result["changed"] is True
    assert result["diff"] == {"before": {"tags": ["web"]}, "after": {"tags": ["db"]}}
    assert (result["tags"], tags_of(master, "instance", "web1")) == (["web"], ["web"])
    assert job_count(master) == jobs


def test_the_job_carries_priority_and_reason(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    result = run(
        capsys, master, kind="node", name="n1", tags=["ssd"], priority=5, reason="new disks"
    )
    job = master.api.job(result["job_ids"][0])
    assert job["priority"] == 5
    assert job["ops"][0]["op"] == "node.modify"
    assert ["user", "new disks"] in [entry[:2] for entry in job["reason"]]
    assert job["reason"][0][:2] == ["ansible:herd.cluster.tag", "tag n1 state=present"]


@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize(
    ("args", "field", "words"),
    [
        ({"kind": "instance", "name": "web9", "tags": ["a"]}, "name", "instance web9 not found"),
        ({"kind": "group", "name": "web1", "tags": ["a"]}, "name", "group web1 not found"),
        ({"kind": "node", "name": "n1", "tags": ["a", ""]}, "tags", "invalid value ''"),
        ({"kind": "instance", "name": "web1", "tags": ["t" * 129], "state": "absent"},
         "tags", "1 to 128 characters"),
        ({"kind": "cluster", "name": "c2", "tags": ["a"]}, "name", "invalid value 'c2'"),
    ],
)  # fmt: skip
def test_refused_in_check_mode_as_in_a_real_run_and_nothing_submitted(
    capsys: pytest.CaptureFixture[str],
    master: ThreadMaster,
    check_mode: bool,
    args: dict[str, Any],
    field: str,
    words: str,
) -> None:
    jobs = job_count(master)
    result = run(capsys, master, **args, _ansible_check_mode=check_mode)
    assert result["failed"] is True and words in result["msg"]
    assert (result["error"]["details"]["field"], result["changed"]) == (field, False)
    assert job_count(master) == jobs


def test_a_tag_list_larger_than_the_engine_allows_is_refused_before_submission(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    many = [f"t{i}" for i in range(tag.MAX_TAGS_PER_OBJECT)]
    result = run(capsys, master, kind="instance", name="web1", tags=many)
    assert result["failed"] is True
    assert "the instance would have 4097 tags" in result["msg"]
    assert tags_of(master, "instance", "web1") == ["web"]


def test_name_is_required_except_for_the_cluster(
    capsys: pytest.CaptureFixture[str], master: ThreadMaster
) -> None:
    result = run(capsys, master, kind="node", tags=["a"])
    assert result["failed"] is True and "name" in result["msg"]


def test_the_modules_bounds_are_the_engines() -> None:
    assert tag.MAX_TAG_LEN == engine_params.MAX_TAG_LEN
    assert tag.MAX_TAGS_PER_OBJECT == engine_params.MAX_TAGS_PER_OBJECT
