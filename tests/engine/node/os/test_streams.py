"""Export and import through real OS scripts: ours (API 20) and Debian's noop (API 10)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from herd.errors import NodeError, ValidationError
from herd.node.actions.osinstall import os_create
from herd.node.actions.registry import NodeContext
from herd.node.os.streams import export_disk, import_disk
from tests.engine.node.os.helpers import HERD_IMAGE, noop, sparse, spec

__all__ = ["noop"]


@pytest.fixture
def ctx(tmp_path: Path) -> NodeContext:
    root = tmp_path / "root"
    (root / "os").mkdir(parents=True)
    (root / "os" / "herd-image").symlink_to(HERD_IMAGE)
    return NodeContext(root)


def test_a_disk_exported_and_imported_elsewhere_is_the_same_disk(
    ctx: NodeContext, tmp_path: Path
) -> None:
    source = [sparse(tmp_path / "a0"), sparse(tmp_path / "a1", 8)]
    s = spec(disks=2)
    os_create(ctx, s, source)
    image = tmp_path / "image"
    with open(image, "wb") as out:
        result = export_disk(ctx.root, s, source, 0, out)
    assert result.predicted_size == 32 * 1024 * 1024
    assert image.read_bytes() == Path(source[0]).read_bytes()
    assert "web1-export0-" in result.log_path.name
    target = [sparse(tmp_path / "b0"), sparse(tmp_path / "b1", 8)]
    with open(image, "rb") as src:
        import_disk(ctx.root, s, target, 0, src)
    assert Path(target[0]).read_bytes() == Path(source[0]).read_bytes()
    marker = subprocess.run(
        ["debugfs", "-R", "cat /marker", f"{target[0]}?offset=1048576"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "name=web1" in marker


def test_import_never_grows_the_disk(ctx: NodeContext, tmp_path: Path) -> None:
    disk = sparse(tmp_path / "small", 8)
    with pytest.raises(NodeError) as err:
        import_disk(ctx.root, spec(), [disk], 0, io.BytesIO(b"\1" * (9 * 1024 * 1024)))
    assert "larger than the disk" in err.value.details["log_tail"]
    assert os.path.getsize(disk) == 8 * 1024 * 1024


def test_debian_noop_streams_with_the_api_10_variables(
    noop: Path, tmp_path: Path, ctx: NodeContext
) -> None:
    disk = sparse(tmp_path / "d0", 4)
    payload = os.urandom(4 * 1024 * 1024)
    s = spec("noop")
    import_disk(ctx.root, s, [disk], 0, io.BytesIO(payload))
    assert Path(disk).read_bytes() == payload
    out = io.BytesIO()
    result = export_disk(ctx.root, s, [disk], 0, out)
    assert out.getvalue() == payload and result.predicted_size == len(payload)


def test_disk_index_must_exist(ctx: NodeContext, tmp_path: Path) -> None:
    for index in (1, -1, True):
        with pytest.raises(ValidationError) as err:
            export_disk(ctx.root, spec(), [sparse(tmp_path / "d0")], index, io.BytesIO())  # type: ignore[arg-type]
        assert err.value.details["field"] == "index"
