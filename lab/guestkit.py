"""Shared parts of the busybox guest builders (``build-tiny-guest.py``, ``build-zeroing-image.py``).

Both images are a stock Debian kernel plus a gzipped ``newc`` initramfs holding busybox,
a shell ``/init`` and a few kernel modules, fetched as Debian packages and unpacked
without installing anything on the host.  Only the ``/init`` script and the choice of
modules differ, so the fetching, the cpio writing, the atomic install into the cache
directory and the command line live here once.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

KERNEL_META_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
#: Directories every initramfs has: busybox installs its applets into /bin, /init
#: mounts proc, sysfs and devtmpfs, modules sit in /lib/modules.
BASE_DIRS = ("bin", "dev", "proc", "sys", "lib", "lib/modules")
#: How every ``/init`` starts: busybox applets on PATH and the kernel's filesystems.
INIT_PROLOGUE = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
"""


class CpioWriter:
    """Minimal ``newc`` cpio writer: enough for an initramfs the kernel unpacks.

    Written here rather than calling ``cpio`` so no tool is needed and ``/dev/console``
    can be added without root privileges.
    """

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


def module_dir(root: Path) -> Path:
    """The unpacked kernel's one ``lib/modules/<version>`` directory."""
    (moddir,) = (root / "lib" / "modules").iterdir()
    return moddir


def initramfs(
    root: Path,
    init_script: str,
    modules: Sequence[tuple[str, Path]],
    extra_dirs: Sequence[str] = (),
    extra_files: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """The gzipped initramfs: busybox from ``root``, ``/init`` (``INIT_PROLOGUE`` and then
    ``init_script``), ``modules`` as
    ``lib/modules/<name>.ko``, plus ``extra_dirs`` and ``extra_files`` (name, content)."""
    cpio = CpioWriter()
    for d in (*BASE_DIRS, *extra_dirs):
        cpio.add(d, stat.S_IFDIR | 0o755)
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    cpio.add("bin/busybox", stat.S_IFREG | 0o755, (root / "bin" / "busybox").read_bytes())
    cpio.add("init", stat.S_IFREG | 0o755, (INIT_PROLOGUE + init_script).encode())
    for name, data in extra_files:
        cpio.add(name, stat.S_IFREG | 0o644, data)
    for name, path in modules:
        cpio.add(f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, path.read_bytes())
    return gzip.compress(cpio.finish(), compresslevel=6)


def build(dest: Path, make_initrd: Callable[[Path], bytes], prefix: str) -> None:
    """Fetch kernel and busybox, build the initrd from the unpacked tree with
    ``make_initrd`` and install both into ``dest``.

    Both files are staged next to ``dest`` and renamed into place together, so an
    interrupted build never leaves a kernel without its initrd.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = fetch([kernel_package(), BUSYBOX_PACKAGE], Path(tmp))
        (kernel,) = (root / "boot").glob("vmlinuz-*")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        staging.chmod(0o755)
        try:
            shutil.copyfile(kernel, staging / "vmlinuz")
            (staging / "initrd.img").write_bytes(make_initrd(root))
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def main(
    argv: Sequence[str] | None,
    doc: str,
    default_dir: Path,
    what: str,
    make_initrd: Callable[[Path], bytes],
    report_dir: bool = False,
) -> int:
    """A builder's command line: ``--dir``, ``--force``; prints the image's paths as JSON
    (with the directory itself if ``report_dir``), building only what is missing."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=default_dir, help="cache directory")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    dest: Path = args.dir
    files = {"kernel": str(dest / "vmlinuz"), "initrd": str(dest / "initrd.img")}
    if args.force or not all(Path(p).is_file() for p in files.values()):
        dest.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        build(dest, make_initrd, f"herd-{what.replace(' ', '-')}-")
        print(f"built {what} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(json.dumps({"dir": str(dest), **files} if report_dir else files))
    return 0
