#!/usr/bin/env python3
"""Build (once per machine) the tiny real guest that ``kvm`` hypervisor tests boot.

Tests need a guest that boots in seconds under TCG, says on its serial console that it
is up, keeps printing so a migrated guest can be seen to still run, and powers off when
ACPI asks it to, so a clean shutdown can be told apart from a forced one.  A full Debian
root would take minutes; a stock Debian kernel plus an initramfs holding busybox and a
shell ``/init`` boots in a few seconds and needs no root disk.

Both come from Debian packages fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x``, so nothing is installed on the host.  The initramfs is written here as a
``newc`` cpio archive, so no ``cpio`` tool is needed, and it can hold ``/dev/console``
without root privileges.

The guest's ``/init``:

* loads the virtio modules (disks show up as ``/dev/vdX``) and ``button`` (Debian
  builds them as modules; ``button`` keeps the ACPI power button event enabled);
* prints ``HERD-GUEST-UP`` on the console (``console=ttyS0``);
* powers off (printing ``HERD-GUEST-POWEROFF``) once the kernel has counted an ACPI
  power button event.  It polls the kernel's counter rather than reading the input
  device: under TCG the event was counted but never reached an evdev reader;
* prints ``HERD-GUEST-TICK <n>`` every second.

Output (cached; rebuilt only if missing or with ``--force``): ``vmlinuz`` and
``initrd.img`` in ``$HERD_TINY_GUEST_DIR`` or ``/var/cache/herd-lab/tiny-guest``.  The
script prints the two paths as JSON on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("HERD_TINY_GUEST_DIR") or "/var/cache/herd-lab/tiny-guest")
KERNEL_META_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
#: Load order matters: each module only after the ones it depends on.
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "button",
)
UP_MARKER = "HERD-GUEST-UP"
POWEROFF_MARKER = "HERD-GUEST-POWEROFF"
TICK_MARKER = "HERD-GUEST-TICK"

INIT_SCRIPT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {" ".join(MODULES)}; do insmod /lib/modules/$m.ko 2>/dev/null; done
echo {UP_MARKER}
n=0
while true; do
  read presses rest < /sys/firmware/acpi/interrupts/ff_pwr_btn
  if [ "$presses" != 0 ]; then echo {POWEROFF_MARKER}; poweroff -f; fi
  echo "{TICK_MARKER} $n"; n=$((n+1)); sleep 1
done
"""


class CpioWriter:
    """Minimal ``newc`` cpio writer: enough for an initramfs the kernel unpacks."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        self.ino += 1
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self._pad()
        self.out.write(data)
        self._pad()

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))


def kernel_package() -> str:
    """The versioned kernel package the meta package currently points at."""
    out = subprocess.run(
        ["apt-cache", "depends", KERNEL_META_PACKAGE], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["Depends:"] and parts[1].startswith("linux-image-"):
            return parts[1]
    raise SystemExit(f"cannot resolve {KERNEL_META_PACKAGE} to a kernel package:\n{out}")


def fetch(packages: Sequence[str], work: Path) -> Path:
    """Download and unpack the packages into ``work/root``; nothing is installed."""
    subprocess.run(
        ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", *packages],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    root = work / "root"
    for deb in sorted(work.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def build_initramfs(root: Path) -> bytes:
    (moddir,) = (root / "lib" / "modules").iterdir()
    modules = {p.name.removesuffix(".ko"): p for p in moddir.rglob("*.ko")}
    missing = [m for m in MODULES if m not in modules]
    if missing:
        raise SystemExit(f"kernel package lacks modules {missing}")
    cpio = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules"):
        cpio.add(d, stat.S_IFDIR | 0o755)
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    cpio.add("bin/busybox", stat.S_IFREG | 0o755, (root / "bin" / "busybox").read_bytes())
    cpio.add("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode())
    for m in MODULES:
        cpio.add(f"lib/modules/{m}.ko", stat.S_IFREG | 0o644, modules[m].read_bytes())
    return gzip.compress(cpio.finish(), compresslevel=6)


def build(dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="herd-tiny-guest-") as tmp:
        work = Path(tmp)
        root = fetch([kernel_package(), BUSYBOX_PACKAGE], work)
        (kernel,) = (root / "boot").glob("vmlinuz-*")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        staging.chmod(0o755)
        try:
            shutil.copyfile(kernel, staging / "vmlinuz")
            (staging / "initrd.img").write_bytes(build_initramfs(root))
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="cache directory")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    dest: Path = args.dir
    paths = {"kernel": str(dest / "vmlinuz"), "initrd": str(dest / "initrd.img")}
    if args.force or not all(Path(p).is_file() for p in paths.values()):
        dest.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        build(dest)
        print(f"built tiny guest in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(json.dumps(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
