"""herd_diff decides idempotency for every module: unset means "don't care", dicts compare
by the declared keys, and applying the computed change must leave nothing to change."""

from __future__ import annotations

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_diff import (
    declared_only,
    diff_fields,
    diff_result,
    merge_declared,
)
from hypothesis import given
from hypothesis import strategies as st

CLUSTER = {
    "name": "c1",
    "candidate_pool_size": 10,
    "hvparams": {"kvm": {"kernel_path": "", "acpi": True}, "fake": {"migration_mode": "live"}},
    "tags": ["a", "b"],
    "enabled_hypervisors": ["kvm", "fake"],
    "drained": False,
}


def test_unset_parameters_are_not_compared() -> None:
    assert diff_fields(CLUSTER, {"candidate_pool_size": None, "hvparams": None}) == {}


def test_scalar_difference_reports_before_and_after() -> None:
    assert diff_fields(CLUSTER, {"candidate_pool_size": 3}) == {"candidate_pool_size": (10, 3)}


def test_nested_dict_compares_declared_keys_only_and_submits_merged_whole() -> None:
    assert diff_fields(CLUSTER, {"hvparams": {"kvm": {"acpi": True}}}) == {}
    changes = diff_fields(CLUSTER, {"hvparams": {"kvm": {"acpi": False}}})
    before, after = changes["hvparams"]
    assert before == CLUSTER["hvparams"]
    assert after == {
        "kvm": {"kernel_path": "", "acpi": False},
        "fake": {"migration_mode": "live"},
    }


def test_none_inside_declared_dict_is_dont_care() -> None:
    assert diff_fields(CLUSTER, {"hvparams": {"kvm": {"acpi": None}}}) == {}


def test_tags_are_unordered_but_other_lists_keep_order() -> None:
    assert diff_fields(CLUSTER, {"tags": ["b", "a"]}) == {}
    assert diff_fields(CLUSTER, {"tags": ["a"]}) == {"tags": (["a", "b"], ["a"])}
    assert diff_fields(CLUSTER, {"enabled_hypervisors": ["fake", "kvm"]}) == {
        "enabled_hypervisors": (["kvm", "fake"], ["fake", "kvm"])
    }


def test_bool_is_not_confused_with_int() -> None:
    assert diff_fields({"drained": 0}, {"drained": False}) == {"drained": (0, False)}
    assert diff_fields(CLUSTER, {"drained": False}) == {}


def test_missing_current_field_is_a_difference() -> None:
    assert diff_fields({}, {"ndparams": {"ssh_port": 22}}) == {"ndparams": (None, {"ssh_port": 22})}


def test_diff_result_is_restricted_to_changes() -> None:
    changes = diff_fields(CLUSTER, {"candidate_pool_size": 3, "tags": ["a", "b"]})
    assert diff_result(changes) == {
        "before": {"candidate_pool_size": 10},
        "after": {"candidate_pool_size": 3},
    }


def test_declared_only_drops_unset_and_foreign_fields() -> None:
    params = {"name": "n", "drained": None, "offline": False, "wait": True}
    assert declared_only(params, ("drained", "offline")) == {"offline": False}


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_value: st.SearchStrategy[Any] = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from("abcd"), inner, max_size=3),
    ),
    max_leaves=8,
)
_objects = st.dictionaries(st.sampled_from(["tags", "x", "y", "z"]), _value, max_size=4)


@given(current=_objects, declared=_objects)
def test_applying_the_change_leaves_nothing_to_change(
    current: dict[str, Any], declared: dict[str, Any]
) -> None:
    """The idempotency promise: after a module submits its change, a rerun is a no-op."""
    after = dict(current)
    for field, (_before, value) in diff_fields(current, declared).items():
        after[field] = value
    assert diff_fields(after, declared) == {}


@given(current=_objects, declared=_objects)
def test_merge_keeps_undeclared_keys(current: dict[str, Any], declared: dict[str, Any]) -> None:
    merged = merge_declared(current, declared)
    for key, value in current.items():
        if declared.get(key) is None:
            assert merged[key] == value
