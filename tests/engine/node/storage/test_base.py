"""Disk spec validation and the backend registry."""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.storage.base import DiskSpec, available_templates, backend_for
from herd.node.storage.file import FileStorage

GOOD = {"uuid": "d1", "index": 0, "template": "file", "size_mib": 4}


def test_spec_defaults_and_instance_uuid_from_caller() -> None:
    spec = DiskSpec.from_dict(GOOD, instance_uuid="i1")
    assert (spec.mode, spec.params, spec.instance_uuid) == ("rw", {}, "i1")
    assert DiskSpec.from_dict({**GOOD, "instance_uuid": "i2"}, "i1").instance_uuid == "i2"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"uuid": "../x"}, "disk.uuid"),
        ({"uuid": None}, "disk.uuid"),
        ({"index": -1}, "disk.index"),
        ({"index": True}, "disk.index"),
        ({"size_mib": 0}, "disk.size_mib"),
        ({"size_mib": 1.5}, "disk.size_mib"),
        ({"mode": "wo"}, "disk.mode"),
        ({"params": []}, "disk.params"),
        ({"template": ""}, "disk.template"),
        ({"instance_uuid": "a/b"}, "disk.instance_uuid"),
    ],
)
def test_bad_spec_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        DiskSpec.from_dict({**GOOD, **change})
    assert err.value.details["field"] == field


def test_unknown_template_names_it_and_the_available_ones(tmp_path: Any) -> None:
    assert "file" in available_templates()
    assert isinstance(backend_for("file", NodeContext(tmp_path)), FileStorage)
    with pytest.raises(ValidationError) as err:
        backend_for("zfs", NodeContext(tmp_path))
    assert err.value.details["field"] == "template"
    assert "zfs" in err.value.message and "'file'" in err.value.message
