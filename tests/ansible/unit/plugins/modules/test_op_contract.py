"""Module <-> op contract: every op a module's plan can submit passes the engine's own checks.

The modules build op dicts by hand and the master validates them only when a job is
submitted, so a renamed engine parameter (or a module spelling a key the engine does not
know) would otherwise show only in the lab. Each module's plan is driven over declarations
of valid option values and over the states the master may report, and every op it
produces is validated as the master's queue does at submission (the op's own PARAMS).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdApiError
from ansible_collections.herd.cluster.plugins.modules import (
    cluster,
    group,
    instance,
    instance_replace_disks,
    node,
    tag,
)
from hypothesis import given
from hypothesis import strategies as st

from herd.errors import ValidationError
from herd.ops.base import registry
from tests.ansible.unit.plugins.modules.test_node import NODE

Params = dict[str, Any]
Ops = list[dict[str, Any]]


class SpecCaptured(Exception):
    """Raised by the stand-in HerdModule to hand the module's argument spec back."""

    def __init__(self, spec: dict[str, dict[str, Any]]) -> None:
        super().__init__("argument spec captured")
        self.spec = spec


def argument_spec(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The module's own argument spec, read from its main() rather than copied here."""

    def capture(name: str, spec: dict[str, dict[str, Any]], **kwargs: Any) -> None:
        raise SpecCaptured(spec)

    with monkeypatch.context() as patch:
        patch.setattr(module, "HerdModule", capture)
        with pytest.raises(SpecCaptured) as caught:
            module.main()
    return caught.value.spec


def task_params(spec: dict[str, Any], declared: Params) -> Params:
    """Params as Ansible hands them to the module: every option, defaults filled in."""
    return {**{k: v.get("default") for k, v in spec.items()}, **declared}


def assert_ops_valid(ops: Ops) -> None:
    """Validate each op exactly as the master does at submission (JobQueue.validate_ops)."""
    ops_by_id = registry()
    for op in ops:
        assert op["op"] in ops_by_id, f"module submits unknown op {op['op']!r}"
        params = {k: v for k, v in op.items() if k != "op"}
        try:
            ops_by_id[op["op"]](params)
        except ValidationError as exc:
            pytest.fail(f"{op['op']} refuses what the module sends ({params!r}): {exc}")


def planned(make: Callable[[], tuple[Ops, Params]]) -> Ops:
    """The ops of one plan; a declaration the module itself refuses submits nothing."""
    try:
        ops, _ = make()
    except HerdApiError:
        return []
    return ops


def options(values: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Params]:
    """Any subset of the options, each with a valid value: a task declares only some."""
    return st.fixed_dictionaries({}, optional=values)


CLUSTER = {
    "name": "c1",
    "master_node": "n1",
    "enabled_hypervisors": ["kvm"],
    "enabled_disk_templates": ["drbd", "plain"],
    "candidate_pool_size": 10,
    "compression_tools": ["gzip", "lz4"],
    "nicparams": {"link": "br0", "mode": "bridged"},
    "diskparams": {"drbd": {"resync_rate": 1024}},
    "drbd_port_range": [11000, 14999],
    "max_running_jobs": 4,
    "tags": [],
}
CLUSTER_OPTIONS = options(
    {
        "state": st.sampled_from(["present", "absent"]),
        "master_node": st.just("n1"),
        "primary_ip": st.just("192.0.2.11"),
        "secondary_ip": st.just("198.51.100.11"),
        "ssh_port": st.integers(1, 65535),
        "enabled_hypervisors": st.lists(st.sampled_from(["kvm", "fake"]), min_size=1, unique=True),
        "enabled_disk_templates": st.lists(
            st.sampled_from(["file", "plain", "drbd"]), min_size=1, unique=True
        ),
        "beparams": st.fixed_dictionaries({}, optional={"memory": st.integers(16, 4096)}),
        "nicparams": st.fixed_dictionaries({}, optional={"link": st.just("br1")}),
        "diskparams": st.just({"drbd": {"resync_rate": 61440}}),
        "compression_tools": st.lists(st.sampled_from(["gzip", "lz4"]), unique=True),
        "candidate_pool_size": st.integers(1, 20),
        "max_running_jobs": st.integers(1, 20),
        "tags": st.lists(st.sampled_from(["a", "b"]), unique=True),
    }
)


@given(declared=CLUSTER_OPTIONS, current=st.sampled_from([None, CLUSTER]))
def test_cluster_ops_pass_the_engines_checks(
    monkeypatch: pytest.MonkeyPatch, declared: Params, current: Params | None
) -> None:
    params = task_params(argument_spec(cluster, monkeypatch), {"name": "c1", **declared})
    assert_ops_valid(planned(lambda: cluster.plan(current, params)))


NODE_OPTIONS = options(
    {
        "state": st.sampled_from(["present", "absent"]),
        "primary_ip": st.just("192.0.2.12"),
        "secondary_ip": st.sampled_from(["198.51.100.12", "198.51.100.13"]),
        "ssh_port": st.just(22),
        "group": st.sampled_from(["default", "rack2"]),
        "master_candidate": st.booleans(),
        "drained": st.booleans(),
        "offline": st.booleans(),
        "tags": st.lists(st.sampled_from(["rack1", "ssd"]), unique=True),
    }
)


@given(declared=NODE_OPTIONS, current=st.sampled_from([None, NODE]))
def test_node_ops_pass_the_engines_checks(
    monkeypatch: pytest.MonkeyPatch, declared: Params, current: Params | None
) -> None:
    params = task_params(argument_spec(node, monkeypatch), {"name": "n2", **declared})
    assert_ops_valid(planned(lambda: node.plan(current, params)))


RACK2 = {
    "name": "rack2",
    "alloc_policy": "preferred",
    "ndparams": {},
    "diskparams": {"drbd": {"resync_rate": 1024}},
    "hvparams": {},
    "tags": [],
}
GROUP_OPTIONS = options(
    {
        "state": st.sampled_from(["present", "absent"]),
        "rename_from": st.just("rack1"),
        "alloc_policy": st.sampled_from(["preferred", "last_resort", "unallocable"]),
        "diskparams": st.sampled_from(
            [{"drbd": {"resync_rate": 61440}}, {"plain": {"vg_name": "xenvg"}}]
        ),
        "tags": st.lists(st.sampled_from(["a", "b"]), unique=True),
    }
)


@given(
    declared=GROUP_OPTIONS,
    current=st.sampled_from([None, RACK2]),
    previous=st.sampled_from([None, {**RACK2, "name": "rack1"}]),
)
def test_group_ops_pass_the_engines_checks(
    monkeypatch: pytest.MonkeyPatch,
    declared: Params,
    current: Params | None,
    previous: Params | None,
) -> None:
    params = task_params(argument_spec(group, monkeypatch), {"name": "rack2", **declared})
    assert_ops_valid(planned(lambda: group.plan(current, previous, params)))


WEB1 = {
    "name": "web1",
    "uuid": "i-uuid",
    "admin_state": "up",
    "disk_template": "plain",
    "os": "herd-image+tiny",
    "hypervisor": "fake",
    "beparams": {"memory": 64, "vcpus": 1},
    "hvparams": {},
    "osparams": {},
    "tags": ["web"],
    "primary_node_name": "n1",
    "secondary_node_names": [],
    "disks": [{"uuid": "d0", "name": "disk0", "size_mib": 64, "mode": "rw", "template": "plain"}],
    "nics": [
        {
            "uuid": "c0",
            "name": "nic0",
            "mac": "aa:00:00:00:00:01",
            "ip": None,
            "mode": "routed",
            "link": "br1",
            "serial": 3,
        }
    ],
}
INSTANCE_STATES = [
    None,
    WEB1,
    {**WEB1, "admin_state": "down"},
    {
        **WEB1,
        "disk_template": "drbd",
        "secondary_node_names": ["n2"],
        "disks": [{**WEB1["disks"][0], "template": "drbd"}],  # type: ignore[index]
    },
]
INSTANCE_OPTIONS = options(
    {
        "state": st.sampled_from(["present", "running", "stopped", "restarted", "absent"]),
        # Templates an existing instance can also convert between: which conversions
        # exist is the master's to say (it refuses the others at submission, by design).
        "disk_template": st.sampled_from(["plain", "drbd"]),
        "disks": st.sampled_from([["64M"], [{"size": "128M"}], ["64M", "1G"]]),
        "nics": st.sampled_from([[{"mode": "routed", "link": "br1"}], [{"link": "br0"}]]),
        "os": st.just("herd-image+tiny"),
        "install": st.booleans(),
        "hypervisor": st.just("fake"),
        "memory": st.integers(16, 4096),
        "vcpus": st.integers(1, 8),
        "tags": st.lists(st.sampled_from(["web", "db"]), unique=True),
        "primary_node": st.sampled_from(["n1", "n3"]),
        "secondary_node": st.sampled_from(["n2", "n3"]),
        "opportunistic": st.booleans(),
        "allow_conversion": st.booleans(),
        "allow_failover": st.booleans(),
        "shutdown_timeout": st.integers(0, 600),
    }
)


@given(declared=INSTANCE_OPTIONS, current=st.sampled_from(INSTANCE_STATES))
def test_instance_ops_pass_the_engines_checks(
    monkeypatch: pytest.MonkeyPatch, declared: Params, current: Params | None
) -> None:
    params = task_params(argument_spec(instance, monkeypatch), {"name": "web1", **declared})
    assert_ops_valid(planned(lambda: instance.plan(current, params)))


@pytest.mark.parametrize(
    "declared",
    [
        {"mode": "on_primary"},
        {"mode": "on_secondary"},
        {"mode": "new_secondary", "new_secondary": "n3"},
    ],
)
def test_replace_disks_op_passes_the_engines_checks(
    monkeypatch: pytest.MonkeyPatch, declared: Params
) -> None:
    spec = argument_spec(instance_replace_disks, monkeypatch)
    assert_ops_valid(
        [instance_replace_disks.replace_op(task_params(spec, {"name": "db1", **declared}))]
    )


TAGGED = {"cluster": CLUSTER, "node": NODE, "group": RACK2, "instance": WEB1}
TAG_OPTIONS = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(sorted(TAGGED)),
        "tags": st.lists(st.sampled_from(["web", "rack1", "new", "t" * 128]), unique=True),
        "state": st.sampled_from(["present", "absent", "exact"]),
    }
)


@given(declared=TAG_OPTIONS)
def test_tag_ops_pass_the_engines_checks(monkeypatch: pytest.MonkeyPatch, declared: Params) -> None:
    current = TAGGED[declared["kind"]]
    params = task_params(argument_spec(tag, monkeypatch), {"name": current["name"], **declared})
    assert_ops_valid(planned(lambda: tag.plan(current, params)))


#: How each module's plan is called for a documented task: against an existing cluster (the
#: examples modify one) and new nodes, groups and instances (the examples create them).
PLAN_EXAMPLE: dict[ModuleType, Callable[[Params], tuple[Ops, Params]]] = {
    cluster: lambda params: cluster.plan({**CLUSTER, "name": params["name"]}, params),
    node: lambda params: node.plan(None, params),
    group: lambda params: group.plan(None, None, params),
    instance: lambda params: instance.plan(None, params),
    tag: lambda params: tag.plan({"name": "c1", "tags": ["old", "ssd"]}, params),
}


@pytest.mark.parametrize("module", list(PLAN_EXAMPLE), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_the_documented_examples_pass_the_engines_checks(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType
) -> None:
    """What the docs tell users to write reaches the engine as something it reads.

    A dict option's keys are the engine's (``diskparams: {drbd: {resync_rate: ...}}``),
    which only the engine's own validation of the op can tell.
    """
    spec = argument_spec(module, monkeypatch)
    fqcn = f"herd.cluster.{module.__name__.rsplit('.', 1)[-1]}"
    examples = [task[fqcn] for task in yaml.safe_load(module.EXAMPLES)]
    assert examples
    for example in examples:
        params = task_params(spec, {k: v for k, v in example.items() if k in spec})
        assert_ops_valid(planned(lambda params=params: PLAN_EXAMPLE[module](params)))
