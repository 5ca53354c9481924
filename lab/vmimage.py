"""VM image: the Debian root disk, kernel and initrd that the VM lab's guests boot.

Its own module because building it is a different job from running guests: slow (minutes
of debootstrap), done once per machine and shared by every lab and checkout through a
cache, where the lifecycle in ``vmnodes`` is seconds of qemu, taps and SSH per lab.
``vmnodes`` imports from here, never the other way; the error, the qemu binary name and
the command runner live here because both halves need them.

Image (cached under ``/var/cache/herd-lab/vm-image/<hash>/``, where ``<hash>`` covers the
package list, the mirror, the guest files in ``lab/vm/`` and the code that builds it, so
a changed recipe rebuilds):

* ``debootstrap --variant=minbase bookworm`` with the kernel, sshd, drbd-utils, lvm2 and
  python3; a ``MODULES=list`` initrd holding only what mounts a virtio root; docs,
  locales and unneeded kernel module trees stripped;
* the engine source (``engine/herd``) copied into ``dist-packages`` with a ``herd-node``
  wrapper, and its runtime dependencies as wheels (pip, for the guest's Python); this
  layer has its own hash, so an engine change only re-runs pip and ``mkfs.ext4 -d``
  (seconds), never debootstrap.

Superseded engine layers go once no running qemu has them open; other recipes' images
go once unused for ``STALE_IMAGE_SECONDS`` (other checkouts may still use them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import labkit

LAB_DIR = Path(__file__).resolve().parent
GUEST_FILES = LAB_DIR / "vm"
ENGINE_SOURCE = LAB_DIR.parent / "engine" / "herd"
ENGINE_PROJECT = ENGINE_SOURCE.parent / "pyproject.toml"
IMAGE_CACHE = Path(os.environ.get("HERD_VM_IMAGE_CACHE") or "/var/cache/herd-lab/vm-image")
DEB_CACHE = IMAGE_CACHE.parent / "vm-debs"
SOURCES_DIR = Path("/etc/apt/sources.list.d")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
PACKAGES = (
    "linux-image-amd64",
    "openssh-server",
    "drbd-utils",
    "lvm2",
    "systemd-sysv",
    "ifupdown",
    "iproute2",
    "kmod",
    "udev",
    "procps",
    "iputils-ping",
    "netbase",
    "e2fsprogs",
    "python3",
)
# The engine's runtime dependencies are newer than bookworm's (cryptography>=42): they go
# into the guest's /usr/local dist-packages as wheels for its Python, fetched by pip.
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
INITRD_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic")
# Module trees no lab guest needs (it has virtio devices only); drbd (drivers/block),
# dm-mod (drivers/md), filesystems and crypto stay.
STRIPPED_MODULE_TREES = (
    "drivers/gpu",
    "drivers/media",
    "drivers/net/wireless",
    "drivers/net/ethernet",
    "drivers/infiniband",
    "drivers/staging",
    "drivers/usb",
    "drivers/bluetooth",
    "drivers/iio",
    "drivers/hid",
    "drivers/input",
    "drivers/isdn",
    "drivers/scsi",
    "drivers/mtd",
    "drivers/platform",
    "drivers/hwmon",
    "drivers/mmc",
    "drivers/thunderbolt",
    "drivers/video",
    "sound",
    "net/wireless",
    "net/bluetooth",
    "net/mac80211",
    "fs/nls",
    "fs/ocfs2",
    "fs/xfs",
    "fs/btrfs",
    "fs/f2fs",
)
STRIPPED_DIRS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/zoneinfo/right",
    "var/cache/apt",
    "var/lib/apt/lists",
)
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "drbd.service",
    "lvm2-monitor.service",
    "networking.service",
    "getty@tty1.service",
)
ROOT_SLACK_MIB = 256
STALE_IMAGE_SECONDS = 3 * 86400
QEMU = "qemu-system-x86_64"


class VMLabError(Exception):
    """The VM lab could not be built or inspected; the message says which step failed."""


@dataclass(frozen=True)
class Image:
    """A bootable image: shared read-only root disk plus the kernel and initrd to boot it."""

    root: Path
    kernel: Path
    initrd: Path


def recipe_hash() -> str:
    """Hash of everything that shapes the base root: a change here means a rebuild."""
    digest = hashlib.sha256()
    recipe = {
        "suite": SUITE,
        "mirror": debian_mirror(),
        "packages": PACKAGES,
        "initrd_modules": INITRD_MODULES,
        "stripped_module_trees": STRIPPED_MODULE_TREES,
        "stripped_dirs": STRIPPED_DIRS,
        "masked_units": MASKED_UNITS,
        "code": [inspect.getsource(f) for f in (_debootstrap, _customise_rootfs)],
    }
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    _hash_tree(digest, GUEST_FILES)
    return digest.hexdigest()[:16]


def engine_hash() -> str:
    """Hash of the engine source and its declared dependencies, both installed in the image."""
    digest = hashlib.sha256(ENGINE_PROJECT.read_bytes())
    _hash_tree(digest, ENGINE_SOURCE)
    return digest.hexdigest()[:16]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses, so the build works behind its proxy."""
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        stanzas = path.read_text().split("\n\n")
        for stanza in stanzas:
            fields = _deb822(stanza)
            suites = fields.get("Suites", "").split()
            if SUITE in suites and "main" in fields.get("Components", "").split():
                return fields["URIs"].split()[0]
    return FALLBACK_MIRROR


def build_image(cache: Path = IMAGE_CACHE, log: Path | None = None) -> Image:
    """The cached image for the current recipe and engine, building what is missing.

    The debootstrap root is built into a temporary directory and renamed into place, so
    an interrupted build never leaves a half root that looks finished.
    """
    recipe = recipe_hash()
    base = cache / recipe
    cache.mkdir(parents=True, exist_ok=True)
    with labkit.locked(cache / ".lock"):
        rootfs = base / "rootfs"
        if not rootfs.is_dir():
            # Other checkouts on this machine may use other recipes right now: only
            # images nobody has used for a while go.
            for stale in cache.iterdir():
                if stale.is_dir() and time.time() - stale.stat().st_mtime > STALE_IMAGE_SECONDS:
                    shutil.rmtree(stale, ignore_errors=True)
            base.mkdir(exist_ok=True)
            building = Path(tempfile.mkdtemp(prefix="rootfs-", dir=base))
            building.chmod(0o755)
            logfile = log or base / "build.log"
            _debootstrap(building, logfile)
            _customise_rootfs(building, logfile)
            building.rename(rootfs)
        os.utime(base)
        kernel, initrd = base / "vmlinuz", base / "initrd.img"
        if not kernel.exists() or not initrd.exists():
            shutil.copyfile(_only(rootfs.glob("boot/vmlinuz-*")), kernel)
            shutil.copyfile(_only(rootfs.glob("boot/initrd.img-*")), initrd)
        root = base / f"root-{engine_hash()}.img"
        if not root.exists():
            # Guests of other sessions may still boot from an older engine layer.
            in_use = qemu_cmdlines()
            for old in base.glob("root-*.img"):
                if not any(str(old).encode() in cmdline for cmdline in in_use.values()):
                    old.unlink()
            _install_engine(rootfs)
            _mkfs_root(rootfs, root)
        return Image(root=root, kernel=kernel, initrd=initrd)


@contextlib.contextmanager
def image_in_use(cache: Path = IMAGE_CACHE) -> Iterator[Image]:
    """The current image, kept from deletion (shared cache lock) while guests open it.

    ``build_image`` deletes superseded engine layers under the exclusive lock; between
    its return and qemu opening the file another session could do just that.
    """
    while True:
        image = build_image(cache)
        with open(cache / ".lock") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            if image.root.exists():
                yield image
                return


def _debootstrap(target: Path, log: Path) -> None:
    # MODULES=list before the kernel's postinst runs: its first initrd is already small.
    conf = target / "etc/initramfs-tools/conf.d"
    conf.mkdir(parents=True)
    (conf / "herd.conf").write_text("MODULES=list\n")
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", f"--cache-dir={DEB_CACHE}"]
    argv += [f"--include={','.join(PACKAGES)}", SUITE, str(target), debian_mirror()]
    with open(log, "a") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise VMLabError(f"debootstrap failed ({proc.returncode}); see {log}")


def _customise_rootfs(root: Path, log: Path) -> None:
    """Turn the debootstrap tree into a lab guest: boot identity, sshd, small initrd."""
    (root / "etc/initramfs-tools/modules").write_text("\n".join(INITRD_MODULES) + "\n")
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw,noatime 0 1\n")
    (root / "etc/hostname").write_text("herd-guest\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    shutil.copy(GUEST_FILES / "sshd-herd.conf", root / "etc/ssh/sshd_config.d/herd.conf")
    shutil.copy(GUEST_FILES / "herd-seed", root / "usr/local/sbin/herd-seed")
    shutil.copy(GUEST_FILES / "herd-node", root / "usr/local/bin/herd-node")
    units = root / "etc/systemd/system"
    shutil.copy(GUEST_FILES / "herd-seed.service", units / "herd-seed.service")
    wants = units / "sysinit.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / "herd-seed.service").symlink_to("/etc/systemd/system/herd-seed.service")
    for unit in MASKED_UNITS:
        (units / unit).unlink(missing_ok=True)
        (units / unit).symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")
    for tree in root.glob("lib/modules/*"):
        for sub in STRIPPED_MODULE_TREES:
            shutil.rmtree(tree / "kernel" / sub, ignore_errors=True)
        _chroot(root, log, "depmod", "-a", tree.name)
    _chroot(root, log, "update-initramfs", "-u", "-k", "all")
    for path in STRIPPED_DIRS:
        shutil.rmtree(root / path, ignore_errors=True)
        (root / path).mkdir(exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def _install_engine(rootfs: Path) -> None:
    """Copy the engine source and pip-install its dependencies for the guest's Python."""
    target = rootfs / "usr/lib/python3/dist-packages/herd"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(ENGINE_SOURCE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    version = _only(rootfs.glob("usr/lib/python3.[0-9]*")).name.removeprefix("python")
    site = rootfs / f"usr/local/lib/python{version}/dist-packages"
    shutil.rmtree(site, ignore_errors=True)
    requirements = tomllib.loads(ENGINE_PROJECT.read_text())["project"]["dependencies"]
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-warn-script-location"]
    argv += ["--target", str(site), "--only-binary=:all:", "--python-version", version]
    argv += ["--implementation", "cp"]
    for platform in WHEEL_PLATFORMS:
        argv += ["--platform", platform]
    run([*argv, *requirements])


def _mkfs_root(rootfs: Path, image: Path) -> None:
    """``mkfs.ext4 -d``: the root disk in about a second, with no loop device or mount."""
    used = int(run(["du", "-sm", "--apparent-size", str(rootfs)]).stdout.split()[0])
    tmp = image.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    run(["mkfs.ext4", "-q", "-F", "-L", "herdroot", "-d", str(rootfs), str(tmp),
         f"{used * 3 // 2 + ROOT_SLACK_MIB}M"])  # fmt: skip
    tmp.rename(image)


def _chroot(root: Path, log: Path, *argv: str) -> None:
    with open(log, "a") as out:
        proc = subprocess.run(
            ["chroot", str(root), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
        )
    if proc.returncode != 0:
        raise VMLabError(f"{' '.join(argv)} in the image failed ({proc.returncode}); see {log}")


def _hash_tree(digest: hashlib._Hash, top: Path) -> None:
    for path in sorted(top.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(top)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line and not line.startswith(("#", " ", "\t")) and ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def _only(paths: Iterator[Path]) -> Path:
    found = sorted(paths)
    if len(found) != 1:
        raise VMLabError(f"expected exactly one file, found {[str(p) for p in found]}")
    return found[0]


def image_report(_: object) -> dict[str, str]:
    """What ``vmnodes.py image`` prints: the image's paths and the seconds it took."""
    started = time.monotonic()
    image = build_image()
    report = {k: str(v) for k, v in asdict(image).items()}
    report["seconds"] = str(round(time.monotonic() - started, 1))
    return report


def qemu_cmdlines() -> dict[int, bytes]:
    """Command lines of every running qemu: which guests use which lab and image."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(QEMU.encode()):
                found[int(entry)] = cmdline
    return found


def run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command; with ``check``, a failure is a ``VMLabError`` naming it."""
    return labkit.run(argv, VMLabError, check=check)
