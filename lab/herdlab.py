#!/usr/bin/env python3
"""Lab builder: Herd nodes as Linux network namespaces, each with its own sshd.

Tests and the demo need several real hosts that the engine reaches over real SSH.  Full
VMs take minutes to boot; a network namespace with its own sshd, address, host key,
hostname and state directory comes up in milliseconds and is a real SSH peer.  Nodes
share the host filesystem, so the engine installed here (``herd-node``) runs on them.

Layout (all names derive from the lab name, so ``down`` can always find them again):

* one shared *fabric* namespace ``herdlab-fabric`` holding bridge ``br0``; the host root
  namespace joins it through veth ``herdlab0`` with the controller address 10.77.0.1/16,
  so a master running in the host namespace reaches every node;
* lab ``<name>`` gets block 10.77.<index>.0/24 (index unique per lab); node ``i`` is
  namespace ``hl-<name>-n<i>`` with ``eth0`` = 10.77.<index>.<10+i>/16.  All labs sit on
  the one bridge with a /16 prefix, so two labs (two clusters) reach each other directly,
  as clusters that move instances between them must;
* every node has its own bridge ``br0`` (no uplink: guests on one node reach each other
  only), the bridge a cluster's NICs attach to by default, as on a real node, and
  ``/dev/net/tun`` gets the mode udev gives it there, so the unprivileged qemu can use
  its tap;
* inside each node's private mount namespace: a tmpfs on /run (sshd's privsep dir), the
  node's own data directory bind-mounted on /var/lib/herd-node, and a passwd copy whose
  root home is the node's own empty home (no heavy ~/.bashrc on every exec) and which
  holds the qemu user (``herd-qemu``, created on the host first).

Everything is recorded in ``<root>/<name>/state.json`` (root: ``$HERD_LAB_ROOT`` or the
repository's ``.lab/``); the root must not live under /run, which nodes mount over.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import labkit

DEFAULT_ROOT = Path(
    os.environ.get("HERD_LAB_ROOT") or Path(__file__).resolve().parent.parent / ".lab"
)
SSHD = "/usr/sbin/sshd"
FABRIC_NS = "herdlab-fabric"
BRIDGE = "br0"
HOST_VETH = "herdlab0"
FABRIC_HOST_PORT = "host"
#: The bridge inside every node: the engine's default ``nicparams.link``, so an instance
#: with a NIC starts on the lab with the cluster defaults, as on a real node.
NODE_BRIDGE = "br0"
#: Opened by each kvm guest with a NIC, as the unprivileged qemu user.
TUN_DEVICE = "/dev/net/tun"
#: Builds (once per machine) the kernel and initrd the lab's kvm instances boot.
TINY_GUEST_BUILDER = Path(__file__).resolve().parent / "build-tiny-guest.py"
NETWORK = ipaddress.ip_network("10.77.0.0/16")
CONTROLLER_IP = "10.77.0.1"
NODE_STATE_PATH = "/var/lib/herd-node"
NODE_IP_OFFSET = 10
MAX_NODES = 200
NAME_RE = labkit.NAME_RE
SSHD_START_TIMEOUT = 10.0
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LabError(Exception):
    """The lab could not be built or inspected; the message says which step failed."""


@dataclass
class LabNode:
    """One lab node as tests and the engine see it (``key_path``: the authorized key pair)."""

    name: str
    netns: str
    ip: str
    port: int
    host_key: str
    dir: str
    bridge_port: str
    key_path: str

    #: Host path of what the node sees at /var/lib/herd-node (tests inspect it directly).
    state_dir = labkit.NodeFile("data")
    pid_file = labkit.NodeFile("sshd.pid")

    def sshd_pid(self) -> int | None:
        """Pid of the node's sshd listener if it runs, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if labkit.alive(pid) else None

    def exec(
        self, *argv: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the node's network namespace (failure injection, inspection).

        It runs in a fresh mount namespace, not sshd's, so it sees the host's /var/lib.
        """
        return _run(["ip", "netns", "exec", self.netns, *argv], check=check, input=input)

    def link_down(self) -> None:
        """Cut the node off the bridge, as a pulled cable would."""
        _run(["ip", "-n", FABRIC_NS, "link", "set", self.bridge_port, "down"])

    def link_up(self) -> None:
        _run(["ip", "-n", FABRIC_NS, "link", "set", self.bridge_port, "up"])

    def kill_sshd(self) -> None:
        """Stop the node's sshd and every session it spawned: the node looks dead."""
        _kill_netns_processes(self.netns)


@dataclass
class Lab(labkit.LabState, node_type=LabNode, error=LabError, label="lab"):
    """A set of lab nodes sharing one cluster key; what ``state.json`` holds."""

    controller_ip: str = CONTROLLER_IP

    @property
    def public_key(self) -> str:
        return Path(self.key_path + ".pub").read_text().strip()


def missing_requirements() -> str | None:
    """Why the lab cannot run here, or None: tests skip with this reason."""
    if os.geteuid() != 0:
        return "lab needs root (network namespaces, mounts)"
    for tool in ("ip", "ssh-keygen", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"lab needs the '{tool}' command"
    if not os.access(SSHD, os.X_OK):
        return f"lab needs openssh-server ({SSHD})"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"'ip netns' unavailable: {probe.stderr.strip()}"
    return None


def up(
    name: str,
    nodes: int = 3,
    root: Path = DEFAULT_ROOT,
    sshd: str = SSHD,
    owner_pid: int | None = None,
) -> Lab:
    """Build lab ``name`` with ``nodes`` nodes; a healthy existing lab is returned as is.

    A partial or differently sized lab of that name is torn down and rebuilt, so ``up``
    can be repeated after any failure.  On failure the state is kept for ``down``.
    """
    _check_name(name)
    labkit.check_nodes(nodes, MAX_NODES, LabError)
    root = _check_root(root)
    with labkit.locked(labkit.lock_path(root)):
        existing = labkit.load_state(Lab, name, root)
        if existing is not None:
            if _healthy(existing, nodes):
                return existing
            _teardown(existing.name, root, existing)
        _ensure_fabric()
        _open_tun_device()
        ports = _fabric_ports()
        index = labkit.free_index(Lab, root, lambda i: any(p.startswith(f"v{i}n") for p in ports))
        lab = labkit.new_state(Lab, name, root, nodes, _plan_node, index=index, owner_pid=owner_pid)
        _forget_neighbours(lab.index)
        _make_keys(lab)
        for node in lab.nodes:
            _build_node_network(lab, node)
        _start_sshds(lab, sshd)
        return labkit.mark_up(lab)


def down(name: str, root: Path = DEFAULT_ROOT) -> None:
    """Remove lab ``name`` completely; a no-op if nothing of it exists."""
    _check_name(name)
    labkit.down_locked(Lab, name, _check_root(root), _teardown)


def load(name: str, root: Path = DEFAULT_ROOT) -> Lab:
    """The recorded state of an existing lab."""
    return labkit.load_existing(Lab, name, _check_root(root))


def status(root: Path = DEFAULT_ROOT) -> list[dict[str, object]]:
    """Every recorded lab with per-node liveness, for the ``status`` command."""
    labs = labkit.all_states(Lab, _check_root(root))
    return labkit.summaries(labs, ("controller_ip", "key_path"), _node_status)


def _node_status(n: LabNode) -> dict[str, object]:
    return {"name": n.name, "ip": n.ip, "port": n.port, "sshd_pid": n.sshd_pid()}


def reap_orphans(prefix: str, root: Path = DEFAULT_ROOT) -> list[str]:
    """Tear down labs named ``prefix…`` whose owner process is gone (killed test runs)."""
    return labkit.reap_orphans(Lab, prefix, _check_root(root), down)


def namespaces() -> list[str]:
    """Names of all network namespaces on the host (for leak checks)."""
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _check_name(name: str) -> None:
    labkit.check_name(name, LabError, "lab")


def _check_root(root: Path) -> Path:
    root = Path(root).resolve()
    if root == Path("/run") or Path("/run") in root.parents:
        raise LabError(f"lab root {root} is under /run, which every node mounts a tmpfs over")
    return root


def _healthy(lab: Lab, nodes: int) -> bool:
    present = set(namespaces())
    return (
        lab.status == "up"
        and len(lab.nodes) == nodes
        and all(n.netns in present and n.sshd_pid() is not None for n in lab.nodes)
    )


def _plan_node(lab: Lab, i: int) -> LabNode:
    name = f"{lab.name}-n{i}"
    return LabNode(
        name=name,
        netns=f"hl-{name}",
        ip=str(NETWORK.network_address + lab.index * 256 + NODE_IP_OFFSET + i),
        port=22,
        host_key="",
        dir=str(Path(lab.dir) / name),
        bridge_port=f"v{lab.index}n{i}",
        key_path=lab.key_path,
    )


def _ensure_fabric() -> None:
    if FABRIC_NS in namespaces():
        return
    _run(["ip", "netns", "add", FABRIC_NS])
    fab = ["ip", "-n", FABRIC_NS]
    _run([*fab, "link", "set", "lo", "up"])
    _run([*fab, "link", "add", BRIDGE, "type", "bridge"])
    _run([*fab, "link", "set", BRIDGE, "up"])
    _run(["ip", "link", "del", HOST_VETH], check=False)
    peer = ["peer", "name", FABRIC_HOST_PORT, "netns", FABRIC_NS]
    _run(["ip", "link", "add", HOST_VETH, "type", "veth", *peer])
    _run([*fab, "link", "set", FABRIC_HOST_PORT, "master", BRIDGE, "up"])
    _run(["ip", "addr", "add", f"{CONTROLLER_IP}/{NETWORK.prefixlen}", "dev", HOST_VETH])
    _run(["ip", "link", "set", HOST_VETH, "up"])


def _open_tun_device() -> None:
    """Give ``/dev/net/tun`` the mode udev gives it on every Debian node (0666).

    kvm's qemu runs as the unprivileged ``herd-qemu`` and opens its tap by name, which
    needs the device open to all; a host without udev (a container) keeps the kernel's
    0600 and every instance with a NIC fails to start.  Who may use a tap is still
    decided per tap, by its owner, which kvm sets to ``herd-qemu``.
    """
    tun = Path(TUN_DEVICE)
    if tun.exists() and tun.stat().st_mode & 0o666 != 0o666:
        tun.chmod(0o666)


def _forget_neighbours(index: int) -> None:
    """Drop ARP entries left by an earlier lab with this index.

    Its addresses come back with new MAC addresses; a stale entry would blackhole the
    first seconds of traffic to a fresh node.
    """
    block = f"{NETWORK.network_address + index * 256}/24"
    _run(["ip", "neigh", "flush", "to", block], check=False)
    for ns in namespaces():
        if ns.startswith("hl-"):
            _run(["ip", "-n", ns, "neigh", "flush", "to", block], check=False)


def _fabric_ports() -> set[str]:
    """Node ports on the shared bridge, whichever checkout's lab owns them: labs of other
    state roots share the fabric, so its real links (not our state files) say what is
    taken and whether the fabric is still in use."""
    if FABRIC_NS not in namespaces():
        return set()
    out = _run(["ip", "-n", FABRIC_NS, "-o", "link", "show"], check=False).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}
    return names - {"lo", BRIDGE, FABRIC_HOST_PORT}


def _remove_fabric() -> None:
    if FABRIC_NS in namespaces():
        _kill_netns_processes(FABRIC_NS)
        _run(["ip", "netns", "del", FABRIC_NS])
    _run(["ip", "link", "del", HOST_VETH], check=False)


def _make_keys(lab: Lab) -> None:
    """The cluster key and every host key; each node gets its data and home directory."""
    keys = [(lab.key_path, f"herd-lab-{lab.name}")]
    for node in lab.nodes:
        Path(node.dir, "data").mkdir(parents=True)
        Path(node.dir, "home").mkdir()
        keys.append((str(Path(node.dir, "ssh_host_ed25519_key")), node.name))
    labkit.make_keys(keys, LabError)
    for node in lab.nodes:
        node.host_key = labkit.public_key_line(Path(node.dir, "ssh_host_ed25519_key.pub"))
    lab.save()


def _build_node_network(lab: Lab, node: LabNode) -> None:
    _run(["ip", "netns", "add", node.netns])
    peer = ["peer", "name", node.bridge_port, "netns", FABRIC_NS]
    _run(["ip", "link", "add", "eth0", "netns", node.netns, "type", "veth", *peer])
    _run(["ip", "-n", FABRIC_NS, "link", "set", node.bridge_port, "master", BRIDGE, "up"])
    ns = ["ip", "-n", node.netns]
    _run([*ns, "addr", "add", f"{node.ip}/{NETWORK.prefixlen}", "dev", "eth0"])
    _run([*ns, "link", "set", "lo", "up"])
    _run([*ns, "link", "set", "eth0", "up"])
    _run([*ns, "link", "add", NODE_BRIDGE, "type", "bridge"])
    _run([*ns, "link", "set", NODE_BRIDGE, "up"])


def _sshd_config(lab: Lab, node: LabNode) -> str:
    # herd-node must be found on PATH in sessions; SetEnv overrides sshd's default PATH.
    path = sysconfig.get_path("scripts") + ":" + SYSTEM_PATH
    return f"""\
ListenAddress {node.ip}:{node.port}
HostKey {node.dir}/ssh_host_ed25519_key
PidFile {node.pid_file}
AuthorizedKeysFile .ssh/authorized_keys {node.dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 200:30:400
MaxSessions 100
PrintMotd no
PrintLastLog no
X11Forwarding no
SetEnv PATH={path} HERD_NODE_ROOT={NODE_STATE_PATH}
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def _passwd_with_home(home: str) -> str:
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "root" and len(fields) == 7:
            fields[5] = home
        lines.append(":".join(fields))
    return "\n".join(lines) + "\n"


def restart_sshd(lab: Lab, node: LabNode, sshd: str = SSHD) -> None:
    """Start a node's sshd again after a test killed it (``LabNode.kill_sshd``)."""
    _start_sshds(lab, sshd, [node])


def _start_sshds(lab: Lab, sshd: str, nodes: Sequence[LabNode] = ()) -> None:
    """Start every node's sshd (or just ``nodes``') in parallel and wait for their pid
    files, not a fixed sleep.

    The qemu user is made on the host first: the nodes' passwd is a copy taken here and
    bind-mounted, so a node could not add the user to it later.
    """
    from herd.node.hv.kvm import qemu_user  # the engine's own rule for that user

    qemu_user()
    Path(NODE_STATE_PATH).mkdir(parents=True, exist_ok=True)
    launchers = []
    nodes = nodes or lab.nodes
    for node in nodes:
        ndir = Path(node.dir)
        (ndir / "sshd_config").write_text(_sshd_config(lab, node))
        (ndir / "authorized_keys").write_text(lab.public_key + "\n")
        (ndir / "passwd").write_text(_passwd_with_home(str(ndir / "home")))
        node.pid_file.unlink(missing_ok=True)
        script = (
            "set -e; mount -t tmpfs -o mode=0755 herdlab-run /run; mkdir -m 0755 /run/sshd; "
            f"mount --bind {ndir / 'data'} {NODE_STATE_PATH}; "
            f"mount --bind {ndir / 'passwd'} /etc/passwd; hostname {node.name}; "
            f"exec {sshd} -f {ndir / 'sshd_config'} -E {ndir / 'sshd.log'}"
        )
        launchers.append(
            (
                node,
                subprocess.Popen(
                    ["ip", "netns", "exec", node.netns, "unshare", "--uts", "sh", "-c", script],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    for node, proc in launchers:
        _, err = proc.communicate(timeout=SSHD_START_TIMEOUT)
        if proc.returncode != 0:
            raise LabError(f"sshd of {node.name} failed to start: {err.strip()}{_log_tail(node)}")
    deadline = time.monotonic() + SSHD_START_TIMEOUT
    for node in nodes:
        while node.sshd_pid() is None:
            if time.monotonic() > deadline:
                raise LabError(f"sshd of {node.name} wrote no pid file{_log_tail(node)}")
            time.sleep(0.005)


def _log_tail(node: LabNode) -> str:
    try:
        return "; log: " + Path(node.dir, "sshd.log").read_text()[-500:].strip()
    except OSError:
        return ""


def _teardown(name: str, root: Path, lab: Lab | None) -> None:
    """Kill, delete and unlink everything of lab ``name``, trusting names over state.

    Namespaces are found by their prefix as well as from the state, so a lab whose
    state file was written before a crash still goes away completely.
    """
    prefix = f"hl-{name}-n"
    ports = {n.netns: n.bridge_port for n in lab.nodes} if lab else {}
    present = namespaces()
    for ns in sorted(set(ports) | {ns for ns in present if ns.startswith(prefix)}):
        if ns in present:
            _kill_netns_processes(ns)
            if ns in ports and FABRIC_NS in present:
                # Deleting a veth end removes the pair at once; leaving it to the
                # namespace deletion is asynchronous and could collide with a new lab.
                _run(["ip", "-n", FABRIC_NS, "link", "del", ports[ns]], check=False)
            _run(["ip", "netns", "del", ns])
    kill_host_processes(root / name)
    shutil.rmtree(root / name, ignore_errors=True)
    if not labkit.all_states(Lab, root) and not _fabric_ports():
        _remove_fabric()


def kill_host_processes(lab_dir: Path) -> None:
    """TERM, then KILL, host processes run from the lab's directory: a master whose state
    and socket live there (as the lab inventory places it) would outlive its files."""
    marker = str(lab_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    survivors = labkit.kill_pids(pids, grace=10.0)
    if survivors:
        raise LabError(f"processes {survivors} of {lab_dir} survived SIGKILL")


def _kill_netns_processes(ns: str) -> None:
    """TERM, then KILL, every process in namespace ``ns``; returns once they are gone."""
    survivors = labkit.kill_pids(_netns_pids(ns), grace=2.0)
    if survivors:
        raise LabError(f"processes {survivors} in {ns} survived SIGKILL")


def _netns_pids(ns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split()]


def _run(
    argv: Sequence[str], check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return labkit.run(argv, LabError, check=check, input=input)


#: Packages the lab host has: lab nodes share its filesystem, so nothing may be installed.
LAB_PACKAGES = ["openssh-server", "python3", "iproute2", "socat", "qemu-utils"]


def inventory(name: str, root: Path = DEFAULT_ROOT) -> dict[str, Any]:
    """An Ansible inventory (YAML inventory shape, written as JSON) for lab ``name``.

    Everything a playbook run needs that only the lab knows: the nodes' addresses, the
    cluster key, a known_hosts file of the nodes' host keys (written beside the lab's
    state, so host key checking stays on), the sshd drop-in path each node checks (nodes
    share the host's /etc, so the default would be the host's own), and the master's
    state directory and socket inside the lab directory so ``down`` removes them too.
    ``herd_cluster_settings`` (:func:`cluster_settings`) sits in ``all.vars``, the lowest
    precedence, so any settings of a group or host replace these lab defaults.
    Groups: ``herd_masters`` holds ``controller``, this host, which the nodes reach at
    the lab's controller address; ``herd_nodes`` holds ``n1``..``nN``.
    """
    lab = load(name, root)
    known_hosts = Path(lab.dir) / "known_hosts"
    known_hosts.write_text(
        "".join(f"{known_host(n.ip, n.port)} {n.host_key}\n" for n in lab.nodes),
        encoding="utf-8",
    )
    nodes = {
        f"n{i}": {
            "ansible_host": node.ip,
            "ansible_port": node.port,
            "herd_node_name": node.name,
            "herd_node_host_key": node.host_key,
            "herd_node_sshd_config_path": str(Path(node.dir) / "herd-sshd.conf"),
        }
        for i, node in enumerate(lab.nodes, 1)
    }
    controller = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "herd_master_state_dir": str(Path(lab.dir) / "master"),
        "herd_master_socket": str(Path(lab.dir) / "master.sock"),
        # The master runs here, outside the lab; the cluster's master node is the first.
        "herd_cluster_master_host": "n1",
    }
    node_vars = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": lab.key_path,
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} "
        "-o StrictHostKeyChecking=yes",
        # Labs reuse addresses. An SSH control master of an earlier lab (it lingers for
        # ControlPersist after its namespace is gone) found under the same ip-port-user
        # name would take the new connection and hang it; control sockets in the lab's
        # own directory die with it.
        "ansible_control_path_dir": str(Path(lab.dir) / "ssh"),
        "ansible_python_interpreter": "/usr/bin/python3",
        "herd_node_packages": LAB_PACKAGES,
    }
    return {
        "all": {
            "vars": {
                "herd_lab": lab.name,
                "herd_python": sys.executable,
                "herd_bootstrap_key": lab.key_path,
                "herd_cluster_settings": cluster_settings(),
            },
            "children": {
                "herd_masters": {"hosts": {"controller": controller}},
                "herd_nodes": {"hosts": nodes, "vars": node_vars},
            },
        }
    }


def cluster_settings() -> dict[str, Any]:
    """Cluster settings whose defaults work on lab nodes.

    Only the file templates: the host kernel has no device-mapper, so lab nodes have no
    volume group for ``plain`` or ``drbd`` (the VM nodes of ``vmnodes.py`` have).  kvm
    instances boot the tiny guest's kernel under software emulation (``/dev/kvm`` here
    hangs a Debian kernel): herd-image's disks hold no boot loader, and firmware with
    nothing to boot ignores the ACPI power button, so every stop would wait out the whole
    shutdown timeout; the tiny guest powers off when the button is pressed.
    """
    guest = tiny_guest()
    kvm = {
        "acceleration": "tcg",
        "kernel_path": guest["kernel"],
        "initrd_path": guest["initrd"],
        "kernel_args": "console=ttyS0 quiet panic=-1",
    }
    return {"enabled_disk_templates": ["file", "sharedfile"], "hvparams": {"kvm": kvm}}


def tiny_guest() -> dict[str, str]:
    """The tiny guest's ``kernel`` and ``initrd`` paths, built on first use, then cached
    (lab nodes share this host's filesystem, so the paths hold on every node)."""
    done = subprocess.run(
        [sys.executable, str(TINY_GUEST_BUILDER)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise LabError(f"building the tiny guest failed: {done.stderr.strip()[-500:]}")
    guest: dict[str, str] = json.loads(done.stdout)
    return guest


def known_host(ip: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: bare on port 22, ``[ip]:port`` otherwise."""
    return ip if port == 22 else f"[{ip}]:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    helps = ("build (or reuse) a lab", "remove a lab completely", "show every lab and its nodes")
    defaults = (DEFAULT_ROOT, "a", 3)
    extra = {
        "inventory": (
            "print an Ansible inventory for a lab (save it as a .json file, use it with -i)",
            lambda a: inventory(a.name, a.root),
        )
    }
    lab = (up, down, status)
    return labkit.cli(
        argv, "herdlab", __doc__, defaults, LabError, helps, lab, extra, named=("inventory",)
    )


if __name__ == "__main__":
    sys.exit(main())
