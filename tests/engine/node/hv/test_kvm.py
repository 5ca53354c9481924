"""The kvm hypervisor: command-line building and validation, then a real tiny guest.

Unit tests check the qemu command line and what is refused, without qemu.  Lab tests
boot the tiny guest from ``lab/build-tiny-guest.py`` under TCG with the hypervisor class
itself, and migrate a running guest between two lab nodes through ``herd-node`` over
SSH, reading the guests' serial logs to see that they really run.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import herdlab
import paramiko
import pytest

from herd.crypto.ca import ClusterCA
from herd.errors import ConflictError, NodeError, PrerequisiteError, ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.hv import kvm
from herd.node.hv.base import MigrationTLS, check_spec, hypervisor_for
from herd.node.hv.kvm import (
    QEMU_USER,
    SANDBOX,
    KvmHypervisor,
    QemuFds,
    build_command,
    list_processes,
    tls_objects,
)
from herd.node.hv.qmp import QMPClient
from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool

REPO = Path(__file__).resolve().parents[4]
CA = ClusterCA.create("kvmtest")
UP = "HERD-GUEST-UP"
INSTANCE_DIR = "/s/vm1"
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 is not installed"
)


def kvm_spec(name: str = "vm1", disks: int = 0, nics: int = 0, **hvparams: Any) -> dict[str, Any]:
    return {
        "name": name,
        "uuid": f"0f0e0d0c-0000-4000-8000-{name.encode().hex()[:12]:0>12}",
        "hypervisor": "kvm",
        "hvparams": {"acceleration": "tcg", **hvparams},
        "beparams": {"memory": 96, "vcpus": 1},
        "disks": [
            {"uuid": f"{name}-d{i}", "index": i, "template": "file", "size_mib": 4, "mode": "rw"}
            for i in range(disks)
        ],
        "nics": [
            {
                "uuid": f"5a5a5a5a-0000-4000-8000-00000000000{i}",
                "index": i,
                "mac": f"aa:00:00:00:00:0{i}",
                "mode": "bridged",
                "link": "br0",
            }
            for i in range(nics)
        ],
        "os": "noop+default",
        "osparams": {},
    }


def fds_for(spec: dict[str, Any]) -> QemuFds:
    """Made-up descriptor numbers: qmp 10, serial 11 and 12, disk i 20+2i (rw) 21+2i (ro)."""
    disks = tuple(
        (21 + 2 * i,) if d.get("mode") == "ro" else (20 + 2 * i, 21 + 2 * i)
        for i, d in enumerate(spec["disks"])
    )
    return QemuFds(qmp=10, serial=11, serial_log=12, disks=disks, kernel=30, initrd=31)


def command(spec: dict[str, Any], disk_paths: list[str] | None = None) -> list[str]:
    return build_command(
        check_spec(spec, KvmHypervisor), disk_paths or [], fds_for(spec), INSTANCE_DIR
    )


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


# --- command line and validation (no qemu) -------------------------------------------


def test_kvm_is_registered_with_documented_parameters() -> None:
    assert hypervisor_for("kvm") is KvmHypervisor
    for param in KvmHypervisor.PARAMETERS.values():
        assert param.doc
    filled = KvmHypervisor.fill_hvparams({})
    assert filled["acceleration"] == "kvm"
    assert filled["migration_bandwidth"] == 32


def test_command_line_for_a_direct_kernel_boot() -> None:
    spec = kvm_spec(disks=2, kernel_path="/k/vmlinuz", initrd_path="/k/initrd", disk_cache="none")
    spec["disks"][1]["mode"] = "ro"
    argv = command(spec, ["/d/a.img", "/d/b.img"])
    assert argv[0] == "qemu-system-x86_64"
    assert option(argv, "-accel") == ["tcg"]
    assert option(argv, "-cpu") == ["max"]
    assert option(argv, "-m") == ["96"]
    # qemu gets descriptors, never paths: the kernel as a sealed copy, disks as fd sets.
    assert option(argv, "-kernel") == ["/proc/self/fd/30"]
    assert option(argv, "-initrd") == ["/proc/self/fd/31"]
    assert option(argv, "-append") == ["ro console=ttyS0"]
    assert option(argv, "-add-fd") == [
        "fd=12,set=0",
        "fd=20,set=1",
        "fd=21,set=1",
        "fd=23,set=2",
    ]
    assert option(argv, "-drive") == [
        "file=/dev/fdset/1,format=raw,if=virtio,index=0,cache=none",
        "file=/dev/fdset/2,format=raw,if=virtio,index=1,readonly=on,cache=none",
    ]
    assert option(argv, "-nic") == ["none"]
    assert option(argv, "-chardev")[0] == "socket,id=qmp,fd=10,server=on,wait=off"
    assert option(argv, "-chardev")[1] == (
        "socket,id=serial0,fd=11,server=on,wait=off,logfile=/dev/fdset/0,logappend=on"
    )
    assert not any(p in " ".join(argv) for p in ("/k/", "/d/", "qmp.sock", "serial.log"))
    assert option(argv, "-uuid") == [spec["uuid"]]
    assert "-boot" not in argv and "-no-acpi" not in argv and "-vnc" not in argv


def test_command_line_options_follow_hvparams() -> None:
    argv = (
        command(
            kvm_spec(
                acceleration="kvm",
                boot_order="network",
                acpi=False,
                reboot_behavior="exit",
                serial_console=False,
                vnc_bind_address="127.0.0.1",
                machine_type="q35",
            )
        )
        if Path("/dev/kvm").exists()
        else None
    )
    if argv is None:
        pytest.skip("acceleration=kvm is refused on a node without /dev/kvm")
    assert option(argv, "-cpu") == ["host"]
    assert option(argv, "-machine") == ["q35"]
    assert option(argv, "-boot") == ["n"]
    assert option(argv, "-vnc") == ["127.0.0.1:0,to=99"]  # loopback: no password needed
    assert "-no-acpi" in argv and "-no-reboot" in argv
    assert not any("serial0" in c for c in option(argv, "-chardev"))


def test_bridged_nics_get_taps_and_macs() -> None:
    argv = command(kvm_spec(nics=2))
    netdevs = option(argv, "-netdev")
    assert len(netdevs) == 2
    taps = [n.split("ifname=")[1].split(",")[0] for n in netdevs]
    assert netdevs[0].startswith("tap,id=net0,ifname=htap")
    assert len(set(taps)) == 2 and all(len(t) <= 15 for t in taps)
    assert taps == [
        n.split("ifname=")[1].split(",")[0] for n in option(command(kvm_spec(nics=2)), "-netdev")
    ]
    assert option(argv, "-device") == [
        "virtio-net-pci,netdev=net0,mac=aa:00:00:00:00:00",
        "virtio-net-pci,netdev=net1,mac=aa:00:00:00:00:01",
    ]


@pytest.mark.parametrize(
    ("hvparams", "field"),
    [
        ({"no_such_option": 1}, "spec.hvparams.no_such_option"),
        ({"acceleration": "xen"}, "spec.hvparams.acceleration"),
        ({"disk_cache": "fast"}, "spec.hvparams.disk_cache"),
        ({"migration_bandwidth": "32"}, "spec.hvparams.migration_bandwidth"),
        ({"cpu_type": "max,+vmx"}, "spec.hvparams.cpu_type"),
        ({"initrd_path": "/k/initrd"}, "spec.hvparams.initrd_path"),
    ],
)
def test_unsupported_or_bad_hvparams_are_refused_by_name(
    hvparams: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        command(kvm_spec(**hvparams))
    assert refused.value.details["field"] == field


def test_unsupported_nic_and_disk_settings_are_refused_by_name() -> None:
    routed = kvm_spec(nics=1)
    routed["nics"][0]["mode"] = "routed"
    with pytest.raises(ValidationError) as nic:
        command(routed)
    assert nic.value.details["field"] == "spec.nics[0].mode"
    assert "kvm" in nic.value.details["allowed"]
    weird = kvm_spec(disks=1)
    weird["disks"][0]["mode"] = "wo"
    with pytest.raises(ValidationError) as mode:
        command(weird, ["/d/a.img"])
    assert mode.value.details["field"] == "spec.disks[0].mode"


def test_qemu_is_sandboxed_and_cannot_daemonize_or_change_user() -> None:
    """herd starts qemu as the qemu user; qemu itself may not fork, exec or setuid."""
    argv = command(kvm_spec())
    assert option(argv, "-sandbox") == [SANDBOX]
    for denied in ("obsolete", "elevateprivileges", "spawn", "resourcecontrol"):
        assert f"{denied}=deny" in SANDBOX
    assert not {"-daemonize", "-runas", "-pidfile"} & set(argv)
    # The instance directory marks the process for the node inventory, nothing more.
    assert option(argv, "-L") == [INSTANCE_DIR]


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.0.0.5", "localhost"])
def test_network_vnc_without_a_password_is_refused_at_submit(address: str) -> None:
    with pytest.raises(ValidationError) as refused:
        KvmHypervisor.fill_hvparams({"vnc_bind_address": address})
    assert refused.value.details["field"] == "hvparams.vnc_bind_address"
    assert refused.value.details["value"] == address


def test_vnc_on_loopback_or_with_a_password() -> None:
    assert option(command(kvm_spec(vnc_bind_address="::1")), "-vnc") == ["[::1]:0,to=99"]
    protected = kvm_spec(vnc_bind_address="0.0.0.0", vnc_password_file="/etc/herd/vnc.pw")
    assert option(command(protected), "-vnc") == ["0.0.0.0:0,to=99,password=on"]
    with pytest.raises(ValidationError) as relative:
        KvmHypervisor.fill_hvparams({"vnc_password_file": "vnc.pw"})
    assert relative.value.details["field"] == "hvparams.vnc_password_file"


def test_migration_tls_objects_admit_only_this_migration() -> None:
    tls = MigrationTLS("migr-0123", "CERT", "KEY", "CA")
    server = tls_objects(tls, "/run/herd-qemu/tls-x", "server")
    assert option(server, "-object") == [
        "tls-creds-x509,id=migration-tls,dir=/run/herd-qemu/tls-x,endpoint=server,verify-peer=on",
        "authz-simple,id=migration-authz,identity=CN=migr-0123",
    ]
    assert option(tls_objects(tls, "/run/herd-qemu/tls-y", "client"), "-object") == [
        "tls-creds-x509,id=migration-tls,dir=/run/herd-qemu/tls-y,endpoint=client,verify-peer=on"
    ]


def test_kvm_refuses_to_migrate_in_clear_text(tmp_path: Path) -> None:
    hv = KvmHypervisor(NodeContext(tmp_path))
    with pytest.raises(ValidationError) as accept:
        hv.migration_accept(kvm_spec(), [], "127.0.0.1", None)
    assert accept.value.details["field"] == "migration_id"
    with pytest.raises(ValidationError) as send:
        hv.migrate("vm1", "127.0.0.1", 1234, live=True, tls=None)
    assert send.value.details["field"] == "migration_id"


def test_start_refuses_missing_disks_and_overlong_socket_paths(tmp_path: Path) -> None:
    hv = KvmHypervisor(NodeContext(tmp_path))
    with pytest.raises(ValidationError) as count:
        hv.start(kvm_spec(disks=1), [])
    assert count.value.details["field"] == "disk_paths"
    with pytest.raises(ValidationError) as missing:
        hv.start(kvm_spec(disks=1), [str(tmp_path / "absent.img")])
    assert missing.value.details["field"] == "disk_paths[0]"
    deep = KvmHypervisor(NodeContext(tmp_path / ("x" * 90)))
    with pytest.raises(ValidationError) as long_path:
        deep.start(kvm_spec(), [])
    assert long_path.value.details["field"] == "spec.name"


def test_nothing_running_reads_as_absent(tmp_path: Path) -> None:
    hv = KvmHypervisor(NodeContext(tmp_path))
    assert hv.info("vm1") is None
    assert hv.list() == []
    assert hv.stop("vm1", 1.0, force=False) == {"changed": False, "method": None}
    assert hv.migration_finish("vm1", True)["changed"] is False
    with pytest.raises(PrerequisiteError):
        hv.reboot("vm1", hard=False)


def test_a_stop_presses_the_power_button_again_until_the_guest_listens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A guest still booting misses the first press; the stop is still an ACPI one."""
    hv = KvmHypervisor(NodeContext(tmp_path))
    (tmp_path / "hv" / "kvm" / "vm1").mkdir(parents=True)
    hv._save("vm1", {"status": "running", "spec": {"hvparams": {"acpi": True}}})
    presses: list[str] = []
    monkeypatch.setattr(hv, "_qmp", lambda name, command, timeout=None: presses.append(command))
    monkeypatch.setattr(hv, "_alive", lambda name: len(presses) < 3)
    monkeypatch.setattr(hv, "_cleanup", lambda name: None)
    monkeypatch.setattr(kvm, "ACPI_REPRESS_INTERVAL", 0.0)
    assert hv.stop("vm1", 60.0, force=False) == {"changed": True, "method": "acpi"}
    assert presses == ["system_powerdown"] * 3


def test_a_target_still_loading_the_stream_is_resumed_once_it_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source says "completed" while the target may still be "inmigrate"."""
    hv = KvmHypervisor(NodeContext(tmp_path))
    (tmp_path / "hv" / "kvm" / "vm1").mkdir(parents=True)
    hv._save("vm1", {"status": "incoming"})
    statuses = iter(["inmigrate", "inmigrate", "paused", "running"])
    sent: list[str] = []

    def qmp(name: str, command: str, timeout: float | None = None) -> Any:
        sent.append(command)
        return {"status": next(statuses)} if command == "query-status" else {}

    monkeypatch.setattr(hv, "_alive", lambda name: True)
    monkeypatch.setattr(hv, "_qmp", qmp)
    monkeypatch.setattr(kvm, "READY_POLL", 0.0)
    assert hv.migration_finish("vm1", True)["state"] == "running"
    assert sent == ["query-status"] * 3 + ["cont"]


def test_a_target_that_never_lands_is_reported_with_its_qemu_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hv = KvmHypervisor(NodeContext(tmp_path))
    (tmp_path / "hv" / "kvm" / "vm1").mkdir(parents=True)
    hv._save("vm1", {"status": "incoming"})
    monkeypatch.setattr(hv, "_alive", lambda name: True)
    monkeypatch.setattr(hv, "_qmp", lambda name, command, timeout=None: {"status": "inmigrate"})
    monkeypatch.setattr(kvm, "MIGRATION_LAND_TIMEOUT", 0.0)
    with pytest.raises(
        NodeError, match=r"no complete migration of vm1 arrived here \(qemu: inmigrate\)"
    ):
        hv.migration_finish("vm1", True)


# --- a real tiny guest under TCG -------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_guest() -> dict[str, str]:
    """Kernel and initrd of the tiny guest (built once per machine, then cached)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "lab" / "build-tiny-guest.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def guest_spec(tiny_guest: dict[str, str], name: str, disks: int = 0) -> dict[str, Any]:
    return kvm_spec(
        name,
        disks=disks,
        kernel_path=tiny_guest["kernel"],
        initrd_path=tiny_guest["initrd"],
        kernel_args="console=ttyS0 quiet panic=-1",
        migration_bandwidth=512,
    )


def wait_for(path: Path, text: str, timeout: float = 90.0, count: int = 1) -> str:
    """The file's content once ``text`` occurs ``count`` times in it."""
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            content = path.read_text(errors="replace")
        if content.count(text) >= count:
            return content
        time.sleep(0.2)
    raise AssertionError(f"{text!r} x{count} not in {path} after {timeout}s: {content[-500:]!r}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def gone(pid: int) -> bool:
    """The process has exited, allowing it the moment between releasing its memory (when
    the hypervisor already counts it as gone) and becoming a zombie."""
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A state root short enough for Unix socket paths (pytest's tmp_path may not be)."""
    root = Path(tempfile.mkdtemp(prefix="hk", dir="/tmp"))
    yield root
    for runtime in root.rglob("hv/kvm/*/runtime.json"):  # every simulated node's guests
        node_root = runtime.parents[3]
        KvmHypervisor(NodeContext(node_root)).stop(runtime.parent.name, 0.0, force=True)
    shutil.rmtree(root)


@pytest.mark.lab
@needs_qemu
def test_tiny_guest_boots_stops_cleanly_and_by_force(
    tiny_guest: dict[str, str], short_root: Path
) -> None:
    hv = KvmHypervisor(NodeContext(short_root))
    disk = short_root / "d0.img"
    disk.write_bytes(b"\0" * 4 * 1024 * 1024)
    spec = guest_spec(tiny_guest, "vm1", disks=1)
    log = short_root / "hv" / "kvm" / "vm1" / "serial.log"

    started = hv.start(spec, [str(disk)])
    assert started["changed"] is True
    wait_for(log, UP)
    assert hv.start(spec, [str(disk)]) == {"changed": False, "pid": started["pid"]}
    with pytest.raises(ConflictError):
        hv.start({**spec, "beparams": {"memory": 128, "vcpus": 1}}, [str(disk)])
    info = hv.info("vm1")
    assert info is not None
    assert (info["state"], info["qemu_status"], info["pid"]) == (
        "running",
        "running",
        started["pid"],
    )
    assert [i["name"] for i in hv.list()] == ["vm1"]
    console = hv.console("vm1")
    assert console["kind"] == "serial" and Path(console["socket"]).is_socket()

    assert hv.stop("vm1", 60.0, force=False) == {"changed": True, "method": "acpi"}
    assert "HERD-GUEST-POWEROFF" in log.read_text()
    assert gone(started["pid"])
    assert hv.info("vm1") is None

    again = hv.start(spec, [str(disk)])
    wait_for(log, UP)
    assert hv.stop("vm1", 60.0, force=True) == {"changed": True, "method": "kill"}
    assert "HERD-GUEST-POWEROFF" not in log.read_text()
    assert gone(again["pid"])
    assert hv.stop("vm1", 60.0, force=False)["changed"] is False


@pytest.mark.lab
@needs_qemu
def test_qemu_runs_unprivileged_sandboxed_with_a_vnc_password(short_root: Path) -> None:
    hv = KvmHypervisor(NodeContext(short_root))
    password = short_root / "vnc.pw"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    disk = short_root / "d0.img"
    disk.write_bytes(b"\0" * 4 * 1024 * 1024)
    disk.chmod(0o600)  # root's alone: qemu gets a descriptor, not the path
    spec = kvm_spec("vnc1", disks=1, vnc_bind_address="0.0.0.0", vnc_password_file=str(password))
    pid = hv.start(spec, [str(disk)])["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert uid_of(pid) == pwd.getpwnam(QEMU_USER).pw_uid
    assert "\nSeccomp:\t2\n" in status
    assert (hv.state_dir / "vnc1").stat().st_mode & 0o777 == 0o700
    with QMPClient(str(hv.state_dir / "vnc1" / "qmp.sock")) as qmp:
        vnc = qmp.execute("query-vnc")
        block = qmp.execute("query-block")
    assert (vnc["host"], vnc["auth"]) == ("0.0.0.0", "vnc")
    assert block[0]["inserted"]["ro"] is False
    assert hv.stop("vnc1", 0.0, force=True)["method"] == "kill"


@pytest.mark.lab
@needs_qemu
def test_soft_reboot_restarts_the_guest_after_a_clean_shutdown(
    tiny_guest: dict[str, str], short_root: Path
) -> None:
    hv = KvmHypervisor(NodeContext(short_root))
    log = short_root / "hv" / "kvm" / "vm2" / "serial.log"
    first = hv.start(guest_spec(tiny_guest, "vm2"), [])
    wait_for(log, UP)
    rebooted = hv.reboot("vm2", hard=False)
    assert (rebooted["method"], rebooted["hard"]) == ("acpi", False)
    assert rebooted["pid"] != first["pid"] and gone(first["pid"])
    wait_for(log, UP)
    assert hv.info("vm2")["qemu_status"] == "running"  # type: ignore[index]


@pytest.mark.lab
@needs_qemu
def test_non_live_migration_pauses_the_guest_and_resumes_it_on_the_target(
    tiny_guest: dict[str, str], short_root: Path
) -> None:
    source = KvmHypervisor(NodeContext(short_root / "a"))
    target = KvmHypervisor(NodeContext(short_root / "b"))
    spec = guest_spec(tiny_guest, "vm3")
    started = source.start(spec, [])
    wait_for(short_root / "a" / "hv" / "kvm" / "vm3" / "serial.log", UP)
    tls = migration_tls()
    port = target.migration_accept(spec, [], "127.0.0.1", tls)["port"]
    assert target.migration_accept(spec, [], "127.0.0.1", tls) == {"changed": False, "port": port}
    sent = source.migrate("vm3", "127.0.0.1", port, live=False, tls=tls)
    assert sent["live"] is False
    assert source.migrate("vm3", "127.0.0.1", port, live=False, tls=tls)["changed"] is False
    # The source copy stays paused until the target confirms; the target waits paused too.
    assert source.info("vm3")["qemu_status"] == "postmigrate"  # type: ignore[index]
    # (It may still be loading the last bytes the source sent: "inmigrate" until landed.)
    assert target._landed_status("vm3") == "paused"
    assert target.migration_finish("vm3", True)["state"] == "running"
    assert source.migration_finish("vm3", True)["role"] == "source"
    assert gone(started["pid"]) and source.info("vm3") is None
    assert target.info("vm3")["qemu_status"] == "running"  # type: ignore[index]


def migration_tls(migration_id: str = "migr-test") -> MigrationTLS:
    """Credentials as the master issues them: a throw-away certificate for one migration."""
    pair = CA.issue_transfer_cert(migration_id)
    return MigrationTLS(
        migration_id, pair.cert_pem.decode(), pair.key_pem.decode(), CA.cert_pem.decode()
    )


def tls_args(migration_id: str = "migr-lab") -> dict[str, str]:
    tls = migration_tls(migration_id)
    return {
        "migration_id": tls.migration_id,
        "cert_pem": tls.cert_pem,
        "key_pem": tls.key_pem,
        "ca_pem": tls.ca_pem,
    }


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("Uid:")[1].split()[0])


def listeners(node: herdlab.LabNode, port: int) -> list[str]:
    """Local addresses listening on ``port`` inside the node's namespace."""
    out = node.exec("ss", "-ltnH", f"sport = :{port}").stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def plain_tcp_reply(ip: str, port: int) -> bytes:
    """What a clear-text client that sends a migration stream's header gets back."""
    with socket.create_connection((ip, port), timeout=30) as sock:
        sock.sendall(b"QEVM\0\0\0\3" + b"\0" * 64)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks)


def address(node: herdlab.LabNode) -> NodeAddress:
    return NodeAddress(node.name, node.ip, node.host_key, node.port)


@pytest.mark.lab
@needs_qemu
def test_live_migration_between_lab_nodes(
    tiny_guest: dict[str, str], lab_cluster: herdlab.Lab
) -> None:
    source, target = lab_cluster.nodes[0], lab_cluster.nodes[1]
    spec = guest_spec(tiny_guest, "mig1")
    src_log = source.state_dir / "hv" / "kvm" / "mig1" / "serial.log"
    dst_log = target.state_dir / "hv" / "kvm" / "mig1" / "serial.log"
    key = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    with SSHPool(key, connect_timeout=5.0) as pool, NodeClient(pool) as client:
        src, dst = address(source), address(target)
        call_args = {"hypervisor": "kvm", "name": "mig1"}
        try:
            started = client.call(src, "instance_start", {"spec": spec})
            wait_for(src_log, UP)
            assert uid_of(started["pid"]) == pwd.getpwnam(QEMU_USER).pw_uid
            tls = tls_args()
            accept = {"spec": spec, "bind_ip": target.ip, **tls}
            port = client.call(dst, "instance_migration_accept", accept)["port"]
            incoming = client.call(dst, "instance_info", call_args)["instance"]
            assert (incoming["state"], incoming["qemu_status"]) == ("incoming", "inmigrate")
            assert uid_of(incoming["pid"]) == pwd.getpwnam(QEMU_USER).pw_uid
            # Only the secondary (here: the one) address listens, and only TLS gets in:
            # a clear-text stream gets no answer (at most a TLS alert) and changes nothing.
            assert listeners(target, port) == [f"{target.ip}:{port}"]
            reply = plain_tcp_reply(target.ip, port)
            assert b"QEVM" not in reply and (not reply or reply[0] == 0x15)
            still = client.call(dst, "instance_info", call_args)["instance"]
            assert (still["state"], still["qemu_status"]) == ("incoming", "inmigrate")
            # The credentials of another migration are refused.
            stranger = {**call_args, "target_ip": target.ip, "port": port}
            with pytest.raises(NodeError):
                client.call(src, "instance_migrate", {**stranger, **tls_args("migr-other")})

            sent = client.call(
                src,
                "instance_migrate",
                {**call_args, "target_ip": target.ip, "port": port, **tls},
            )
            assert sent["live"] is True and sent["bytes"] > 0
            assert client.call(src, "instance_info", call_args)["instance"]["state"] == "migrated"
            assert (
                client.call(src, "instance_migration_finish", {**call_args, "success": True})[
                    "role"
                ]
                == "source"
            )
            finished = client.call(dst, "instance_migration_finish", {**call_args, "success": True})
            assert (finished["role"], finished["state"]) == ("target", "running")

            assert gone(started["pid"])
            assert client.call(src, "instance_info", call_args)["instance"] is None
            moved = client.call(dst, "instance_info", call_args)["instance"]
            assert (moved["state"], moved["qemu_status"]) == ("running", "running")
            # The guest carried on where it was: its tick counter continues on the target.
            last_tick = int(src_log.read_text().split("HERD-GUEST-TICK ")[-1].split()[0])
            content = wait_for(dst_log, f"HERD-GUEST-TICK {last_tick + 2}\n", timeout=60)
            assert UP not in content
        finally:
            for node in (src, dst):
                client.call(node, "instance_stop", {**call_args, "timeout": 0, "force": True})


def test_list_processes_names_qemus_of_this_state_dir_only(tmp_path: Path) -> None:
    ctx = NodeContext(tmp_path / "root")
    mine = f"{KvmHypervisor(ctx).state_dir}/vm1/qmp.sock"
    theirs = f"{tmp_path}/other/hv/kvm/vm2/qmp.sock"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    children = [
        subprocess.Popen([*sleep, "-name", f"{name},debug-threads=on", "-chardev", path])
        for name, path in (("vm1", mine), ("vm2", theirs))
    ]
    try:
        found = list_processes(ctx)
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert found == [{"hypervisor": "kvm", "name": "vm1", "pid": children[0].pid}]
