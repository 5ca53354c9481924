"""herd.ops.instance_common: sizes, disk and NIC lists, MACs, lookups, the spec nodes act
on, and forget_source, the last step of a move (on loopback nodes with file disks)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from herd.config import NodeGroup
from herd.errors import NodeError, PrerequisiteError, ValidationError
from herd.ops.instance_common import (
    MAX_DISK_MIB,
    SIZE_ALLOWED,
    check_disks,
    check_nics,
    config_has_disk,
    forget_source,
    generate_mac,
    get_instance,
    identity,
    instance_nodes,
    instance_spec,
    normalise_disks,
    normalise_nics,
    parse_size,
    undo_disk_create,
    used_macs,
)
from tests.engine.loopback import OpEnv


def add(env: OpEnv, **changes: Any) -> None:
    env.run(
        {"op": "instance.add", "name": "web1", "disk_template": "file", "disks": ["8M", "4M"],
         "nics": [{}], "primary_node": "n2", "install": False, "start": False, **changes}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("value", "mib"),
    [(10, 10), ("512M", 512), ("2G", 2048), ("2gb", 2048), ("10 MiB", 10), ("1.5T", 1572864),
     ("16T", MAX_DISK_MIB)],
)  # fmt: skip
def test_sizes_are_mib_from_numbers_or_text_with_units(value: Any, mib: int) -> None:
    assert parse_size(value, "disks[0].size") == mib


@pytest.mark.parametrize("value", [True, 0, "0", -1, "-1", "lots", "2P", MAX_DISK_MIB + 1, "17T"])
def test_a_bad_size_is_refused_naming_the_field_and_what_is_allowed(value: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_size(value, "disks[0].size")
    assert refused.value.details["field"] == "disks[0].size"
    assert refused.value.details["allowed"] == SIZE_ALLOWED


def test_disks_are_normalised_with_defaults_and_a_null_means_not_given() -> None:
    disks = [8, {"size": "1G", "mode": "ro", "name": "data"}, {"size": "4M", "name": None}]
    assert normalise_disks(disks) == [
        {"size_mib": 8, "mode": "rw", "name": "disk0"},
        {"size_mib": 1024, "mode": "ro", "name": "data"},
        {"size_mib": 4, "mode": "rw", "name": "disk2"},
    ]
    assert check_disks(disks, "disks") is disks


@pytest.mark.parametrize(
    ("disk", "field"),
    [({"size": "4M", "mode": "rx"}, "disks[1].mode"), ({"mode": "rw"}, "disks[1].size")],
)
def test_a_bad_disk_is_refused_naming_its_field(disk: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_disks(["4M", disk], "disks")
    assert refused.value.details["field"] == field


def test_a_nic_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ValidationError, match="a mapping with keys") as refused:
        check_nics(["aa:00:00:00:00:01"], "nics")
    assert refused.value.details["field"] == "nics[0]"


def test_a_mac_given_twice_names_both_nics() -> None:
    mac = "aa:00:00:00:00:01"
    with pytest.raises(ValidationError, match=r"nics\[0\] has it") as refused:
        check_nics([{"mac": mac}, {"mac": mac}], "nics")
    assert refused.value.details["field"] == "nics[1].mac"


def test_nics_take_missing_values_from_the_cluster_defaults() -> None:
    nics = normalise_nics(
        [{}, {"mode": "routed", "link": None}], {"mode": "bridged", "link": "br0"}
    )
    assert nics == [
        {"mac": None, "ip": None, "mode": "bridged", "link": "br0", "name": "nic0"},
        {"mac": None, "ip": None, "mode": "routed", "link": "br0", "name": "nic1"},
    ]


def test_a_generated_mac_is_under_the_prefix_and_not_used_yet() -> None:
    rng = random.Random(1)
    first = generate_mac("aa:00:00", set(), random.Random(1))
    used = {first}
    second = generate_mac("aa:00:00", used, rng)
    assert second.startswith("aa:00:00:") and second != first and second in used
    assert len(second.split(":")) == 6


class _Stuck(random.Random):
    """A generator that only ever offers one MAC: aa:00:00:00:00:00."""

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        return 0


def test_no_free_mac_is_a_prerequisite_error() -> None:
    with pytest.raises(PrerequisiteError, match="no free MAC address left under prefix aa:00:00"):
        generate_mac("aa:00:00", {"aa:00:00:00:00:00"}, _Stuck())
    assert generate_mac("aa:00:00", set(), _Stuck()) == "aa:00:00:00:00:00"


def test_an_unknown_instance_lists_the_known_ones(env: OpEnv) -> None:
    with pytest.raises(ValidationError, match="an existing instance: none"):
        get_instance(env.context(), "web1")
    add(env)
    with pytest.raises(ValidationError, match="an existing instance: web1") as refused:
        get_instance(env.context(), "nosuch", "source")
    assert refused.value.details["field"] == "source"
    assert get_instance(env.context(), "web1").name == "web1"


def test_the_spec_fills_parameters_cluster_then_group_then_instance(env: OpEnv) -> None:
    add(env, hvparams={"acpi": False}, memory=64)
    with env.store.transaction() as txn:
        group = txn.get("nodegroup", env.node("n2").group)
        assert isinstance(group, NodeGroup)
        group.hvparams = {"fake": {"heartbeat_interval": 0.2, "acpi": True}}
        txn.update(group)
    inst = env.instance("web1")
    spec = instance_spec(env.context(), inst)
    assert (spec["name"], spec["uuid"], spec["hypervisor"]) == ("web1", inst.uuid, "fake")
    assert spec["hvparams"]["heartbeat_interval"] == 0.2 and spec["hvparams"]["acpi"] is False
    assert spec["beparams"]["memory"] == 64 and spec["beparams"]["vcpus"] >= 1
    assert [(d["index"], d["size_mib"], d["template"]) for d in spec["disks"]] == [
        (0, 8, "file"),
        (1, 4, "file"),
    ]
    assert [n["mac"] for n in spec["nics"]] == [inst.nics[0].mac]


def test_identity_is_what_instance_add_needs_to_recreate_it(env: OpEnv) -> None:
    add(env, tags=["t"], osparams={"k": "v"}, memory=64, vcpus=2)
    inst = env.instance("web1")
    ident = identity(env.context(), inst)
    assert ident["disks"] == [
        {"size": 8, "mode": "rw", "name": "disk0"},
        {"size": 4, "mode": "rw", "name": "disk1"},
    ]
    assert ident["nics"][0]["mac"] == inst.nics[0].mac
    assert (ident["memory"], ident["vcpus"], ident["tags"], ident["osparams"]) == (
        64,
        2,
        ["t"],
        {"k": "v"},
    )
    assert (ident["os"], ident["hypervisor"]) == (None, "fake")


def test_instance_nodes_and_used_macs(env: OpEnv) -> None:
    add(env)
    inst = env.instance("web1")
    inst.secondary_nodes = [env.node("n1").uuid]
    assert instance_nodes(inst) == [env.node("n2").uuid, env.node("n1").uuid]
    assert used_macs([inst]) == {inst.nics[0].mac}


def test_config_has_disk_only_for_a_stored_disk_on_that_node(env: OpEnv) -> None:
    add(env)
    inst = env.instance("web1")
    disk, n1, n2 = inst.disks[0], env.node("n1").uuid, env.node("n2").uuid
    ctx = env.context()
    assert config_has_disk(ctx, inst.uuid, disk.uuid, n2)
    assert not config_has_disk(ctx, inst.uuid, disk.uuid, n1)
    assert not config_has_disk(ctx, inst.uuid, "no-such-disk", n2)
    assert not config_has_disk(ctx, "no-such-instance", disk.uuid, n2)


def test_undo_disk_create_records_the_removal_before_the_create(env: OpEnv) -> None:
    ctx = env.context()
    disk = {"uuid": "d1", "index": 0, "template": "file", "instance_uuid": "i1"}
    undo_disk_create(ctx, "remove disk 0 on n2", env.node("n2"), disk)
    ((_, step),) = ctx.journal.pending()
    assert (step.kind, step.what, step.args["disk"]) == ("disk.remove", "remove disk 0 on n2", disk)
    assert step.args["node"]["name"] == "n2"


def test_forget_source_removes_the_disks_the_entry_and_the_lock(env: OpEnv) -> None:
    add(env)
    inst = env.instance("web1")
    assert inst.uuid in [row["name"] for row in env.locks.info()]
    forget_source(env.context(), inst)
    assert env.store.list("instance") == []
    assert [f for f in env.files("n2") if f.endswith(".img")] == []
    assert inst.uuid not in [row["name"] for row in env.locks.info()]


def test_forget_source_leaves_a_disk_it_cannot_remove_with_a_warning(env: OpEnv) -> None:
    add(env)
    inst = env.instance("web1")
    env.nodes.fail("disk_remove", NodeError("busy"), node="n2")
    logged: list[tuple[str, str]] = []
    ctx = env.context()
    ctx.log_fn = lambda message, kind, data: logged.append((kind, message))
    forget_source(ctx, inst)
    assert env.store.list("instance") == []
    assert len([f for f in env.files("n2") if f.endswith(".img")]) == 2
    warnings = [m for k, m in logged if k == "warning"]
    assert len(warnings) == 2 and warnings[0].startswith("could not remove disk 0 on n2")
