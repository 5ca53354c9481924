"""The sparse-file template on real files, including a really full filesystem."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.errors import ConflictError, NodeError, NotFoundError, ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.storage.base import DiskSpec
from herd.node.storage.file import MIB, FileStorage, data_extents, list_images


def disk(size_mib: int = 8, **params: object) -> DiskSpec:
    return DiskSpec("d1", 0, "file", size_mib, params=dict(params), instance_uuid="i1")


@pytest.fixture
def store(tmp_path: Path) -> FileStorage:
    return FileStorage(NodeContext(tmp_path / "root"))


def test_create_is_sparse_idempotent_and_refuses_a_wrong_size(store: FileStorage) -> None:
    assert store.create(disk()) is True
    path = store.ctx.root / "file-storage" / "i1" / "disk0-d1.img"
    assert path.stat().st_size == 8 * MIB
    assert store.info(disk()) == {
        "exists": True,
        "path": str(path),
        "size_mib": 8,
        "allocated_mib": 0,
    }
    assert store.create(disk()) is False
    with pytest.raises(ConflictError) as err:
        store.create(disk(16))
    assert err.value.details["size_mib"] == 16
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_preallocation_reserves_the_blocks(store: FileStorage) -> None:
    store.create(disk(8, preallocate=True))
    assert store.info(disk())["allocated_mib"] == 8
    with pytest.raises(ValidationError) as err:
        store.create(
            DiskSpec("d2", 1, "file", 1, params={"preallocate": "yes"}, instance_uuid="i1")
        )
    assert err.value.details["field"] == "disk.params.preallocate"


def test_grow_keeps_data_and_never_shrinks(store: FileStorage) -> None:
    store.create(disk(4))
    path = Path(store.assemble(disk())["path"])
    with open(path, "r+b") as f:
        f.write(b"boot sector")
    assert store.grow(disk(), 12) is True
    assert store.grow(disk(), 12) is False
    assert path.stat().st_size == 12 * MIB and path.read_bytes()[:11] == b"boot sector"
    with pytest.raises(ValidationError) as err:
        store.grow(disk(), 8)
    assert err.value.details["field"] == "size_mib"
    assert path.stat().st_size == 12 * MIB


def test_remove_is_idempotent_and_drops_the_instance_dir(store: FileStorage) -> None:
    store.create(disk())
    assert store.remove(disk()) is True
    assert store.remove(disk()) is False
    assert not (store.ctx.root / "file-storage" / "i1").exists()
    assert store.info(disk())["exists"] is False
    with pytest.raises(NotFoundError):
        store.assemble(disk())
    with pytest.raises(NotFoundError):
        store.grow(disk(), 20)


def test_explicit_paths_must_stay_inside_the_storage_dir(
    store: FileStorage, tmp_path: Path
) -> None:
    assert store.create(disk(path="shared/vol.img")) is True
    inside = store.ctx.root / "file-storage" / "shared" / "vol.img"
    assert inside.stat().st_size == 8 * MIB
    assert store.assemble(disk(path=str(inside)))["path"] == str(inside)
    (tmp_path / "outside").mkdir()
    (store.ctx.root / "file-storage" / "link").symlink_to(tmp_path / "outside")
    for bad in ("/etc/passwd", "../escape.img", "link/x.img", "", 5):
        with pytest.raises(ValidationError) as err:
            store.create(disk(path=bad))
        assert err.value.details["field"] == "disk.params.path"
    assert list((tmp_path / "outside").iterdir()) == []
    with pytest.raises(ValidationError) as owner:
        store.create(DiskSpec("d1", 0, "file", 1))
    assert owner.value.details["field"] == "disk.instance_uuid"


def test_assemble_shutdown_and_space(store: FileStorage) -> None:
    store.create(disk())
    assert store.assemble(disk())["size_mib"] == 8
    assert store.shutdown(disk()) is False
    space = store.space()
    assert space["total_mib"] >= space["free_mib"] > 0


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB filesystem (tmpfs with size=), so 'disk full' really happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "herdtest", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_filesystem_is_detected_only_with_preallocation(tiny_fs: Path) -> None:
    store = FileStorage(NodeContext(tiny_fs))
    free_before = store.space()["free_mib"]
    # Sparse creation promises space it does not have: it succeeds (documented).
    assert store.create(disk(64)) is True
    with pytest.raises(NodeError, match="no space") as err:
        store.create(
            DiskSpec("d2", 1, "file", 64, params={"preallocate": True}, instance_uuid="i1")
        )
    assert err.value.details["size_mib"] == 64
    assert sorted(p.name for p in (tiny_fs / "file-storage" / "i1").iterdir()) == ["disk0-d1.img"]
    assert store.space()["free_mib"] == free_before


def test_extents_skip_holes(store: FileStorage) -> None:
    store.create(disk(16))
    path = store.assemble(disk())["path"]
    with open(path, "r+b") as f:
        f.seek(5 * MIB)
        f.write(b"x" * 100)
    extents = list(data_extents(path))
    assert len(extents) == 1
    start, length = extents[0]
    assert start <= 5 * MIB and 5 * MIB + 100 <= start + length <= 6 * MIB
    store.remove(disk())
    store.create(disk(1))
    assert list(data_extents(store.assemble(disk())["path"])) == []


@settings(max_examples=25)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 8 * MIB - 1), st.binary(min_size=1, max_size=9000)), max_size=8
    )
)
def test_extents_rebuild_the_file(
    tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[int, bytes]]
) -> None:
    path = tmp_path_factory.mktemp("ext") / "img"
    with open(path, "wb") as f:
        f.truncate(8 * MIB)
        for offset, data in writes:
            f.seek(offset)
            f.write(data[: 8 * MIB - offset])
    rebuilt = bytearray(8 * MIB)
    with open(path, "rb") as f:
        for offset, length in data_extents(path):
            f.seek(offset)
            rebuilt[offset : offset + length] = f.read(length)
    assert hashlib.sha256(rebuilt).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_list_images_reports_every_file_in_the_storage_dir(ctx: NodeContext) -> None:
    store = FileStorage(ctx)
    assert list_images(ctx) == {"storage_dir": str(store.storage_dir), "files": []}
    store.create(DiskSpec(uuid="d1", index=0, template="file", size_mib=2, instance_uuid="i1"))
    leftover = store.storage_dir / "i1" / ".disk1-d2.img.new-0a1b2c3d"
    leftover.write_bytes(b"")
    assert list_images(ctx)["files"] == [
        {"path": "i1/.disk1-d2.img.new-0a1b2c3d", "instance_uuid": "i1", "disk_uuid": None,
         "size_mib": 0},
        {"path": "i1/disk0-d1.img", "instance_uuid": "i1", "disk_uuid": "d1", "size_mib": 2},
    ]  # fmt: skip
