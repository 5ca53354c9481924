"""instance_info: the named instances and the names that matched none; the tags, node and
state filters, on what the master stores and on what a live query reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdApiError
from ansible_collections.herd.cluster.plugins.modules import instance_info
from ansible_collections.herd.cluster.plugins.modules.instance_info import matches, select

from herd.config import Cluster, Instance, Node
from tests.ansible.unit.plugins.modules.test_tag import store_objects
from tests.engine.harness import ThreadMaster, start_thread_master

ALL = [{"name": "db1", "primary_node_name": "n2"}, {"name": "web1", "primary_node_name": "n1"}]
DB1 = {
    "name": "db1",
    "admin_state": "down",
    "tags": ["db", "prod"],
    "primary_node_name": "n2",
    "secondary_node_names": ["n3"],
}


def test_all_instances_when_no_names_are_given() -> None:
    assert select(ALL, None) == (ALL, [])


def test_named_instances_and_the_missing_names() -> None:
    assert select(ALL, ["web1", "web9", "web1"]) == ([ALL[1]], ["web9"])
    assert select(ALL, []) == ([], [])


@pytest.mark.parametrize(
    ("tags", "node", "state", "wanted"),
    [
        (None, None, None, True),
        (["prod", "db"], None, None, True),
        (["prod", "web"], None, None, False),
        ([], None, None, True),
        (None, "n2", None, True),
        (None, "n3", None, True),
        (None, "n1", None, False),
        (None, None, "down", True),
        (None, None, "up", False),
        (["db"], "n3", "down", True),
        (["db"], "n3", "up", False),
    ],
)
def test_an_instance_matches_only_when_every_filter_does(
    tags: list[str] | None, node: str | None, state: str | None, wanted: bool
) -> None:
    assert matches(DB1, tags, node, state) is wanted


class LiveClient:
    """Answers as the master does; the live query reports db1 running and web1 stopped."""

    STORED = [DB1, {**DB1, "name": "web1", "admin_state": "up", "tags": ["web"]}]
    OPER = {"db1": "running", "web1": "stopped"}

    def __init__(self) -> None:
        self.live_asked: list[str] = []

    def query(self, kind: str) -> list[dict[str, Any]]:
        return self.STORED

    def request(self, method: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        self.live_asked = params["names"].split(",")
        items = [i for i in self.STORED if i["name"] in self.live_asked]
        return {"items": [{**i, "oper_state": self.OPER[i["name"]]} for i in items]}


def read(client: LiveClient, **filters: Any) -> list[str]:
    params = {"names": None, "live": False, "tags": None, "node": None, "state": None}
    herd = SimpleNamespace(params={**params, **filters}, client=client)
    return [i["name"] for i in instance_info.run(herd)["instances"]]  # type: ignore[arg-type]


def test_the_oper_state_filter_applies_to_the_live_answer() -> None:
    client = LiveClient()
    assert read(client, live=True, state="running") == ["db1"]
    assert read(client, live=True, state="stopped") == ["web1"]


def test_nodes_are_asked_only_about_the_instances_the_stored_filters_let_through() -> None:
    client = LiveClient()
    assert read(client, live=True, tags=["web"], state="stopped") == ["web1"]
    assert client.live_asked == ["web1"]
    assert read(client, live=True, state="up") == ["web1"]
    assert client.live_asked == ["web1"]


def test_an_oper_state_filter_without_live_is_refused_naming_the_option() -> None:
    with pytest.raises(HerdApiError, match=r"state=running .* needs live=true") as refused:
        read(LiveClient(), state="running")
    assert refused.value.details["field"] == "state"


@pytest.fixture
def master(tmp_path: Path) -> Iterator[ThreadMaster]:
    """Instances web1 (n1, up, web+prod), db1 (n2 with n3, down, db+prod), web2 (n3, up)."""
    n1, n2, n3 = (Node(name=f"n{i}", primary_ip=f"192.0.2.{i}") for i in (1, 2, 3))
    common = {"hypervisor": "fake", "disk_template": "file"}
    store_objects(
        tmp_path / "state",
        [
            Cluster(name="c1", master_node="n1"), n1, n2, n3,
            Instance(name="web1", primary_node=n1.uuid, admin_state="up", tags=["web", "prod"],
                     **common),
            Instance(name="db1", primary_node=n2.uuid, secondary_nodes=[n3.uuid],
                     tags=["prod", "db"], **common),
            Instance(name="web2", primary_node=n3.uuid, admin_state="up", tags=["web"], **common),
        ],
    )  # fmt: skip
    running = start_thread_master(tmp_path)
    yield running
    running.stop()


def run(capsys: pytest.CaptureFixture[str], master: ThreadMaster, **args: Any) -> dict[str, Any]:
    with patch_module_args({"socket": str(master.socket), **args}), pytest.raises(SystemExit):
        instance_info.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("filters", "names"),
    [
        ({}, ["db1", "web1", "web2"]),
        ({"tags": ["prod"]}, ["db1", "web1"]),
        ({"tags": ["web", "prod"]}, ["web1"]),
        ({"node": "n3"}, ["db1", "web2"]),
        ({"state": "up"}, ["web1", "web2"]),
        ({"tags": ["web"], "node": "n3", "state": "up"}, ["web2"]),
        ({"names": ["web1", "db1", "web9"], "state": "down"}, ["db1"]),
    ],
)
def test_the_filters_narrow_what_the_master_reports(
    capsys: pytest.CaptureFixture[str],
    master: ThreadMaster,
    filters: dict[str, Any],
    names: list[str],
) -> None:
    result = run(capsys, master, **filters)
    assert [i["name"] for i in result["instances"]] == names
    assert result["missing"] == (["web9"] if "names" in filters else [])
    assert result["changed"] is False
