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
