"""Bad input is refused when the job is submitted: a 400 naming the field, nothing made.

Every case goes through a real master (a thread of this process, real Unix socket, real
SQLite) with a cluster and an instance written straight into its store, so "nothing
made" is checked on the real config dump and the real job list.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.config import Cluster, Instance, Nic, Node, NodeGroup, SQLiteStore
from herd.config.model import Disk
from herd.errors import PrerequisiteError, ValidationError
from herd.ops.base import registry
from tests.engine.harness import PATIENCE, ThreadMaster, start_thread_master

BIG = 2**63
HUGE = int("9" * 400)

ADD = {"op": "instance.add", "name": "web2", "disk_template": "file", "disks": ["1G"], "os": "x"}


def add(**changes: Any) -> dict[str, Any]:
    return {**ADD, **changes}


def modify(**changes: Any) -> dict[str, Any]:
    return {"op": "cluster.modify", **changes}


MAC = "aa:00:00:00:00:01"

#: (case, op, the field the 400 must name)
BAD_OPS: list[tuple[str, dict[str, Any], str]] = [
    ("cluster beparams memory text", modify(beparams={"memory": "lots"}), "beparams.memory"),
    ("cluster beparams unknown", modify(beparams={"ram": 64}), "beparams.ram"),
    ("cluster beparams huge", modify(beparams={"vcpus": HUGE}), "beparams.vcpus"),
    (
        "cluster init beparams",
        {"op": "cluster.init", "name": "c2", "master_node": "n1", "beparams": {"memory": "lots"}},
        "beparams.memory",
    ),
    (
        "cluster hvparams value",
        modify(hvparams={"kvm": {"acceleration": "warp"}}),
        "hvparams.kvm.acceleration",
    ),
    ("cluster hvparams unknown hv", modify(hvparams={"xen": {}}), "hvparams.xen"),
    ("cluster hvparams not a mapping", modify(hvparams={"kvm": 3}), "hvparams.kvm"),
    (
        "cluster hvparams huge float",
        modify(hvparams={"fake": {"heartbeat_interval": HUGE}}),
        "hvparams.fake.heartbeat_interval",
    ),
    (
        "group hvparams value",
        {"op": "group.add", "name": "rack2", "hvparams": {"fake": {"acpi": "yes"}}},
        "hvparams.fake.acpi",
    ),
    ("cluster nicparams mode", modify(nicparams={"mode": "weird"}), "nicparams.mode"),
    ("cluster nicparams link dict", modify(nicparams={"link": {}}), "nicparams.link"),
    (
        "cluster diskparams protocol",
        modify(diskparams={"drbd": {"protocol": "Z"}}),
        "diskparams.drbd.protocol",
    ),
    (
        "cluster diskparams reserved drbd option",
        modify(diskparams={"drbd": {"net_options": {"shared-secret": "x"}}}),
        "diskparams.drbd.net_options",
    ),
    (
        "cluster diskparams vg",
        modify(diskparams={"plain": {"vg_name": "a b"}}),
        "diskparams.plain.vg_name",
    ),
    ("cluster diskparams template", modify(diskparams={"tape": {}}), "diskparams.tape"),
    (
        "group diskparams hyphenated key",
        {"op": "group.add", "name": "rack2", "diskparams": {"drbd": {"resync-rate": 61440}}},
        "diskparams.drbd.resync-rate",
    ),
    ("mac_prefix multicast", modify(mac_prefix="01:00:5e"), "mac_prefix"),
    ("mac_prefix broadcast", modify(mac_prefix="ff:ff:ff"), "mac_prefix"),
    ("tag too long", add(tags=["x" * 129]), "tags"),
    ("tag empty", {"op": "group.add", "name": "rack2", "tags": [""]}, "tags"),
    ("too many tags", modify(tags=[f"t{i}" for i in range(4097)]), "tags"),
    (
        "unbounded int beyond 64 bits",
        {"op": "instance.move", "name": "web1", "target_node": "n1", "bandwidth_limit": BIG},
        "bandwidth_limit",
    ),
    ("disk 10**15 MiB", add(disks=[10**15]), "disks[0].size"),
    ("disk 17 TiB", add(disks=["17T"]), "disks[0].size"),
    ("disk 400 digits text", add(disks=["9" * 400]), "disks[0].size"),
    ("disk 400 digits int", add(disks=[HUGE]), "disks[0]"),
    ("disk name path", add(disks=[{"size": 10, "name": "../x"}]), "disks[0].name"),
    ("disk mode", add(disks=[{"size": 10, "mode": "wo"}]), "disks[0].mode"),
    ("disk without size", add(disks=[{"mode": "rw"}]), "disks[0].size"),
    ("nic duplicate mac", add(nics=[{"mac": MAC}, {"mac": MAC}]), "nics[1].mac"),
    ("nic bad ip", add(nics=[{"ip": "999.1.1.1"}]), "nics[0].ip"),
    ("nic mac as int", add(nics=[{"mac": 12}]), "nics[0].mac"),
    ("nic link as dict", add(nics=[{}, {"link": {"a": 1}}]), "nics[1].link"),
    ("nic mode weird", add(nics=[{"mode": "weird"}]), "nics[0].mode"),
    ("nic not a mapping", add(nics=["eth0"]), "nics[0]"),
    ("nic unknown key", add(nics=[{"vlan": 3}]), "nics[0].vlan"),
    ("os path", add(os="../../bin"), "os"),
    ("os shell", add(os="x$(id)"), "os"),
    ("memory beyond any host", add(memory=10**9), "memory"),
    ("delay beyond 64 bits", add(opportunistic_delay=HUGE), "opportunistic_delay"),
    ("reinstall os path", {"op": "instance.reinstall", "name": "web1", "os": "../x"}, "os"),
    (
        "modify duplicate mac",
        {"op": "instance.modify", "name": "web1", "nics": [{"mac": MAC}, {"mac": MAC}]},
        "nics[1].mac",
    ),
    ("modify memory", {"op": "instance.modify", "name": "web1", "memory": 10**9}, "memory"),
]

#: (case, method, path, the field the 400 must name)
BAD_QUERIES: list[tuple[str, str, str, str]] = [
    ("job id 2**63", "GET", f"/v1/jobs/{BIG}", "job_id"),
    ("job id 400 digits", "GET", f"/v1/jobs/{HUGE}", "job_id"),
    ("wait job id", "GET", f"/v1/jobs/{BIG}/wait?timeout=0", "job_id"),
    ("cancel job id", "POST", f"/v1/jobs/{BIG}/cancel", "job_id"),
    ("limit 2**63", "GET", f"/v1/jobs?limit={BIG}", "limit"),
    ("log_since 2**63", "GET", f"/v1/jobs/1?log_since={BIG}", "log_since"),
    ("wait log_since", "GET", f"/v1/jobs/1/wait?timeout=0&log_since={HUGE}", "log_since"),
]


class _UnixConnection(http.client.HTTPConnection):
    """Raw HTTP on the master's socket, to see the status code the client hides."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=PATIENCE)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def call(tm: ThreadMaster, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = _UnixConnection(tm.socket)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def seed(state: Path) -> None:
    """A cluster with one instance whose primary node n2 is offline."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore(state / "config.db")
    try:
        group = NodeGroup(name="default")
        n1 = Node(name="n1", primary_ip="192.0.2.1", group=group.uuid, master_candidate=True)
        n2 = Node(name="n2", primary_ip="192.0.2.2", group=group.uuid, offline=True)
        inst = Instance(
            name="web1",
            primary_node=n2.uuid,
            hypervisor="fake",
            disk_template="file",
            disks=[Disk(name="disk0", size_mib=64, template="file", nodes=[n2.uuid])],
            nics=[Nic(name="nic0", mac="aa:00:00:00:00:ff", link="br0")],
        )
        with store.transaction() as txn:
            txn.add(Cluster(name="c1", master_node="n1", enabled_hypervisors=["fake"]))
            txn.add(group)
            txn.add(n1)
            txn.add(n2)
            txn.add(inst)
    finally:
        store.close()


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadMaster]:
    """One master for the whole table: every case must leave it exactly as it was."""
    base = tmp_path_factory.mktemp("validation")
    seed(base / "state")
    tm = start_thread_master(base)
    yield tm
    tm.stop()


def snapshot(tm: ThreadMaster) -> tuple[Any, Any]:
    return tm.api.dump(), tm.api.jobs()


def assert_names(error: dict[str, Any], field: str, value: Any = None) -> None:
    assert error["type"] == "ValidationError", error
    details = error["details"]
    assert details["field"] == field, error
    assert details["allowed"], error
    assert f"'{field}'" in error["message"] or field in error["message"], error


@pytest.mark.parametrize(("case", "op", "field"), BAD_OPS, ids=[c[0] for c in BAD_OPS])
def test_bad_op_is_a_400_naming_the_field_and_makes_nothing(
    master: ThreadMaster, case: str, op: dict[str, Any], field: str
) -> None:
    before = snapshot(master)
    status, doc = call(master, "POST", "/v1/jobs", {"ops": [op]})
    assert status == 400, (case, doc)
    assert_names(doc["error"], f"ops[0].{field}")
    assert snapshot(master) == before


@pytest.mark.parametrize(
    ("case", "method", "path", "field"), BAD_QUERIES, ids=[c[0] for c in BAD_QUERIES]
)
def test_out_of_range_ids_and_counters_are_a_400(
    master: ThreadMaster, case: str, method: str, path: str, field: str
) -> None:
    before = snapshot(master)
    status, doc = call(master, method, path)
    assert status == 400, (case, doc)
    assert_names(doc["error"], field)
    assert snapshot(master) == before


def test_valid_level_params_are_accepted(master: ThreadMaster) -> None:
    """The tables refuse what is wrong, not what is merely unusual."""
    ops = registry()
    ops["cluster.modify"](
        {
            "beparams": {"memory": 64, "vcpus": 2, "auto_balance": False},
            "hvparams": {"kvm": {"acceleration": "tcg"}, "fake": {"heartbeat_interval": 2}},
            "nicparams": {"mode": "routed", "link": "br0"},
            "diskparams": {
                "drbd": {
                    "resync_rate": 61440,
                    "protocol": "C",
                    "net_options": {"max-buffers": 8000},
                },
                "plain": {"vg_name": "xenvg"},
            },
        }
    )
    params = add(
        disks=["16T", {"size": "1.5G", "mode": "ro", "name": "data"}],
        nics=[{}, {"mac": MAC, "ip": "2001:db8::1", "link": "br1", "name": "eth1"}],
        os="debootstrap+default",
    )
    del params["op"]
    ops["instance.add"](params)


def test_remove_refuses_to_leave_disks_on_an_offline_node(master: ThreadMaster) -> None:
    with pytest.raises(PrerequisiteError) as refused:
        master.api.run([{"op": "instance.remove", "name": "web1"}], timeout=PATIENCE)
    assert "n2" in refused.value.message and "ignore_failures" in refused.value.message
    assert refused.value.details["nodes"] == ["n2"]
    assert [i["name"] for i in master.api.query("instances")] == ["web1"]
    forced = master.api.run(
        [{"op": "instance.remove", "name": "web1", "ignore_failures": True}], timeout=PATIENCE
    )
    assert "n2" in " ".join(forced["cleanup_problems"])
    assert master.api.query("instances") == []


# -- fuzzing: whatever JSON reaches instance.add, the answer is a ValidationError ------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([BIG, -BIG - 1, HUGE, "9" * 400, "17T"])
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: Mostly-right shapes reach the checks behind the type check: NIC and disk items.
ITEM_KEYS = st.sampled_from(["size", "mode", "name", "mac", "ip", "link", "other"])
ITEMS = st.lists(st.dictionaries(ITEM_KEYS, JSON, max_size=4) | JSON, max_size=3)
ADD_PARAMS = [p.name for p in registry()["instance.add"].PARAMS]


@pytest.fixture(scope="module")
def validate_ops(master: ThreadMaster) -> Callable[[Any], Any]:
    """The queue's own submit-time validation, without storing what passes."""
    return master.master.queue.validate_ops


@settings(max_examples=200)
@given(changes=st.dictionaries(st.sampled_from(ADD_PARAMS), JSON | ITEMS, min_size=1, max_size=3))
def test_any_json_for_instance_add_is_accepted_or_a_validation_error(
    validate_ops: Callable[[Any], Any], changes: dict[str, Any]
) -> None:
    try:
        validate_ops([add(**changes)])
    except ValidationError as exc:
        assert exc.details["field"].startswith("ops[0]."), exc.details
        assert exc.details["allowed"]
