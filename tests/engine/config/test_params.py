from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from herd.config import fill_params

flat = st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=5)


def test_later_levels_override_earlier() -> None:
    filled = fill_params(
        {"memory": 128, "vcpus": 1, "auto_balance": True},
        {"vcpus": 2},
        {"memory": 1024},
    )
    assert filled == {"memory": 1024, "vcpus": 2, "auto_balance": True}


def test_nested_mappings_merge_per_key() -> None:
    cluster = {"kvm": {"kernel_path": "/boot/vmlinuz", "acpi": True}, "fake": {"x": 1}}
    group = {"kvm": {"acpi": False}}
    instance = {"kvm": {"kernel_path": ""}}
    assert fill_params(cluster, group, instance) == {
        "kvm": {"kernel_path": "", "acpi": False},
        "fake": {"x": 1},
    }


def test_missing_levels_are_skipped() -> None:
    assert fill_params(None, {"a": 1}, None) == {"a": 1}
    assert fill_params(None, None, None) == {}


def test_scalar_and_mapping_replace_each_other() -> None:
    assert fill_params({"a": 1}, {"a": {"b": 2}}, None) == {"a": {"b": 2}}
    assert fill_params({"a": {"b": 2}}, {"a": 3}, None) == {"a": 3}


def test_result_shares_nothing_with_inputs() -> None:
    cluster = {"kvm": {"opts": ["a"]}}
    group = {"net": {"mtu": 1500}}
    filled = fill_params(cluster, group, {})
    filled["kvm"]["opts"].append("b")
    filled["net"]["mtu"] = 9000
    assert cluster == {"kvm": {"opts": ["a"]}}
    assert group == {"net": {"mtu": 1500}}


@given(flat, flat, flat)
def test_flat_levels_behave_like_dict_update(a: dict, b: dict, c: dict) -> None:
    assert fill_params(a, b, c) == {**a, **b, **c}
