"""The inventory action: every lister's findings in one answer, failures kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from herd.errors import ValidationError
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch
from herd.node.storage import file

load_all()
KINDS = {"files", "lvs", "drbd", "processes", "transfers", "exports", "ports"}


def test_inventory_lists_every_kind_and_changes_nothing(tmp_path: Path) -> None:
    ctx = NodeContext(tmp_path / "node")
    dispatch(ctx, "export_begin", {"token": "tok1"})
    answer = dispatch(ctx, "inventory", {"vgs": ["herd"]})
    assert answer["changed"] is False and answer["errors"] == {}
    assert set(answer) >= KINDS
    assert answer["exports"] == [{"token": "tok1", "path": str(ctx.root / "export" / ".work-tok1")}]
    assert answer["files"] == {"storage_dir": str(ctx.root / "file-storage"), "files": []}
    assert not (ctx.root / "file-storage").exists()


def test_a_failing_lister_is_reported_by_kind_and_hides_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: NodeContext) -> None:
        raise PermissionError("storage dir unreadable")

    monkeypatch.setattr(file, "list_images", broken)
    answer = dispatch(NodeContext(tmp_path), "inventory", {})
    assert answer["errors"] == {"files": "storage dir unreadable"}
    assert "files" not in answer and KINDS - {"files"} <= set(answer)


def test_volume_group_names_are_checked_before_any_command(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        dispatch(NodeContext(tmp_path), "inventory", {"vgs": ["herd", "a b"]})
    assert info.value.details["field"] == "vgs[1]"
