"""herd.ops.levels: the one table per parameter kind that the cluster, a group and an
instance are all checked against, so a default set at a higher level is always a value
the lower level could have set itself (pure logic; the last tests take it through ops)."""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import ValidationError
from herd.ops import levels
from tests.engine.loopback import OpEnv


def refused(check: Any, value: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as failed:
        check(value, "p")
    return failed.value


def test_a_level_keeps_only_the_keys_it_overrides() -> None:
    assert levels.check_beparams({"memory": 512}, "beparams") == {"memory": 512}
    assert levels.check_nicparams({}, "nicparams") == {}


def test_an_unknown_key_names_the_field_and_the_allowed_ones() -> None:
    err = refused(levels.check_beparams, {"cpus": 2})
    assert err.details["field"] == "p.cpus"
    assert "allowed fields: auto_balance, memory, vcpus" in str(err)


def test_node_parameters_accept_none_yet() -> None:
    err = refused(levels.check_ndparams, {"oob_program": "/bin/true"})
    assert err.details["field"] == "p.oob_program"
    assert "no parameters" in str(err)


@pytest.mark.parametrize(
    ("check", "value", "field"),
    [
        (levels.check_beparams, {"memory": "lots"}, "p.memory"),
        (levels.check_beparams, {"vcpus": levels.MAX_VCPUS + 1}, "p.vcpus"),
        (levels.check_nicparams, {"mode": "nat"}, "p.mode"),
        (levels.check_nicparams, {"link": "a-name-longer-than-15"}, "p.link"),
        (levels.check_diskparams, {"floppy": {}}, "p.floppy"),
        (levels.check_diskparams, {"drbd": "fast"}, "p.drbd"),
        (levels.check_diskparams, {"file": {"vg_name": "xenvg"}}, "p.file.vg_name"),
        (levels.check_diskparams, {"drbd": {"protocol": "D"}}, "p.drbd.protocol"),
        (levels.check_diskparams, {"drbd": {"resync_rate": "1 0"}}, "p.drbd.resync_rate"),
        (levels.check_diskparams, {"plain": {"vg_name": "-x"}}, "p.plain.vg_name"),
        (levels.check_hvparams, {"vmware": {}}, "p.vmware"),
        (levels.check_hvparams, {"fake": []}, "p.fake"),
    ],
)
def test_a_bad_value_names_its_full_field(check: Any, value: dict[str, Any], field: str) -> None:
    assert refused(check, value).details["field"] == field


def test_an_unknown_hypervisor_parameter_is_named() -> None:
    assert "p.fake.nope" in str(refused(levels.check_hvparams, {"fake": {"nope": 1}}))


def test_good_values_at_every_kind_pass_unchanged() -> None:
    drbd = {"resync_rate": "100M", "protocol": "C", "net_options": {"max-buffers": 8000}}
    assert levels.check_diskparams({"drbd": drbd, "file": {}}, "p") == {"drbd": drbd, "file": {}}
    assert levels.check_hvparams({"fake": {"heartbeat_interval": 1}}, "p") == {
        "fake": {"heartbeat_interval": 1}
    }
    assert levels.check_nicparams({"mode": "routed", "link": ""}, "p") == {
        "mode": "routed",
        "link": "",
    }


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (levels.check_link, "br0", "bad name!"),
        (levels.check_mac, "aa:00:00:01:02:03", "AA:00:00:01:02:03"),
        (levels.check_item_name, "disk0", "-disk"),
    ],
)
def test_item_checks_say_what_is_allowed(check: Any, good: str, bad: str) -> None:
    assert check(good) is None
    assert check(bad)


def test_an_instance_parameter_is_the_level_parameter_with_its_own_doc() -> None:
    param = levels.instance_param(levels.BEPARAMS, "memory", "memory of this instance")
    assert param.doc == "memory of this instance"
    assert param.validate(256) == 256
    with pytest.raises(ValidationError):
        param.validate(1)


@pytest.mark.parametrize("op", ["cluster.modify", "group.modify"])
def test_every_level_refuses_the_same_bad_value_at_submit(env: OpEnv, op: str) -> None:
    target = {"name": "default"} if op == "group.modify" else {}
    with pytest.raises(ValidationError) as failed:
        env.run({"op": op, **target, "diskparams": {"drbd": {"protocol": "D"}}})
    assert failed.value.details["field"] == "ops[0].diskparams.drbd.protocol"
    assert env.nodes.calls == []


def test_a_cluster_default_is_checked_like_an_instance_value(env: OpEnv) -> None:
    with pytest.raises(ValidationError) as failed:
        env.run({"op": "cluster.modify", "beparams": {"memory": "lots"}})
    assert failed.value.details["field"] == "ops[0].beparams.memory"
    assert env.store.list("cluster")[0].beparams.get("memory") != "lots"
