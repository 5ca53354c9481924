#!/usr/bin/env python3
"""Build (once per machine) the zeroing helper image for the cluster setting ``zeroing_image``.

``zero_free_space`` boots a stopped instance once from this image (herd.ops.zeroing): a
stock Debian kernel plus a busybox initramfs, booted directly by the hypervisor, so the
instance needs no extra disk and its configuration is never changed. The image is the
same for every instance: it finds filesystems by trying to mount every virtio disk and
partition, so it does not need to know the instance's layout.

The initramfs ``/init``:

* loads the modules for virtio disks and ext2/3/4 (with everything they depend on,
  read from each module's ``.modinfo``; there is no modprobe inside);
* does nothing but power off unless the command line says ``herd.helper=zero``, so a
  mistaken boot of this image never writes to a disk;
* for each writable ``/dev/vd*`` (whole disks and partitions) that mounts: writes
  ``.herd-zero`` full of zeros until the filesystem is full, syncs, deletes it, syncs,
  unmounts; prints ``HERD-ZERO-FS <dev> <MiB>`` (or ``HERD-ZERO-SKIP <dev>``);
* prints ``HERD-ZERO-DONE`` and powers off (``poweroff -f``), which the engine takes
  as the end of the zeroing.

Kernel, busybox and the cpio writer come from ``guestkit``, shared with
``build-tiny-guest.py`` (nothing is installed on the host). Output (cached; rebuilt only
if missing or with ``--force``): ``vmlinuz`` and ``initrd.img`` in
``$HERD_ZEROING_IMAGE_DIR`` or
``/var/cache/herd-lab/zeroing-image``; point ``zeroing_image`` at that directory on
every node. The script prints the directory and both paths as JSON on stdout.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import guestkit

DEFAULT_DIR = Path(os.environ.get("HERD_ZEROING_IMAGE_DIR") or "/var/cache/herd-lab/zeroing-image")
#: What the helper needs; their dependencies are added from modules.dep. crc32c_generic
#: is asked for through the crypto API (ext4 metadata checksums), which would otherwise
#: call a modprobe the initramfs does not have.
MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
DONE_MARKER = "HERD-ZERO-DONE"

#: After ``guestkit.INIT_PROLOGUE``.
INIT_SCRIPT = """for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
echo HERD-ZERO-START
if ! grep -qw herd.helper=zero /proc/cmdline; then
  echo "HERD-ZERO-NOT-ASKED (no herd.helper=zero on the command line)"
  poweroff -f
fi
n=0
while [ ! -e /sys/class/block/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
mkdir -p /mnt
for path in /sys/class/block/vd*; do
  dev=${path##*/}
  if [ "$(cat $path/ro)" = 1 ]; then echo "HERD-ZERO-SKIP /dev/$dev (read-only)"; continue; fi
  if ! mount /dev/$dev /mnt 2>/dev/null; then echo "HERD-ZERO-SKIP /dev/$dev"; continue; fi
  dd if=/dev/zero of=/mnt/.herd-zero bs=1M 2>/dev/null
  sync
  mib=$(( $(stat -c %s /mnt/.herd-zero) / 1048576 ))
  rm -f /mnt/.herd-zero
  sync
  umount /mnt
  echo "HERD-ZERO-FS /dev/$dev $mib"
done
echo HERD-ZERO-DONE
poweroff -f
"""


def module_depends(data: bytes) -> list[str]:
    """The ``depends=`` entry of a module's ``.modinfo`` (there is no modules.dep: the
    package ships none, depmod writes it at install time)."""
    found = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    return [d for d in found.group(1).decode().split(",") if d] if found else []


def load_order(moddir: Path, wanted: Sequence[str]) -> list[tuple[str, Path]]:
    """``wanted`` and everything they depend on, each after its dependencies."""
    files = {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in files:
            raise SystemExit(f"kernel package lacks module {name}")
        for dep in module_depends(files[name].read_bytes()):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return [(name, files[name]) for name in order]


def build_initramfs(root: Path) -> bytes:
    modules = load_order(guestkit.module_dir(root), MODULES)
    order = "\n".join(m for m, _ in modules).encode()
    extra = [("lib/modules/order", order)]
    return guestkit.initramfs(root, INIT_SCRIPT, modules, extra_dirs=["mnt"], extra_files=extra)


def main(argv: Sequence[str] | None = None) -> int:
    what = "zeroing image"
    return guestkit.main(argv, __doc__, DEFAULT_DIR, what, build_initramfs, report_dir=True)


if __name__ == "__main__":
    sys.exit(main())
