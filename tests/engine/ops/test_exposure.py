"""The remote/local classification covers the whole op catalog and every hypervisor
parameter, names nothing that does not exist, and refuses what it says it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import ForbiddenError
from herd.hvparams import HYPERVISORS, parameters_of
from herd.ops import exposure
from herd.ops.base import registry
from herd.ops.exposure import LOCAL_OPS, REMOTE_OPS, Keys


def hypervisor_params() -> set[str]:
    return {key for hv in HYPERVISORS for key in parameters_of(hv)}


# ---- the classification is complete and names only what exists ----------------------


def test_every_op_of_the_catalog_is_classified_exactly_once() -> None:
    ops = set(registry())
    unclassified = ops - set(LOCAL_OPS) - set(REMOTE_OPS)
    assert not unclassified, f"classify these ops in herd.ops.exposure: {sorted(unclassified)}"
    assert not set(LOCAL_OPS) & set(REMOTE_OPS), "an op is both local-only and remote"
    unknown = (set(LOCAL_OPS) | set(REMOTE_OPS)) - ops
    assert not unknown, f"herd.ops.exposure names ops that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize("op_id", sorted(REMOTE_OPS))
def test_local_only_fields_of_remote_ops_are_real_parameters(op_id: str) -> None:
    params = {p.name: p for p in registry()[op_id].PARAMS}
    for name, rule in REMOTE_OPS[op_id].items():
        assert name in params, f"{op_id} has no parameter {name!r}"
        if isinstance(rule, Keys):
            assert params[name].type is dict, f"{op_id}.{name}: keys rules need a mapping"
        else:
            assert rule, f"{op_id}.{name}: say why it is local-only"


def test_every_hypervisor_parameter_is_classified_and_only_those() -> None:
    known = hypervisor_params()
    local, remote = set(exposure.LOCAL_HVPARAMS), exposure.REMOTE_HVPARAMS
    assert known - local - remote == set(), "classify new hypervisor parameters"
    assert (local | remote) - known == set(), "classified hypervisor parameters that do not exist"
    assert not local & remote


def test_the_trust_settings_named_in_the_review_are_local_only() -> None:
    assert {"config.restore", "cluster.init", "node.add"} <= set(LOCAL_OPS)
    cluster = REMOTE_OPS["cluster.modify"]
    assert {"domain_secret", "allow_cipher_bypassing"} <= set(cluster)
    assert "dest_cluster" in REMOTE_OPS["instance.move"]
    assert {"kernel_path", "initrd_path"} <= set(exposure.LOCAL_HVPARAMS)


# ---- what a remote submission is refused --------------------------------------------


def refused(ops: list[dict[str, Any]], prefix: str = "") -> ForbiddenError:
    with pytest.raises(ForbiddenError) as err:
        exposure.refuse_remote_ops(ops, prefix)
    return err.value


def test_a_local_only_op_is_refused_naming_it_and_the_way_to_run_it() -> None:
    err = refused([{"op": "debug.delay"}, {"op": "config.restore", "data": {}}])
    assert err.details == {"field": "ops[1].op", "op": "config.restore"}
    assert "'config.restore'" in err.message and "local socket" in err.message
    assert err.http_status == 403


@pytest.mark.parametrize(
    ("op", "field"),
    [
        ({"op": "cluster.modify", "allow_cipher_bypassing": False}, "allow_cipher_bypassing"),
        ({"op": "cluster.modify", "domain_secret": "ab" * 32}, "domain_secret"),
        ({"op": "instance.move", "name": "i1", "dest_cluster": "/run/x.sock"}, "dest_cluster"),
        ({"op": "node.modify", "name": "n2", "secondary_ip": "10.0.0.9"}, "secondary_ip"),
        (
            {"op": "instance.add", "name": "i1", "hvparams": {"kernel_path": "/etc/shadow"}},
            "hvparams.kernel_path",
        ),
        (
            {"op": "instance.modify", "name": "i1", "hvparams": {"initrd_path": "/dev/sda"}},
            "hvparams.initrd_path",
        ),
        (
            {"op": "cluster.modify", "hvparams": {"fake": {}, "kvm": {"kernel_path": "/x"}}},
            "hvparams.kvm.kernel_path",
        ),
        ({"op": "group.add", "name": "g", "hvparams": {"kvm": {"initrd_path": "/x"}}},
         "hvparams.kvm.initrd_path"),
        # Found in review: DRBD's peer authentication and split-brain policy.
        ({"op": "cluster.modify",
          "diskparams": {"drbd": {"net_options": {"cram-hmac-alg": "crc32"}}}},
         "diskparams.drbd.net_options"),
        ({"op": "group.modify", "name": "g", "diskparams": {"plain": {"vg_name": "x"}}},
         "diskparams.plain.vg_name"),
    ],
)  # fmt: skip
def test_local_only_fields_are_refused_by_name_without_echoing_the_value(
    op: dict[str, Any], field: str
) -> None:
    err = refused([op], "jobs[2].")
    assert err.details == {"field": f"jobs[2].ops[0].{field}", "op": op["op"]}
    assert "local socket" in err.message
    assert "ab" * 32 not in err.message and "ab" * 32 not in str(err.details)


@pytest.mark.parametrize(
    "op",
    [
        {"op": "cluster.modify", "tags": ["x"], "hvparams": {"kvm": {"machine_type": "q35"}}},
        {"op": "cluster.modify", "allow_cipher_bypassing": None},
        {"op": "instance.modify", "name": "i1", "hvparams": {"kernel_path": None}},
        {"op": "instance.add", "name": "i1", "hvparams": {"kernel_args": "quiet"}},
        {"op": "instance.move", "name": "i1", "target_node": "n2"},
        {"op": "node.modify", "name": "n2", "drained": True},
        {"op": "cluster.modify", "diskparams": {"drbd": {"resync_rate": 61440}}},
    ],
)
def test_remote_ops_keep_their_other_fields(op: dict[str, Any]) -> None:
    exposure.refuse_remote_ops([op])


@pytest.mark.parametrize(
    "ops",
    [
        None,
        "cluster.init",
        [42],
        [{"op": "no.such.op"}],
        [{"op": ["config.restore"]}],
        [{"op": "cluster.modify", "hvparams": ["kvm"]}],
        [{"op": "cluster.modify", "hvparams": {"kvm": "kernel_path"}}],
        [{"op": "instance.add", "hvparams": "kernel_path"}],
    ],
)
def test_malformed_input_is_left_to_the_queue_validation(ops: Any) -> None:
    exposure.refuse_remote_ops(ops)


def test_an_op_missing_from_the_classification_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(exposure.REMOTE_OPS, "debug.delay")
    err = refused([{"op": "debug.delay"}])
    assert "not classified" in err.message


def test_job_lists_name_the_job_in_the_field() -> None:
    with pytest.raises(ForbiddenError) as err:
        exposure.refuse_remote_jobs(
            [{"ops": [{"op": "debug.delay"}]}, "junk", {"ops": [{"op": "node.add"}]}], "jobs"
        )
    assert err.value.details["field"] == "jobs[2].ops[0].op"


def test_the_origin_is_read_from_the_reason_trail() -> None:
    assert exposure.came_remotely([["cli", "x", 1.0], [exposure.REMOTE_SOURCE, "token a", 2.0]])
    assert not exposure.came_remotely([["cli", "api:https", 1.0]])
    assert not exposure.came_remotely([])
    assert not exposure.came_remotely("api:https")
