"""hvparams description and checking, spec checking, the hypervisor registry."""

from __future__ import annotations

from typing import Any

import pytest

from herd.errors import ValidationError
from herd.node.hv.base import check_spec, hypervisor_for
from herd.node.hv.fake import FakeHypervisor
from tests.engine.node.helpers import instance_spec


def test_defaults_fill_in_and_ints_widen_to_float() -> None:
    fake = hypervisor_for("fake")
    assert fake is FakeHypervisor
    filled = fake.fill_hvparams({"heartbeat_interval": 2})
    assert filled == {"acpi": True, "heartbeat_interval": 2.0, "migration_image_mib": 4}
    assert set(filled) == set(fake.PARAMETERS)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kernel_path": "/boot/vmlinuz"}, "hvparams.kernel_path"),
        ({"acpi": 1}, "hvparams.acpi"),
        ({"heartbeat_interval": "fast"}, "hvparams.heartbeat_interval"),
        ({"migration_image_mib": 3}, "hvparams.migration_image_mib"),
        ({"migration_image_mib": True}, "hvparams.migration_image_mib"),
    ],
)
def test_unsupported_or_bad_params_name_parameter_and_hypervisor(
    params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        FakeHypervisor.fill_hvparams(params)
    assert err.value.details["field"] == field
    assert "fake" in err.value.message


def test_unknown_hypervisor_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as err:
        hypervisor_for("xen")
    assert err.value.details["field"] == "hypervisor" and "fake" in err.value.details["allowed"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "bad name"}, "spec.name"),
        ({"hypervisor": "kvm"}, "spec.hypervisor"),
        ({"beparams": {"memory": 0, "vcpus": 1}}, "spec.beparams.memory"),
        ({"beparams": {"memory": 64}}, "spec.beparams.vcpus"),
        ({"disks": {}}, "spec.disks"),
        ({"hvparams": {"vnc": True}}, "spec.hvparams.vnc"),
    ],
)
def test_spec_checks_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_spec({**instance_spec(), **change}, FakeHypervisor)
    assert err.value.details["field"] == field
