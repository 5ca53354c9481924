"""ndparams, an instance's own hvparams and osparams are refused when the job is submitted.

First op by op (``Op(params)`` is the queue's submit-time check), then through a real
master's API: a 400 naming the field, and no job or config change afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from herd.errors import ValidationError
from herd.ops.base import registry
from tests.engine.harness import PATIENCE, ThreadMaster, start_thread_master
from tests.engine.ops.test_params import assert_names, call, seed, snapshot

ADD = {"op": "instance.add", "name": "web2", "disk_template": "file", "disks": ["1G"], "os": "x"}
INIT = {"op": "cluster.init", "name": "c2", "master_node": "n1"}


def op(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def modify(**changes: Any) -> dict[str, Any]:
    return {"op": "instance.modify", "name": "web1", **changes}


#: (case, op, the field the error must name, a word of what is allowed)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "cluster init ndparams",
        op(INIT, ndparams={"ssh_port": 2222}),
        "ndparams.ssh_port",
        "no parameters",
    ),
    (
        "cluster modify ndparams",
        {"op": "cluster.modify", "ndparams": {"exclusive_storage": True}},
        "ndparams.exclusive_storage",
        "no parameters",
    ),
    (
        "group add ndparams",
        {"op": "group.add", "name": "rack2", "ndparams": {"oob_program": "/bin/sh"}},
        "ndparams.oob_program",
        "no parameters",
    ),
    (
        "group modify ndparams",
        {"op": "group.modify", "name": "default", "ndparams": {"spindle_count": 2}},
        "ndparams.spindle_count",
        "no parameters",
    ),
    (
        "add hvparams value for no hypervisor",
        op(ADD, hvparams={"acceleration": "warp"}),
        "hvparams.acceleration",
        "tcg",
    ),
    (
        "add hvparams no hypervisor has",
        op(ADD, hvparams={"vcpu_pinning": "0-3"}),
        "hvparams.vcpu_pinning",
        "heartbeat_interval",
    ),
    (
        "add hvparams not the named hypervisor's",
        op(ADD, hypervisor="fake", hvparams={"acceleration": "tcg"}),
        "hvparams.acceleration",
        "heartbeat_interval",
    ),
    (
        "add hvparams named hypervisor's cross-check",
        op(ADD, hypervisor="kvm", hvparams={"vnc_bind_address": "0.0.0.0"}),
        "hvparams.vnc_bind_address",
        "vnc_password_file",
    ),
    ("modify hvparams type", modify(hvparams={"acpi": "yes"}), "hvparams.acpi", "bool"),
    (
        "modify hvparams unknown",
        modify(hvparams={"kernel": None}),
        "hvparams.kernel",
        "kernel_path",
    ),
    ("add osparams name", op(ADD, osparams={"a-b": "x"}), "osparams.a-b", "letters"),
    ("add osparams newline", op(ADD, osparams={"motd": "a\nb"}), "osparams.motd", "line"),
    ("add osparams list", op(ADD, osparams={"pkgs": ["vim"]}), "osparams.pkgs", "boolean"),
    ("modify osparams NUL", modify(osparams={"motd": "a\0b"}), "osparams.motd", "NUL"),
    (
        "reinstall osparams name",
        {"op": "instance.reinstall", "name": "web1", "osparams": {"OSP$X": "1"}},
        "osparams.OSP$X",
        "letters",
    ),
]
IDS = [case[0] for case in BAD]


def build(raw: dict[str, Any]) -> Any:
    params = {k: v for k, v in raw.items() if k != "op"}
    return registry()[raw["op"]](params)


@pytest.mark.parametrize(("case", "raw", "field", "allowed"), BAD, ids=IDS)
def test_the_op_refuses_the_params_naming_field_value_and_rule(
    case: str, raw: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(ValidationError) as err:
        build(raw)
    assert err.value.details["field"] == field, case
    assert allowed in err.value.details["allowed"], err.value.details
    assert field in err.value.message, err.value.message


def test_what_the_tables_allow_is_kept() -> None:
    assert build({"op": "cluster.modify", "ndparams": {}}).params["ndparams"] == {}
    add = build(op(ADD, hvparams={"acpi": False}, osparams={"suite": "bookworm", "dhcp": True}))
    assert add.params["osparams"] == {"suite": "bookworm", "dhcp": "true"}
    changed = build(modify(hvparams={"acpi": None, "heartbeat_interval": 2}))
    assert changed.params["hvparams"] == {"acpi": None, "heartbeat_interval": 2.0}


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadMaster]:
    """The cluster of test_params: hypervisor fake only, instance web1 on offline n2."""
    base = tmp_path_factory.mktemp("param-validation")
    seed(base / "state")
    tm = start_thread_master(base)
    yield tm
    tm.stop()


@pytest.mark.parametrize(("case", "raw", "field", "allowed"), BAD, ids=IDS)
def test_through_the_api_it_is_a_400_and_nothing_is_made(
    master: ThreadMaster, case: str, raw: dict[str, Any], field: str, allowed: str
) -> None:
    before = snapshot(master)
    status, doc = call(master, "POST", "/v1/jobs", {"ops": [raw]})
    assert status == 400, (case, doc)
    assert_names(doc["error"], f"ops[0].{field}")
    assert snapshot(master) == before


def test_another_hypervisors_parameter_is_refused_when_the_job_starts(
    master: ThreadMaster,
) -> None:
    """Only the config says which hypervisor an unnamed one is (here: fake)."""
    before = master.api.dump()
    with pytest.raises(ValidationError) as refused:
        master.api.run([op(ADD, hvparams={"acceleration": "tcg"})], timeout=PATIENCE)
    assert refused.value.details["field"] == "hvparams.acceleration"
    assert master.api.dump() == before
