#!/usr/bin/env python3
"""VM nodes: small Debian guests under qemu, for tests that need DRBD and device-mapper.

The host kernel has neither DRBD nor device-mapper, so the namespace lab (``herdlab``)
cannot exercise real replicated or LVM disks.  These guests run a stock Debian kernel
that has both, under software emulation (``-accel tcg``: the host's /dev/kvm hangs a
Debian kernel early in boot).  They are reached over SSH on their own addresses, so the
engine talks to them like any node.

Image (built once per machine, cached under ``/var/cache/herd-lab/vm-image/<hash>/``,
where ``<hash>`` covers the package list, the mirror, the guest files in ``lab/vm/`` and
the code that builds it, so a changed recipe rebuilds):

* ``debootstrap --variant=minbase bookworm`` with the kernel, sshd, drbd-utils, lvm2 and
  python3; a ``MODULES=list`` initrd holding only what mounts a virtio root; docs,
  locales and unneeded kernel module trees stripped;
* the engine source (``engine/herd``) copied into ``dist-packages`` with a ``herd-node``
  wrapper, and its runtime dependencies as wheels (pip, for the guest's Python); this
  layer has its own hash, so an engine change only re-runs pip and ``mkfs.ext4 -d``
  (seconds), never debootstrap.

Guests share the read-only root image (qemu ``snapshot=on``); each gets a sparse data
disk (``/dev/vdb``, for LVM) and a tiny ext4 *seed* disk (``/dev/vdc``) holding the SSH
host key the host generated (so the host pins it before boot) and the lab's authorized
key.  Name, address and gateway travel on the kernel command line; ``herd-seed`` reads
both at boot.

Network: bridge ``herdvm0`` in the root namespace with the host at 10.78.0.1/16; lab
``<name>`` gets block 10.78.<index>.0/24 and guest ``i`` the address 10.78.<index>.<10+i>
behind tap ``tv<index>n<i>``.  The host reaches guests directly, guests reach each other
(DRBD replication) over the bridge; 10.77.0.0/16 stays the namespace lab's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import ipaddress
import json
import os
import shutil
import socket
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
DEFAULT_ROOT = Path(os.environ.get("HERD_VM_ROOT") or LAB_DIR.parent / ".lab" / "vm")
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
SEED_SIZE_MIB = 8

BRIDGE = "herdvm0"
NETWORK = ipaddress.ip_network("10.78.0.0/16")
GATEWAY_IP = "10.78.0.1"
NODE_IP_OFFSET = 10
MAX_NODES = 16
NAME_RE = labkit.NAME_RE
MEMORY_MIB = 768
DATA_DISK_BYTES = 2 << 30
QEMU = "qemu-system-x86_64"
BOOT_TIMEOUT = 600.0
SSH_OPTIONS = (
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "ConnectTimeout=45",
    "-o",
    "LogLevel=ERROR",
)


class VMLabError(Exception):
    """The VM lab could not be built or inspected; the message says which step failed."""


@dataclass
class VMNode:
    """One guest as tests and the engine see it (``key_path``: the authorized key pair)."""

    name: str
    ip: str
    port: int
    host_key: str
    key_path: str
    dir: str
    tap: str
    mac: str
    pid: int | None = None

    known_hosts = labkit.NodeFile("known_hosts")
    console_log = labkit.NodeFile("console.log")
    data_disk = labkit.NodeFile("data.img")

    def alive(self) -> bool:
        """True while this guest's qemu runs."""
        return self.pid is not None and labkit.alive(self.pid)

    def ssh(
        self, command: str, check: bool = True, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the guest as root over SSH, with the host key pinned."""
        argv = ["ssh", "-i", self.key_path, *SSH_OPTIONS, "-o"]
        argv += [f"UserKnownHostsFile={self.known_hosts}", "-p", str(self.port)]
        proc = subprocess.run(
            [*argv, f"root@{self.ip}", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and proc.returncode != 0:
            raise VMLabError(
                f"{self.name}: {command!r} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def link_down(self) -> None:
        """Cut the guest off the bridge, as a pulled cable would (split-brain tests)."""
        _run(["ip", "link", "set", self.tap, "down"])

    def link_up(self) -> None:
        _run(["ip", "link", "set", self.tap, "up"])

    def kill(self) -> None:
        """Stop the guest's qemu at once: the node looks like it lost power."""
        if self.pid is not None:
            _kill_pid(self.pid)


@dataclass
class VMLab(labkit.LabState, node_type=VMNode, error=VMLabError, label="VM lab"):
    """A set of guests sharing one authorized key; what ``state.json`` holds."""

    image: str
    gateway_ip: str = GATEWAY_IP
    boot_seconds: float | None = None


@dataclass(frozen=True)
class Image:
    """A bootable image: shared read-only root disk plus the kernel and initrd to boot it."""

    root: Path
    kernel: Path
    initrd: Path


def missing_requirements() -> str | None:
    """Why VM nodes cannot run here, or None: tests skip with this reason."""
    if os.geteuid() != 0:
        return "VM nodes need root (debootstrap, tap devices, a bridge)"
    for tool in (QEMU, "debootstrap", "mkfs.ext4", "ssh-keygen", "ssh", "ip", "chroot"):
        if shutil.which(tool) is None:
            return f"VM nodes need the '{tool}' command"
    if not os.path.exists("/dev/net/tun"):
        return "VM nodes need /dev/net/tun"
    return None


# ---------------------------------------------------------------- image


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
            in_use = _qemu_cmdlines()
            for old in base.glob("root-*.img"):
                if not any(str(old).encode() in cmdline for cmdline in in_use.values()):
                    old.unlink()
            _install_engine(rootfs)
            _mkfs_root(rootfs, root)
        return Image(root=root, kernel=kernel, initrd=initrd)


@contextlib.contextmanager
def _image_in_use(cache: Path = IMAGE_CACHE) -> Iterator[Image]:
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
    _run([*argv, *requirements])


def _mkfs_root(rootfs: Path, image: Path) -> None:
    """``mkfs.ext4 -d``: the root disk in about a second, with no loop device or mount."""
    used = int(_run(["du", "-sm", "--apparent-size", str(rootfs)]).stdout.split()[0])
    tmp = image.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    _run(["mkfs.ext4", "-q", "-F", "-L", "herdroot", "-d", str(rootfs), str(tmp),
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


# ---------------------------------------------------------------- guests


def up(
    name: str,
    nodes: int = 2,
    root: Path = DEFAULT_ROOT,
    owner_pid: int | None = None,
    boot_timeout: float = BOOT_TIMEOUT,
) -> VMLab:
    """Boot lab ``name`` with ``nodes`` guests and return once all answer SSH.

    A healthy existing lab of that name and size is returned as is; anything else of
    that name is torn down first.  If booting fails, everything started is torn down
    before the error propagates.
    """
    _check_name(name)
    labkit.check_nodes(nodes, MAX_NODES, VMLabError)
    root = Path(root).resolve()
    with _image_in_use() as image, labkit.locked(labkit.lock_path(root)):
        existing = labkit.load_state(VMLab, name, root)
        if existing is not None:
            if _healthy(existing, nodes, image):
                return existing
            _teardown(name, root, existing)
        fields = {"index": _free_index(root), "image": str(image.root), "owner_pid": owner_pid}
        lab = labkit.new_state(VMLab, name, root, nodes, _plan_node, **fields)
        try:
            _make_keys(lab)
            _ensure_bridge()
            started = time.monotonic()
            for node in lab.nodes:
                _start_guest(lab, node, image)
                lab.save()
            _wait_for_ssh(lab, time.monotonic() + boot_timeout)
            lab.boot_seconds = round(time.monotonic() - started, 1)
        except BaseException:
            _teardown(name, root, lab)
            raise
        return labkit.mark_up(lab)


def down(name: str, root: Path = DEFAULT_ROOT) -> None:
    """Kill lab ``name``'s guests and remove its taps and files; a no-op if it is gone."""
    _check_name(name)
    labkit.down_locked(VMLab, name, Path(root).resolve(), _teardown)


def load(name: str, root: Path = DEFAULT_ROOT) -> VMLab:
    """The recorded state of an existing VM lab."""
    return labkit.load_existing(VMLab, name, Path(root).resolve())


def status(root: Path = DEFAULT_ROOT) -> list[dict[str, object]]:
    """Every recorded VM lab with per-guest liveness, for the ``status`` command."""
    fields = ("image", "key_path", "boot_seconds")
    return labkit.summaries(labkit.all_states(VMLab, Path(root).resolve()), fields, _guest_status)


def _guest_status(n: VMNode) -> dict[str, object]:
    return {"name": n.name, "ip": n.ip, "tap": n.tap, "pid": n.pid, "alive": n.alive()}


def reap_orphans(prefix: str, root: Path = DEFAULT_ROOT) -> list[str]:
    """Tear down VM labs named ``prefix…`` whose owner process is gone (killed test runs)."""
    return labkit.reap_orphans(VMLab, prefix, root, down)


def _check_name(name: str) -> None:
    labkit.check_name(name, VMLabError, "VM lab")


def _healthy(lab: VMLab, nodes: int, image: Image) -> bool:
    return (
        lab.status == "up"
        and lab.image == str(image.root)
        and len(lab.nodes) == nodes
        and all(n.alive() for n in lab.nodes)
    )


def _free_index(root: Path) -> int:
    """An index no recorded lab uses and whose taps do not exist (labs of other roots)."""
    taps = {tap.name for tap in Path("/sys/class/net").iterdir()}
    return labkit.free_index(
        VMLab, root, lambda index: any(t.startswith(f"tv{index}n") for t in taps)
    )


def _plan_node(lab: VMLab, i: int) -> VMNode:
    name = f"{lab.name}-n{i}"
    return VMNode(
        name=name,
        ip=str(NETWORK.network_address + lab.index * 256 + NODE_IP_OFFSET + i),
        port=22,
        host_key="",
        key_path=lab.key_path,
        dir=str(Path(lab.dir) / name),
        tap=f"tv{lab.index}n{i}",
        mac=f"52:54:00:78:{lab.index:02x}:{i:02x}",
    )


def _make_keys(lab: VMLab) -> None:
    """The lab key and every guest's host key, in parallel; each guest gets a seed disk."""
    keys = [(lab.key_path, f"herd-vm-{lab.name}")]
    for node in lab.nodes:
        seed = Path(node.dir) / "seed"
        seed.mkdir(parents=True)
        keys.append((str(seed / "ssh_host_ed25519_key"), node.name))
    labkit.make_keys(keys, VMLabError)
    public = Path(lab.key_path + ".pub").read_text()
    for node in lab.nodes:
        seed = Path(node.dir) / "seed"
        (seed / "authorized_keys").write_text(public)
        node.host_key = labkit.public_key_line(seed / "ssh_host_ed25519_key.pub")
        node.known_hosts.write_text(f"{node.ip} {node.host_key}\n")
        image = Path(node.dir) / "seed.img"
        _run(["mkfs.ext4", "-q", "-F", "-L", "herdseed", "-d", str(seed), str(image),
              f"{SEED_SIZE_MIB}M"])  # fmt: skip
        with open(node.data_disk, "wb") as disk:
            disk.truncate(DATA_DISK_BYTES)
    lab.save()


def _ensure_bridge() -> None:
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{GATEWAY_IP}/{NETWORK.prefixlen}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def _remove_bridge() -> None:
    """Delete the bridge once no tap is on it (labs under other roots may still use it)."""
    ports = Path(f"/sys/class/net/{BRIDGE}/brif")
    if ports.is_dir() and not any(ports.iterdir()):
        _run(["ip", "link", "del", BRIDGE], check=False)


def _start_guest(lab: VMLab, node: VMNode, image: Image) -> None:
    _run(["ip", "link", "del", node.tap], check=False)
    _run(["ip", "tuntap", "add", "dev", node.tap, "mode", "tap"])
    _run(["ip", "link", "set", node.tap, "master", BRIDGE, "up"])
    # The same addresses come back with new MACs when a lab index is reused.
    _run(["ip", "neigh", "del", node.ip, "dev", BRIDGE], check=False)
    ndir = Path(node.dir)
    append = (
        "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet systemd.show_status=0 "
        f"herd.name={node.name} herd.ip={node.ip}/{NETWORK.prefixlen} herd.gw={lab.gateway_ip}"
    )
    pidfile = ndir / "qemu.pid"
    argv = [
        QEMU, "-name", node.name, "-accel", "tcg", "-cpu", "max", "-smp", "1",
        "-m", str(MEMORY_MIB), "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
        "-drive", f"file={image.root},format=raw,if=virtio,snapshot=on",
        "-drive", f"file={node.data_disk},format=raw,if=virtio,cache=unsafe",
        "-drive", f"file={ndir / 'seed.img'},format=raw,if=virtio,readonly=on",
        "-netdev", f"tap,id=n0,ifname={node.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={node.mac}",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{node.console_log}",
        "-pidfile", str(pidfile), "-daemonize",
    ]  # fmt: skip
    _run(argv)
    node.pid = int(pidfile.read_text().strip())


def _wait_for_ssh(lab: VMLab, deadline: float) -> None:
    """Poll every guest until a pinned-key SSH login works; fail fast if a qemu dies."""
    pending = list(lab.nodes)
    while pending:
        for node in list(pending):
            if not node.alive():
                raise VMLabError(f"qemu of {node.name} exited{_console_tail(node)}")
            if _banner(node) and node.ssh("true", check=False, timeout=30).returncode == 0:
                pending.remove(node)
        if pending and time.monotonic() > deadline:
            names = ", ".join(n.name for n in pending)
            raise VMLabError(f"no SSH from {names} in time{_console_tail(pending[0])}")
        if pending:
            time.sleep(1.0)


def _banner(node: VMNode) -> bool:
    """True once sshd answers with its banner: a cheap probe before a real login."""
    try:
        with socket.create_connection((node.ip, node.port), timeout=2.0) as sock:
            sock.settimeout(5.0)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _console_tail(node: VMNode) -> str:
    try:
        return "; console: " + node.console_log.read_text(errors="replace")[-1500:].strip()
    except OSError:
        return ""


def _teardown(name: str, root: Path, lab: VMLab | None) -> None:
    """Kill every qemu of lab ``name``, delete its taps and files, then the bridge if unused.

    Guests are also found by their command line (the lab directory), so a guest started
    just before a crash that kept its pid out of the state file still goes away.
    """
    labdir = str(root / name)
    pids = {n.pid for n in lab.nodes if n.pid} if lab else set()
    pids |= set(_qemu_pids_under(labdir))
    for pid in pids:
        _kill_pid(pid)
    if lab:
        for node in lab.nodes:
            _run(["ip", "link", "del", node.tap], check=False)
    shutil.rmtree(labdir, ignore_errors=True)
    _remove_bridge()


def _qemu_pids_under(labdir: str) -> list[int]:
    needle = (labdir + "/").encode()
    return [pid for pid, cmdline in _qemu_cmdlines().items() if needle in cmdline]


def _qemu_cmdlines() -> dict[int, bytes]:
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


def _kill_pid(pid: int) -> None:
    """TERM, then KILL; returns once the process is gone."""
    if labkit.kill_pids([pid], grace=3.0):
        raise VMLabError(f"qemu {pid} survived SIGKILL")


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return labkit.run(argv, VMLabError, check=check)


def _image_report(_: object) -> dict[str, str]:
    started = time.monotonic()
    image = build_image()
    report = {k: str(v) for k, v in asdict(image).items()}
    report["seconds"] = str(round(time.monotonic() - started, 1))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    helps = (
        "boot (or reuse) a VM lab",
        "kill a VM lab's guests and remove it",
        "show every VM lab and its guests",
    )
    image = {"image": ("build (or reuse) the cached image and print its paths", _image_report)}
    lab = (up, down, status)
    return labkit.cli(
        argv, "vmnodes", __doc__, (DEFAULT_ROOT, "d", 2), VMLabError, helps, lab, image
    )


if __name__ == "__main__":
    sys.exit(main())
