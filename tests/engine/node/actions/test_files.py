"""File actions: confinement to the state root, atomic idempotent writes."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.errors import NotFoundError, ValidationError
from herd.node.actions.files import check_files, read_file, remove_file, write_file
from herd.node.actions.registry import NodeContext


@pytest.fixture
def ctx(tmp_path: Path) -> NodeContext:
    return NodeContext(tmp_path / "root")


def test_write_is_idempotent_and_reports_changes(ctx: NodeContext) -> None:
    first = write_file(ctx, "etc/a.conf", "x=1\n", mode=0o600)
    assert first["changed"] is True
    target = ctx.root / "etc" / "a.conf"
    assert target.read_text() == "x=1\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    inode = target.stat().st_ino
    assert write_file(ctx, "etc/a.conf", "x=1\n", mode=0o600)["changed"] is False
    assert target.stat().st_ino == inode
    assert write_file(ctx, "etc/a.conf", "x=1\n", mode=0o640)["changed"] is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert write_file(ctx, str(target), "x=2\n", mode=0o640)["changed"] is True
    assert target.read_text() == "x=2\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.conf"]


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "", "a/..", "a/../../x"])
def test_paths_outside_the_root_are_refused(ctx: NodeContext, path: str) -> None:
    with pytest.raises(ValidationError) as err:
        write_file(ctx, path, "x")
    assert err.value.details["field"] == "path"


def test_symlinks_cannot_escape_the_root(ctx: NodeContext, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx.root.mkdir()
    (ctx.root / "dir-link").symlink_to(outside)
    (ctx.root / "file-link").symlink_to(outside / "secret")
    for path in ("dir-link/x", "file-link"):
        with pytest.raises(ValidationError):
            write_file(ctx, path, "x")
    assert list(outside.iterdir()) == []


def test_read_remove_and_check(ctx: NodeContext) -> None:
    written = write_file(ctx, "f", base64.b64encode(b"\x00\xff").decode(), encoding="base64")
    got = read_file(ctx, "f", encoding="base64")
    assert base64.b64decode(got["content"]) == b"\x00\xff"
    assert got["sha256"] == written["sha256"]
    with pytest.raises(ValidationError) as err:
        read_file(ctx, "f")
    assert err.value.details["field"] == "encoding"
    assert check_files(ctx, ["f", "missing"])["files"] == {
        "f": written["sha256"],
        "missing": None,
    }
    assert remove_file(ctx, "f")["changed"] is True
    assert remove_file(ctx, "f")["changed"] is False
    with pytest.raises(NotFoundError):
        read_file(ctx, "f")


def test_bad_mode_and_base64_name_their_field(ctx: NodeContext) -> None:
    with pytest.raises(ValidationError) as mode:
        write_file(ctx, "f", "x", mode=0o10000)
    assert mode.value.details["field"] == "mode"
    with pytest.raises(ValidationError) as content:
        write_file(ctx, "f", "%%%", encoding="base64")
    assert content.value.details["field"] == "content"
    assert not os.path.exists(ctx.root / "f")


@settings(max_examples=50)
@given(data=st.binary(max_size=4096))
def test_any_bytes_round_trip(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    ctx = NodeContext(tmp_path_factory.mktemp("rt"))
    write_file(ctx, "blob", base64.b64encode(data).decode(), encoding="base64")
    assert base64.b64decode(read_file(ctx, "blob", encoding="base64")["content"]) == data
