"""instance.modify on loopback nodes (real node agent, fake hypervisor, file storage):
what each change does to the config and the node, what is refused before anything
changes, and that a node failing a disk grow leaves the config as it was.

Conversions between plain and drbd need LVM and DRBD: only their refusals are tested
here; the conversions themselves are covered by tests/engine/ops/test_disk_convert.py and
tests/vm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herd.config.model import Disk, Instance
from herd.errors import NodeError, PrerequisiteError, ValidationError
from tests.engine.loopback import OpEnv

MIB = 1024 * 1024


def add(env: OpEnv, name: str = "web1", start: bool = False, **changes: Any) -> None:
    """A file-backed instance on n2 with one 4 MiB disk and one NIC, no OS install."""
    env.run(
        {"op": "instance.add", "name": name, "disk_template": "file", "disks": ["4M"],
         "nics": [{}], "primary_node": "n2", "install": False, "start": start, **changes}
    )  # fmt: skip


def modify(env: OpEnv, **params: Any) -> Any:
    return env.run({"op": "instance.modify", "name": "web1", **params})


def image(env: OpEnv, disk: Disk, index: int = 0) -> Path:
    inst = env.instance("web1")
    return env.node_dir("n2") / "file-storage" / inst.uuid / f"disk{index}-{disk.uuid}.img"


def set_node(env: OpEnv, name: str, **fields: Any) -> None:
    with env.store.transaction() as txn:
        node = txn.get("node", name)
        for key, value in fields.items():
            setattr(node, key, value)
        txn.update(node)


def test_memory_vcpus_tags_and_osparams_are_stored_and_reported(env: OpEnv) -> None:
    add(env)
    result = modify(env, memory=256, vcpus=2, tags=["b", "a"], osparams={"size": 8})
    inst = env.instance("web1")
    assert result["changed"] is True and result["pending_restart"] == []
    assert result["changes"]["memory"]["after"] == 256
    assert result["changes"]["tags"] == {"before": [], "after": ["a", "b"]}
    assert (inst.beparams["memory"], inst.beparams["vcpus"]) == (256, 2)
    # Numbers become the text an OS script receives, as at instance.add.
    assert (sorted(inst.tags), inst.osparams) == (["a", "b"], {"size": "8"})


def test_the_same_values_again_change_nothing(env: OpEnv) -> None:
    add(env)
    modify(env, memory=256, tags=["a"])
    version = env.instance("web1").to_dict()
    assert modify(env, memory=256, tags=["a"]) == {"changed": False, "changes": {}}
    assert env.instance("web1").to_dict() == version


def test_changes_to_a_running_instance_wait_for_its_restart(env: OpEnv) -> None:
    add(env, start=True)
    result = modify(env, memory=128, tags=["x"])
    assert result["pending_restart"] == ["memory"]
    assert env.instance("web1").beparams["memory"] == 128


def test_hvparams_are_set_and_a_null_resets_one(env: OpEnv) -> None:
    add(env)
    modify(env, hvparams={"acpi": False, "heartbeat_interval": 0.5})
    assert env.instance("web1").hvparams == {"acpi": False, "heartbeat_interval": 0.5}
    result = modify(env, hvparams={"acpi": None})
    assert result["changes"] == {"hvparams.acpi": {"before": False, "after": None}}
    assert env.instance("web1").hvparams == {"heartbeat_interval": 0.5}


def test_an_unknown_hvparam_is_refused_at_submit(env: OpEnv) -> None:
    add(env)
    calls = len(env.nodes.calls)
    with pytest.raises(ValidationError, match=r"hvparams\.bogus"):
        modify(env, hvparams={"bogus": 1})
    assert len(env.nodes.calls) == calls


def test_a_parameter_of_another_hypervisor_is_refused_by_the_instances_own(env: OpEnv) -> None:
    """boot_order passes the submit check (kvm has it); the fake instance refuses it."""
    add(env)
    with pytest.raises(ValidationError, match="hypervisor fake does not support") as refused:
        modify(env, hvparams={"boot_order": "disk"})
    assert refused.value.details["field"] == "hvparams.boot_order"
    assert env.instance("web1").hvparams == {}


def test_a_bad_osparam_name_is_refused_naming_it(env: OpEnv) -> None:
    add(env)
    with pytest.raises(ValidationError, match=r"osparams\.bad-name"):
        modify(env, osparams={"bad-name": "x"})
    assert env.instance("web1").osparams == {}


def test_nics_keep_their_mac_get_a_new_one_or_go(env: OpEnv) -> None:
    """An added NIC without a MAC used to be refused: its new MAC counted as in use; and
    removing NIC 0 by index (NIC 1's MAC moving to index 0) was refused the same way."""
    add(env)
    (old,) = env.instance("web1").nics
    modify(env, nics=[{"link": "br1"}, {"name": "second"}])
    first, second = env.instance("web1").nics
    assert (first.uuid, first.mac, first.link) == (old.uuid, old.mac, "br1")
    assert second.mac.startswith("aa:00:00:") and second.mac != old.mac
    assert second.name == "second"
    modify(env, nics=[{"mac": second.mac}])
    (kept,) = env.instance("web1").nics
    assert kept.mac == second.mac


def test_a_mac_asked_for_elsewhere_is_not_kept_twice(env: OpEnv) -> None:
    add(env)
    (old,) = env.instance("web1").nics
    modify(env, nics=[{}, {"mac": old.mac}])
    first, second = env.instance("web1").nics
    assert second.mac == old.mac and first.mac not in (old.mac, "")


def test_a_mac_another_instance_uses_is_refused(env: OpEnv) -> None:
    add(env)
    add(env, name="web2")
    taken = env.instance("web2").nics[0].mac
    with pytest.raises(ValidationError, match=r"nics\[0\]\.mac"):
        modify(env, nics=[{"mac": taken}])
    assert env.instance("web1").nics[0].mac != taken


def test_a_disk_grows_on_its_node_and_in_the_config(env: OpEnv) -> None:
    add(env)
    (disk,) = env.instance("web1").disks
    result = modify(env, disk_grow={"index": 0, "size": "12M"})
    assert result["changes"]["disks[0].size_mib"] == {"before": 4, "after": 12}
    assert env.instance("web1").disks[0].size_mib == 12
    assert image(env, disk).stat().st_size == 12 * MIB
    assert modify(env, disk_grow={"index": 0, "size": 12})["changed"] is False


def test_a_failed_grow_changes_nothing_else_either(env: OpEnv) -> None:
    add(env)
    before = env.instance("web1").to_dict()
    env.nodes.fail("disk_grow", NodeError("no space"), node="n2")
    with pytest.raises(NodeError, match="no space"):
        modify(env, memory=512, disk_grow={"index": 0, "size": "8M"})
    assert env.instance("web1").to_dict() == before
    assert image(env, env.instance("web1").disks[0]).stat().st_size == 4 * MIB


@pytest.mark.parametrize(
    ("grow", "field"),
    [
        ({"index": 1, "size": "8M"}, "disk_grow"),
        ({"index": 0}, "disk_grow"),
        ({"index": True, "size": "8M"}, "disk_grow"),
        ({"index": 0, "size": "2M"}, "disk_grow.size"),
        ({"index": 0, "size": "lots"}, "disk_grow.size"),
    ],
)
def test_a_bad_grow_is_refused_naming_the_field(
    env: OpEnv, grow: dict[str, Any], field: str
) -> None:
    add(env)
    with pytest.raises(ValidationError) as refused:
        modify(env, disk_grow=grow)
    assert refused.value.details["field"] == field
    assert ("n2", "disk_grow") not in env.nodes.calls


def test_growing_on_an_offline_node_is_refused(env: OpEnv) -> None:
    add(env)
    set_node(env, "n2", offline=True)
    with pytest.raises(PrerequisiteError, match="node n2 is offline: cannot grow disks"):
        modify(env, disk_grow={"index": 0, "size": "8M"})
    assert env.instance("web1").disks[0].size_mib == 4


def test_a_file_instance_converts_to_nothing(env: OpEnv) -> None:
    add(env)
    with pytest.raises(ValidationError, match="'file' converts to nothing"):
        modify(env, disk_template="plain")


def plain_web1(env: OpEnv, drbd_enabled: bool = True, **fields: Any) -> None:
    """A stopped plain instance on n2 written straight into the config: the loopback has
    no LVM, and these refusals come before any disk is touched."""
    with env.store.transaction() as txn:
        inst = Instance(
            name="web1",
            hypervisor="fake",
            disk_template="plain",
            primary_node=env.node("n2").uuid,
            disks=[Disk(name="disk0", size_mib=4, template="plain")],
            **fields,
        )
        txn.add(inst)
        if drbd_enabled:
            cluster = txn.list("cluster")[0]
            cluster.enabled_disk_templates = ["file", "plain", "drbd"]
            txn.update(cluster)
    env.locks.register("instance", [inst.uuid])


@pytest.mark.parametrize(
    ("params", "field", "allowed"),
    [
        ({}, "secondary_node", "a node for the mirror"),
        ({"secondary_node": "n2"}, "secondary_node", "a node other than the primary"),
        ({"secondary_node": "n9"}, "secondary_node", "n9"),
        ({"secondary_node": "n1", "disk_grow": {"index": 0, "size": "8M"}}, "disk_grow",
         "nothing during a conversion"),
    ],
)  # fmt: skip
def test_a_conversion_to_drbd_needs_another_node_and_nothing_else(
    env: OpEnv, params: dict[str, Any], field: str, allowed: str
) -> None:
    plain_web1(env)
    with pytest.raises(ValidationError, match=allowed) as refused:
        modify(env, disk_template="drbd", **params)
    assert refused.value.details["field"] == field
    assert env.instance("web1").disk_template == "plain"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"drbd_enabled": False}, "the drbd disk template is not enabled"),
        ({"admin_state": "up"}, "web1 is running: stop it first to convert its disks"),
    ],
)
def test_a_conversion_is_refused_when_the_cluster_or_instance_is_not_ready(
    env: OpEnv, setup: dict[str, Any], reason: str
) -> None:
    plain_web1(env, **setup)
    with pytest.raises(PrerequisiteError, match=reason):
        modify(env, disk_template="drbd", secondary_node="n1")
    assert env.instance("web1").disk_template == "plain"
    assert not [c for c in env.nodes.calls if c[1].startswith(("disk", "drbd"))]


def test_converting_to_the_current_template_is_no_change(env: OpEnv) -> None:
    plain_web1(env)
    assert modify(env, disk_template="plain") == {"changed": False, "changes": {}}


def test_a_secondary_without_a_conversion_is_refused(env: OpEnv) -> None:
    add(env)
    with pytest.raises(ValidationError, match="only with a conversion to drbd") as refused:
        modify(env, secondary_node="n1")
    assert refused.value.details["field"] == "secondary_node"


def test_an_unknown_instance_is_refused_naming_the_known_ones(env: OpEnv) -> None:
    add(env)
    with pytest.raises(ValidationError, match="an existing instance: web1"):
        env.run({"op": "instance.modify", "name": "nosuch", "memory": 128})
