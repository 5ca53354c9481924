from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd.config import KINDS, Cluster, Disk, Instance, Nic, Node, NodeGroup, kind_class
from herd.config.model import SECRET_KEYS
from herd.errors import ValidationError
from herd.redact import REDACTED

from .strategies import objects_of

ALL_CLASSES = [Cluster, NodeGroup, Node, Instance, Disk, Nic]


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_dict_round_trip_through_json(cls: type, data: Any) -> None:
    obj = data.draw(objects_of(cls))
    doc = json.loads(json.dumps(obj.to_dict()))
    assert cls.from_dict(doc) == obj


def test_kinds_name_the_top_level_classes() -> None:
    assert {kind: cls.KIND for kind, cls in KINDS.items()} == {
        "cluster": "cluster",
        "nodegroup": "nodegroup",
        "node": "node",
        "instance": "instance",
    }
    assert kind_class("node") is Node
    with pytest.raises(ValidationError) as err:
        kind_class("vm")
    assert err.value.details["field"] == "kind"


def test_new_objects_are_unstored_with_sensible_defaults() -> None:
    node = Node(name="n1")
    assert (node.serial, node.drained, node.offline, node.vm_capable) == (0, False, False, True)
    assert NodeGroup(name="g").alloc_policy == "preferred"
    cluster = Cluster(name="c")
    assert cluster.drbd_port_range == (11000, 14999)
    assert cluster.allow_cipher_bypassing is False
    assert Instance(name="i").admin_state == "down"
    assert Disk(name="d").mode == "rw"
    assert Node(name="a").uuid != Node(name="b").uuid


def test_defaults_are_not_shared_between_objects() -> None:
    a, b = Cluster(name="a"), Cluster(name="b")
    a.beparams["memory"] = 4096
    a.tags.append("x")
    assert b.beparams["memory"] == 128
    assert b.tags == []


def test_uuid_is_immutable() -> None:
    node = Node(name="n1")
    with pytest.raises(AttributeError):
        node.uuid = "00000000-0000-4000-8000-000000000000"


def test_redacted_dict_marks_the_domain_secret() -> None:
    cluster = Cluster(name="c", domain_secret="s3cret")
    assert cluster.to_dict()["domain_secret"] == "s3cret"
    redacted = cluster.to_dict(redact=True)
    assert redacted["domain_secret"] == REDACTED
    assert "s3cret" not in json.dumps(redacted)


def test_redacted_dict_hides_a_drbd_disk_secret_but_keeps_the_rest() -> None:
    disk = Disk(name="d", params={"port": 11000, "secret": "drbd-s3cret"})
    inst = Instance(name="i", disks=[disk])
    redacted = inst.to_dict(redact=True)
    assert redacted["disks"][0]["params"] == {"port": 11000, "secret": REDACTED}
    assert disk.params["secret"] == "drbd-s3cret"


def test_secret_keys_are_what_the_model_declares() -> None:
    assert {"domain_secret", "secret"} == SECRET_KEYS


def test_to_dict_is_a_deep_copy() -> None:
    inst = Instance(name="i", disks=[Disk(name="d", params={"lv": "x"})])
    doc = inst.to_dict()
    doc["disks"][0]["params"]["lv"] = "y"
    assert inst.disks[0].params == {"lv": "x"}


def _doc(**changes: Any) -> dict[str, Any]:
    inst = Instance(name="web", disks=[Disk(name="d0", size_mib=1024)], nics=[Nic(name="n")])
    doc = inst.to_dict()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (_doc(bogus=1), "bogus"),
        (_doc(name=5), "name"),
        (_doc(serial=True), "serial"),
        (_doc(serial=-1), "serial"),
        (_doc(serial="1"), "serial"),
        (_doc(ctime="now"), "ctime"),
        (_doc(uuid="not-a-uuid"), "uuid"),
        (_doc(tags="a,b"), "tags"),
        (_doc(tags=["a", 1]), "tags[1]"),
        (_doc(admin_state="running"), "admin_state"),
        (_doc(hvparams=[]), "hvparams"),
        (_doc(hvparams={"x": math.nan}), "hvparams.x"),
        (_doc(osparams={"x": object()}), "osparams.x"),
        (_doc(os="\ud800"), "os"),
        (_doc(disks=[{"name": "d"}]), "disks[0].uuid"),
        (_doc(disks=["d0"]), "disks[0]"),
        (_doc(nics=[{**Nic(name="n").to_dict(), "mode": "nat"}]), "nics[0].mode"),
        (_doc(nics=[{**Nic(name="n").to_dict(), "ip": 10}]), "nics[0].ip"),
    ],
)
def test_from_dict_rejects_bad_documents_naming_the_field(doc: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        Instance.from_dict(doc)
    assert err.value.details["field"] == field


def test_from_dict_requires_identity() -> None:
    doc = Node(name="n").to_dict()
    del doc["uuid"]
    with pytest.raises(ValidationError) as err:
        Node.from_dict(doc)
    assert err.value.details["field"] == "uuid"
    with pytest.raises(ValidationError):
        Node.from_dict(["not", "a", "dict"])


def test_from_dict_fills_missing_optional_fields_with_defaults() -> None:
    uuid = "6f1c2a9e-3a52-4b7e-9a3e-0d2a4f9e1b11"
    node = Node.from_dict({"uuid": uuid, "name": "n1", "ctime": 5})
    assert node == Node(uuid=uuid, name="n1", ctime=5.0)
    assert isinstance(node.ctime, float)


def test_port_range_accepts_list_and_rejects_wrong_length() -> None:
    doc = Cluster(name="c").to_dict()
    assert Cluster.from_dict({**doc, "drbd_port_range": [1, 2]}).drbd_port_range == (1, 2)
    with pytest.raises(ValidationError) as err:
        Cluster.from_dict({**doc, "drbd_port_range": [1, 2, 3]})
    assert err.value.details["field"] == "drbd_port_range"


def test_a_retired_field_in_an_old_document_is_dropped_not_refused() -> None:
    """Dumps and stored rows written while ``file_storage_dir`` existed must still load:
    refusing them would make an upgrade unable to read its own config."""
    doc = {**Cluster(name="c").to_dict(), "file_storage_dir": "/srv/herd/file-storage"}
    loaded = Cluster.from_dict(doc)
    assert "file_storage_dir" not in loaded.to_dict()
    assert not hasattr(loaded, "file_storage_dir")


def test_only_the_kind_that_retired_a_field_drops_it() -> None:
    with pytest.raises(ValidationError) as err:
        Node.from_dict({**Node(name="n").to_dict(), "file_storage_dir": "/srv"})
    assert err.value.details["field"] == "file_storage_dir"
    with pytest.raises(ValidationError) as err:
        Cluster.from_dict({**Cluster(name="c").to_dict(), "file_storage_dirs": "/srv"})
    assert err.value.details["field"] == "file_storage_dirs"
