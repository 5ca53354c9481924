#!/usr/bin/env python3
"""VM nodes: small Debian guests under qemu, for tests that need DRBD and device-mapper.

The host kernel has neither DRBD nor device-mapper, so the namespace lab (``herdlab``)
cannot exercise real replicated or LVM disks.  These guests run a stock Debian kernel
that has both, under software emulation (``-accel tcg``: the host's /dev/kvm hangs a
Debian kernel early in boot).  They are reached over SSH on their own addresses, so the
engine talks to them like any node.

The image they boot (Debian root, kernel, initrd) is built and cached by ``vmimage``;
this module is their lifecycle: boot, reach, break and tear down.

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

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import labkit
from vmimage import (
    LAB_DIR,
    QEMU,
    Image,
    VMLabError,
    image_in_use,
    image_report,
    qemu_cmdlines,
    run,
)

DEFAULT_ROOT = Path(os.environ.get("HERD_VM_ROOT") or LAB_DIR.parent / ".lab" / "vm")
SEED_SIZE_MIB = 8

BRIDGE = "herdvm0"
NETWORK = ipaddress.ip_network("10.78.0.0/16")
GATEWAY_IP = "10.78.0.1"
NODE_IP_OFFSET = 10
MAX_NODES = 16
NAME_RE = labkit.NAME_RE
MEMORY_MIB = 768
DATA_DISK_BYTES = 2 << 30
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


#: Logins tried when one times out before the command starts (see VMNode.ssh).
LOGIN_TRIES = 3


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
        """Run a shell command in the guest as root over SSH, with the host key pinned.

        A login that timed out before the command could start (a software-emulated guest
        starved of CPU on a loaded machine answers its banner late) is tried again: the
        command never ran, so running it then is not running it twice.
        """
        argv = ["ssh", "-i", self.key_path, *SSH_OPTIONS, "-o"]
        argv += [f"UserKnownHostsFile={self.known_hosts}", "-p", str(self.port)]
        for _ in range(LOGIN_TRIES):
            proc = subprocess.run(
                [*argv, f"root@{self.ip}", command],
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
            )
            if proc.returncode != 255 or "during banner exchange" not in proc.stderr:
                break
        if check and proc.returncode != 0:
            raise VMLabError(
                f"{self.name}: {command!r} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def link_down(self) -> None:
        """Cut the guest off the bridge, as a pulled cable would (split-brain tests)."""
        run(["ip", "link", "set", self.tap, "down"])

    def link_up(self) -> None:
        run(["ip", "link", "set", self.tap, "up"])

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
    with image_in_use() as image, labkit.locked(labkit.lock_path(root)):
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
        run(["mkfs.ext4", "-q", "-F", "-L", "herdseed", "-d", str(seed), str(image),
             f"{SEED_SIZE_MIB}M"])  # fmt: skip
        with open(node.data_disk, "wb") as disk:
            disk.truncate(DATA_DISK_BYTES)
    lab.save()


def _ensure_bridge() -> None:
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{GATEWAY_IP}/{NETWORK.prefixlen}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def _remove_bridge() -> None:
    """Delete the bridge once no tap is on it (labs under other roots may still use it)."""
    ports = Path(f"/sys/class/net/{BRIDGE}/brif")
    if ports.is_dir() and not any(ports.iterdir()):
        run(["ip", "link", "del", BRIDGE], check=False)


def _start_guest(lab: VMLab, node: VMNode, image: Image) -> None:
    run(["ip", "link", "del", node.tap], check=False)
    run(["ip", "tuntap", "add", "dev", node.tap, "mode", "tap"])
    run(["ip", "link", "set", node.tap, "master", BRIDGE, "up"])
    # The same addresses come back with new MACs when a lab index is reused.
    run(["ip", "neigh", "del", node.ip, "dev", BRIDGE], check=False)
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
    run(argv)
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
            run(["ip", "link", "del", node.tap], check=False)
    shutil.rmtree(labdir, ignore_errors=True)
    _remove_bridge()


def _qemu_pids_under(labdir: str) -> list[int]:
    needle = (labdir + "/").encode()
    return [pid for pid, cmdline in qemu_cmdlines().items() if needle in cmdline]


def _kill_pid(pid: int) -> None:
    """TERM, then KILL; returns once the process is gone."""
    if labkit.kill_pids([pid], grace=3.0):
        raise VMLabError(f"qemu {pid} survived SIGKILL")


def main(argv: Sequence[str] | None = None) -> int:
    helps = (
        "boot (or reuse) a VM lab",
        "kill a VM lab's guests and remove it",
        "show every VM lab and its guests",
    )
    image = {"image": ("build (or reuse) the cached image and print its paths", image_report)}
    lab = (up, down, status)
    return labkit.cli(
        argv, "vmnodes", __doc__, (DEFAULT_ROOT, "d", 2), VMLabError, helps, lab, image
    )


if __name__ == "__main__":
    sys.exit(main())
