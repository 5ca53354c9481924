"""The fake hypervisor's one-off helper boot: real disk images, real zerofree, no mount.

Images are built as herd-image's ``tiny`` variant builds them (DOS label, ext4 at 1 MiB)
plus a whole-disk ext4; a file full of random bytes is written and deleted with debugfs,
so its blocks are free but still hold data until the helper zeroes them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from herd.errors import ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.hv.base import check_boot_override
from herd.node.hv.fake import FakeHypervisor
from tests.engine.harness import poll
from tests.engine.node.helpers import instance_spec

MIB = 2**20
PART_OFFSET = MIB
CMDLINE = "console=ttyS0 herd.helper=zero"
pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "zerofree"], capture_output=True).returncode != 0,
    reason="zerofree is not installed (Debian package zerofree)",
)


def make_fs(image: Path, size_mib: int, partitioned: bool) -> str:
    """An ext4 image; returns its e2fsprogs name (``PATH?offset=N`` when partitioned)."""
    with open(image, "wb") as f:
        f.truncate(size_mib * MIB)
    if not partitioned:
        subprocess.run(["mkfs.ext4", "-F", "-q", str(image)], check=True)
        return str(image)
    subprocess.run(
        ["sfdisk", "-q", str(image)], input="label: dos\nstart=2048, type=83\n", text=True,
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["mkfs.ext4", "-F", "-q", "-E", f"offset={PART_OFFSET}", str(image),
         f"{size_mib - 1}M"],
        check=True,
    )  # fmt: skip
    return f"{image}?offset={PART_OFFSET}"


def write_and_delete(fs: str, tmp: Path, mib: int) -> None:
    """Leave ``mib`` MiB of random data in free blocks, without mounting anything."""
    data = tmp / "random.bin"
    data.write_bytes(os.urandom(mib * MIB))
    for request in (f"write {data} deleted.bin", "rm deleted.bin"):
        subprocess.run(["debugfs", "-w", "-R", request, fs], capture_output=True, check=True)
    data.unlink()


def data_mib(image: Path) -> float:
    """MiB of 64 KiB chunks that are not all zero: what a transfer would have to send."""
    chunk, count = 64 * 1024, 0
    with open(image, "rb") as f:
        while block := f.read(chunk):
            count += block.count(0) != len(block)
    return count * chunk / MIB


def fsck_clean(fs: str) -> bool:
    return subprocess.run(["e2fsck", "-fn", fs], capture_output=True).returncode == 0


def boot_files(tmp: Path) -> dict[str, str]:
    """A helper image as the node sees it: the fake hypervisor checks, never runs, it."""
    image = tmp / "zeroing-image"
    image.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (image / name).write_bytes(b"not run by the fake hypervisor")
    return {
        "kernel": str(image / "vmlinuz"),
        "initrd": str(image / "initrd.img"),
        "cmdline": CMDLINE,
    }


def test_helper_zeroes_free_space_of_every_ext_filesystem_and_powers_off(
    ctx: NodeContext, tmp_path: Path
) -> None:
    images = [tmp_path / f"d{i}.img" for i in range(3)]
    fss = [
        make_fs(images[0], 48, True),
        make_fs(images[1], 32, False),
        make_fs(images[2], 32, True),
    ]
    for fs in fss:
        write_and_delete(fs, tmp_path, 20)
    readonly_before = hashlib.sha256(images[2].read_bytes()).hexdigest()
    assert all(data_mib(image) >= 20 for image in images)
    spec = instance_spec("zero1", disks=3)
    spec["disks"][2]["mode"] = "ro"
    hv = FakeHypervisor(ctx)

    started = hv.start(spec, [str(p) for p in images], boot_files(tmp_path))

    assert started["changed"] is True
    poll("the helper to power off", lambda: hv.info("zero1")["state"] != "running", 60)
    assert all(data_mib(image) < 3 for image in images[:2])
    assert hashlib.sha256(images[2].read_bytes()).hexdigest() == readonly_before
    assert all(fsck_clean(fs) for fs in fss)
    log = (ctx.root / "hv" / "fake" / "zero1.log").read_text()
    assert f"HERD-ZERO-FS {images[0]}?offset={PART_OFFSET}" in log
    assert f"HERD-ZERO-FS {images[1]}?offset=0" in log
    assert str(images[2]) not in log
    assert log.rstrip().endswith("HERD-ZERO-DONE")
    assert hv.stop("zero1", 0.0, force=True) == {"changed": True, "method": "crashed"}
    assert hv.info("zero1") is None


def test_a_disk_without_filesystem_is_skipped_not_written(ctx: NodeContext, tmp_path: Path) -> None:
    image = tmp_path / "raw.img"
    image.write_bytes(os.urandom(4 * MIB))
    before = image.read_bytes()
    hv = FakeHypervisor(ctx)
    hv.start(instance_spec("raw1"), [str(image)], boot_files(tmp_path))
    poll("the helper to power off", lambda: hv.info("raw1")["state"] != "running", 30)
    assert image.read_bytes() == before
    assert "HERD-ZERO-SKIP" in (ctx.root / "hv" / "fake" / "raw1.log").read_text()


def test_override_that_is_no_herd_helper_is_refused(ctx: NodeContext, tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(b"\0" * MIB)
    boot = {**boot_files(tmp_path), "cmdline": "console=ttyS0 root=/dev/vda1"}
    with pytest.raises(ValidationError) as err:
        FakeHypervisor(ctx).start(instance_spec("other1"), [str(image)], boot)
    assert err.value.details["field"] == "boot.cmdline"
    assert FakeHypervisor(ctx).list() == []


def test_boot_override_must_name_existing_files(tmp_path: Path) -> None:
    boot = boot_files(tmp_path)
    assert check_boot_override(boot) == boot
    with pytest.raises(ValidationError) as err:
        check_boot_override({**boot, "initrd": str(tmp_path / "missing")})
    assert err.value.details["field"] == "boot.initrd"
    with pytest.raises(ValidationError) as err:
        check_boot_override({**boot, "extra": "x"})
    assert err.value.details["field"] == "boot"
    with pytest.raises(ValidationError) as err:
        check_boot_override({**boot, "kernel": "vmlinuz"})
    assert err.value.details["field"] == "boot.kernel"
