"""Disk actions through the registry: validation, results and idempotent replays."""

from __future__ import annotations

import pytest

from herd.errors import ValidationError
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch

load_all()

DISK = {"uuid": "d1", "index": 0, "template": "file", "size_mib": 8, "instance_uuid": "i1"}


def test_disk_lifecycle_reports_changes_and_info(ctx: NodeContext) -> None:
    created = dispatch(ctx, "disk_create", {"disk": DISK})
    path = ctx.root / "file-storage" / "i1" / "disk0-d1.img"
    assert created == {
        "changed": True,
        "exists": True,
        "path": str(path),
        "size_mib": 8,
        "allocated_mib": 0,
    }
    assert dispatch(ctx, "disk_create", {"disk": DISK})["changed"] is False
    grown = dispatch(ctx, "disk_grow", {"disk": DISK, "size_mib": 20})
    assert grown["changed"] is True and path.stat().st_size == 20 * 1024 * 1024
    assert dispatch(ctx, "disk_grow", {"disk": DISK, "size_mib": 20})["changed"] is False
    assembled = dispatch(ctx, "disk_assemble", {"disk": DISK})
    assert assembled["path"] == str(path) and assembled["size_mib"] == 20
    assert dispatch(ctx, "disk_shutdown", {"disk": DISK})["changed"] is False
    assert dispatch(ctx, "disk_info", {"disk": DISK})["exists"] is True
    assert dispatch(ctx, "disk_remove", {"disk": DISK})["changed"] is True
    assert dispatch(ctx, "disk_remove", {"disk": DISK}) == {
        "changed": False,
        "exists": False,
        "path": str(path),
        "size_mib": None,
        "allocated_mib": None,
    }


def test_space_and_unknown_templates(ctx: NodeContext) -> None:
    space = dispatch(ctx, "storage_space", {"template": "file"})
    assert space["template"] == "file" and space["total_mib"] >= space["free_mib"] > 0
    for action, args in (
        ("storage_space", {"template": "drbd9"}),
        ("disk_create", {"disk": {**DISK, "template": "drbd9"}}),
    ):
        with pytest.raises(ValidationError) as err:
            dispatch(ctx, action, args)
        assert err.value.details["field"] == "template" and "file" in err.value.message


def test_bad_disk_fields_are_named(ctx: NodeContext) -> None:
    with pytest.raises(ValidationError) as err:
        dispatch(ctx, "disk_create", {"disk": {**DISK, "size_mib": -1}})
    assert err.value.details["field"] == "disk.size_mib"
    with pytest.raises(ValidationError) as typed:
        dispatch(ctx, "disk_grow", {"disk": DISK, "size_mib": "20"})
    assert typed.value.details["field"] == "size_mib"
