"""group.plan: create, modify by declared keys, declarative rename, remove."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdApiError
from ansible_collections.herd.cluster.plugins.modules.group import plan

RACK2 = {
    "name": "rack2",
    "alloc_policy": "preferred",
    "ndparams": {},
    "diskparams": {"drbd": {"resync_rate": 1024, "metavg": "xenvg"}},
    "hvparams": {},
    "tags": [],
}


def params(**given: Any) -> dict[str, Any]:
    base = dict.fromkeys(
        ("rename_from", "alloc_policy", "ndparams", "diskparams", "hvparams", "tags")
    )
    return {**base, "name": "rack2", "state": "present", **given}


def test_create() -> None:
    ops, diff = plan(None, None, params(alloc_policy="last_resort"))
    assert ops == [{"op": "group.add", "name": "rack2", "alloc_policy": "last_resort"}]
    assert diff["after"] == {"name": "rack2", "alloc_policy": "last_resort"}


def test_modify_sends_merged_params_and_is_then_idempotent() -> None:
    wanted = params(diskparams={"drbd": {"resync_rate": 61440}})
    ops, _ = plan(RACK2, None, wanted)
    merged = {"drbd": {"resync_rate": 61440, "metavg": "xenvg"}}
    assert ops == [{"op": "group.modify", "name": "rack2", "diskparams": merged}]
    assert plan(RACK2 | {"diskparams": merged}, None, wanted) == ([], {})


def test_rename_then_modify_in_one_job() -> None:
    old = RACK2 | {"name": "rack-b"}
    ops, diff = plan(None, old, params(rename_from="rack-b", alloc_policy="unallocable"))
    assert ops == [
        {"op": "group.rename", "name": "rack-b", "new_name": "rack2"},
        {"op": "group.modify", "name": "rack2", "alloc_policy": "unallocable"},
    ]
    assert diff["before"] == {"name": "rack-b", "alloc_policy": "preferred"}


def test_rename_already_done_is_a_no_op() -> None:
    assert plan(RACK2, None, params(rename_from="rack-b")) == ([], {})


def test_rename_with_both_groups_present_is_refused() -> None:
    with pytest.raises(HerdApiError, match="both group rack2 and group rack-b exist"):
        plan(RACK2, RACK2 | {"name": "rack-b"}, params(rename_from="rack-b"))


def test_absent() -> None:
    assert plan(RACK2, None, params(state="absent"))[0] == [{"op": "group.remove", "name": "rack2"}]
    assert plan(None, None, params(state="absent")) == ([], {})
    with pytest.raises(HerdApiError, match="only valid with state=present"):
        plan(RACK2, None, params(state="absent", rename_from="x"))
