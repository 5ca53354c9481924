#!/usr/bin/env python3
"""Build (once per machine) the tiny real guest that ``kvm`` hypervisor tests boot.

Tests need a guest that boots in seconds under TCG, says on its serial console that it
is up, keeps printing so a migrated guest can be seen to still run, and powers off when
ACPI asks it to, so a clean shutdown can be told apart from a forced one.  A full Debian
root would take minutes; a stock Debian kernel plus an initramfs holding busybox and a
shell ``/init`` boots in a few seconds and needs no root disk.

Both come from Debian packages fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x``, so nothing is installed on the host (``guestkit``, shared with
``build-zeroing-image.py``).  The initramfs is written as a ``newc`` cpio archive, so no
``cpio`` tool is needed, and it can hold ``/dev/console`` without root privileges.

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

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import guestkit

DEFAULT_DIR = Path(os.environ.get("HERD_TINY_GUEST_DIR") or "/var/cache/herd-lab/tiny-guest")
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

#: After ``guestkit.INIT_PROLOGUE``.
INIT_SCRIPT = f"""for m in {" ".join(MODULES)}; do insmod /lib/modules/$m.ko 2>/dev/null; done
echo {UP_MARKER}
n=0
while true; do
  read presses rest < /sys/firmware/acpi/interrupts/ff_pwr_btn
  if [ "$presses" != 0 ]; then echo {POWEROFF_MARKER}; poweroff -f; fi
  echo "{TICK_MARKER} $n"; n=$((n+1)); sleep 1
done
"""


def build_initramfs(root: Path) -> bytes:
    modules = {p.name.removesuffix(".ko"): p for p in guestkit.module_dir(root).rglob("*.ko")}
    missing = [m for m in MODULES if m not in modules]
    if missing:
        raise SystemExit(f"kernel package lacks modules {missing}")
    return guestkit.initramfs(root, INIT_SCRIPT, [(m, modules[m]) for m in MODULES])


def main(argv: Sequence[str] | None = None) -> int:
    return guestkit.main(argv, __doc__, DEFAULT_DIR, "tiny guest", build_initramfs)


if __name__ == "__main__":
    sys.exit(main())
