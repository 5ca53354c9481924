"""Hypervisor parameter tables as data: the master checks hvparams from them without any
hypervisor's node code, and a node reads the very same tables."""

from __future__ import annotations

import subprocess
import sys

import pytest

from herd import hvparams
from herd.errors import ValidationError
from herd.node.hv.base import hypervisor_for


@pytest.mark.parametrize("name", hvparams.HYPERVISORS)
def test_a_node_hypervisor_reads_the_same_table_as_the_master(name: str) -> None:
    assert hypervisor_for(name).PARAMETERS is hvparams.parameters_of(name)
    assert hypervisor_for(name).fill_hvparams({}) == hvparams.fill_hvparams(name, {})


def test_hypervisors_are_listed_in_enabling_order() -> None:
    assert hvparams.HYPERVISORS == ("kvm", "fake")
    assert all(param.doc for table in hvparams.TABLES.values() for param in table.values())


def test_unknown_hypervisor_names_the_known_ones() -> None:
    with pytest.raises(ValidationError) as err:
        hvparams.fill_hvparams("xen", {})
    assert err.value.details["field"] == "hypervisor"
    assert err.value.details["allowed"] == "one of ['fake', 'kvm']"


def test_unknown_parameter_names_the_parameter_and_the_hypervisor() -> None:
    with pytest.raises(ValidationError) as err:
        hvparams.fill_hvparams("fake", {"kernel_path": "/boot/vmlinuz"}, "ops[0].hvparams")
    assert err.value.details["field"] == "ops[0].hvparams.kernel_path"
    assert "fake" in err.value.message


def test_the_kvm_cross_check_runs_on_the_master_side() -> None:
    with pytest.raises(ValidationError) as err:
        hvparams.fill_hvparams("kvm", {"vnc_bind_address": "0.0.0.0"})
    assert err.value.details["field"] == "hvparams.vnc_bind_address"
    filled = hvparams.fill_hvparams(
        "kvm", {"vnc_bind_address": "0.0.0.0", "vnc_password_file": "/etc/herd/vnc.pw"}
    )
    assert filled["vnc_bind_address"] == "0.0.0.0"


def test_ops_check_hvparams_without_importing_hypervisor_code() -> None:
    """A fresh interpreter, so modules other tests imported do not hide an import."""
    script = (
        "import sys\n"
        "import herd.ops.catalog\n"
        "from herd.ops import levels\n"
        "levels.check_hvparams({'kvm': {'acpi': False}, 'fake': {}}, 'hvparams')\n"
        "print(sorted(m for m in sys.modules if m.startswith('herd.node.hv')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_an_unknown_parameter_is_named_in_full_in_the_message() -> None:
    with pytest.raises(ValidationError) as err:
        hvparams.fill_hvparams("fake", {"kernel_path": "/boot/vmlinuz"}, "ops[0].hvparams")
    assert "'ops[0].hvparams.kernel_path'" in err.value.message


def test_without_a_hypervisor_a_parameter_no_hypervisor_has_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        hvparams.check_for_any_hypervisor({"acpi": True, "vcpu_pinning": "0-3"})
    assert err.value.details["field"] == "hvparams.vcpu_pinning"
    assert err.value.details["value"] == "0-3"
    for name, table in hvparams.TABLES.items():
        assert name in err.value.details["allowed"]
        assert all(key in err.value.details["allowed"] for key in table)


def test_without_a_hypervisor_a_value_is_checked_by_those_having_the_parameter() -> None:
    with pytest.raises(ValidationError) as err:
        hvparams.check_for_any_hypervisor({"acceleration": "warp"}, "ops[0].hvparams")
    assert err.value.details["field"] == "ops[0].hvparams.acceleration"
    assert err.value.details["allowed"] == "one of ['kvm', 'tcg'] (hypervisor kvm)"
    with pytest.raises(ValidationError) as err:
        hvparams.check_for_any_hypervisor({"acpi": "yes"})
    assert err.value.details["field"] == "hvparams.acpi"


def test_without_a_hypervisor_each_parameter_may_be_another_hypervisors() -> None:
    """Which hypervisor the instance gets is decided when the job runs, not here."""
    checked = hvparams.check_for_any_hypervisor(
        {"acceleration": "tcg", "heartbeat_interval": 2, "acpi": False}
    )
    assert checked == {"acceleration": "tcg", "heartbeat_interval": 2.0, "acpi": False}
