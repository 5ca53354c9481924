"""The ``file`` disk template: one sparse image file per disk under the node's storage dir.

Files live at ``<root>/file-storage/<instance-uuid>/disk<index>-<disk-uuid>.img`` unless
the disk spec names a ``params["path"]``, which must still resolve inside the storage
dir: a request must not be able to make the node truncate or delete an arbitrary file.

Images are sparse (``ftruncate``), so creating a 100 GiB disk is instant and costs no
space until the guest writes.  The price is that a sparse create never notices a full
filesystem: the guest gets ENOSPC later.  A disk created with ``params["preallocate"]``
reserves its blocks with ``posix_fallocate`` instead, and that is where a full disk is
detected and reported as a NodeError.  New images are built under a temporary name and
renamed into place, so a crash never leaves a half-sized disk under the real name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from herd.errors import ConflictError, NodeError, NotFoundError, ValidationError
from herd.node.actions.files import _fsync_dir
from herd.node.actions.registry import NodeContext
from herd.node.storage.base import DiskSpec, StorageBackend, register_backend

MIB = 1024 * 1024
STORAGE_DIR = "file-storage"
DIR_MODE = 0o750
IMAGE_MODE = 0o600
#: ``disk<index>-<disk uuid>.img``, the name ``path_of`` gives an image.
IMAGE_NAME = re.compile(r"disk(?P<index>\d+)-(?P<uuid>.+)\.img")


@register_backend
class FileStorage(StorageBackend):
    """Sparse files; assemble and shutdown have nothing to activate, only to check."""

    template = "file"

    @property
    def storage_dir(self) -> Path:
        return self.ctx.root / STORAGE_DIR

    def path_of(self, disk: DiskSpec) -> Path:
        """Where the image of ``disk`` lives; refuses any path outside the storage dir."""
        base = self.storage_dir.resolve()
        if "path" in disk.params:
            raw = disk.params["path"]
            if not isinstance(raw, str) or not raw or "\x00" in raw:
                raise ValidationError("disk.params.path", raw, f"a file path under {base}")
            candidate = Path(raw) if Path(raw).is_absolute() else base / raw
        elif disk.instance_uuid is None:
            raise ValidationError(
                "disk.instance_uuid", None, "the owning instance's uuid, or params.path"
            )
        else:
            candidate = base / disk.instance_uuid / f"disk{disk.index}-{disk.uuid}.img"
        target = candidate.parent.resolve() / candidate.name
        for check in (target, target.resolve()):
            if base not in check.parents:
                raise ValidationError("disk.params.path", str(candidate), f"a path under {base}")
        return target

    def create(self, disk: DiskSpec) -> bool:
        path = self.path_of(disk)
        size = self._size_of(path)
        if size is not None:
            if size != disk.size_mib * MIB:
                raise ConflictError(
                    f"disk image {path} exists with {size} bytes, "
                    f"not the requested {disk.size_mib} MiB",
                    path=str(path),
                    size_bytes=size,
                    size_mib=disk.size_mib,
                )
            return False
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.new-{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, IMAGE_MODE)
            try:
                self._resize(fd, path, disk.size_mib, _preallocate(disk))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)
        return True

    def remove(self, disk: DiskSpec) -> bool:
        path = self.path_of(disk)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        if "path" not in disk.params:
            # The per-instance directory goes with its last disk; others may still use it.
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        return True

    def grow(self, disk: DiskSpec, new_size_mib: int) -> bool:
        path = self.path_of(disk)
        size = self._size_of(path)
        if size is None:
            raise NotFoundError(f"disk image {path} does not exist", path=str(path))
        if new_size_mib * MIB < size:
            raise ValidationError(
                "size_mib", new_size_mib, f"at least the current {size // MIB} MiB (never shrink)"
            )
        if new_size_mib * MIB == size:
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            self._resize(fd, path, new_size_mib, _preallocate(disk))
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def assemble(self, disk: DiskSpec) -> dict[str, Any]:
        path = self.path_of(disk)
        size = self._size_of(path)
        if size is None:
            raise NotFoundError(f"disk image {path} does not exist", path=str(path))
        return {"path": str(path), "size_mib": size // MIB}

    def shutdown(self, disk: DiskSpec) -> bool:
        self.path_of(disk)
        return False

    def info(self, disk: DiskSpec) -> dict[str, Any]:
        path = self.path_of(disk)
        try:
            st = path.stat()
        except FileNotFoundError:
            return {"exists": False, "path": str(path), "size_mib": None, "allocated_mib": None}
        return {
            "exists": True,
            "path": str(path),
            "size_mib": st.st_size // MIB,
            "allocated_mib": st.st_blocks * 512 // MIB,
        }

    def space(self) -> dict[str, int]:
        self.storage_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        usage = shutil.disk_usage(self.storage_dir)
        return {"total_mib": usage.total // MIB, "free_mib": usage.free // MIB}

    @staticmethod
    def _size_of(path: Path) -> int | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            raise ConflictError(f"{path} exists and is not a disk image", path=str(path))
        return st.st_size

    @staticmethod
    def _resize(fd: int, path: Path, size_mib: int, preallocate: bool) -> None:
        try:
            if preallocate:
                os.posix_fallocate(fd, 0, size_mib * MIB)
            else:
                os.ftruncate(fd, size_mib * MIB)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise NodeError(
                    f"no space for a {size_mib} MiB disk image at {path}: {exc.strerror}",
                    path=str(path),
                    size_mib=size_mib,
                ) from exc
            raise


def list_images(ctx: NodeContext) -> dict[str, Any]:
    """Every file in this node's storage dir, for ``cluster.verify`` to compare with the
    config: images (``disk_uuid`` parsed from the name) and anything else, such as the
    temporary file of a create that died, since nothing but Herd writes there."""
    base = FileStorage(ctx).storage_dir
    files = []
    for path in sorted(base.rglob("*")) if base.is_dir() else []:
        if path.is_dir():
            continue
        rel = path.relative_to(base)
        match = IMAGE_NAME.fullmatch(path.name)
        files.append(
            {
                "path": str(rel),
                "instance_uuid": rel.parts[0] if len(rel.parts) > 1 else None,
                "disk_uuid": match["uuid"] if match else None,
                "size_mib": path.stat().st_size // MIB,
            }
        )
    return {"storage_dir": str(base), "files": files}


def _preallocate(disk: DiskSpec) -> bool:
    value = disk.params.get("preallocate", False)
    if not isinstance(value, bool):
        raise ValidationError("disk.params.preallocate", value, "true or false")
    return value


def data_extents(path: str | Path) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of every data extent of ``path``, holes skipped.

    Transfers read only these, so copying a mostly empty 100 GiB image moves only what
    was written.  Filesystems without SEEK_DATA report the whole file as one extent.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        offset = 0
        while offset < end:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    return
                if exc.errno == errno.EINVAL:
                    yield offset, end - offset
                    return
                raise
            stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
            yield start, stop - start
            offset = stop
    finally:
        os.close(fd)
