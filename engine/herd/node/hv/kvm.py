"""The ``kvm`` hypervisor: one detached ``qemu-system-x86_64`` per instance, driven by QMP.

Per instance, ``<root>/hv/kvm/<name>/`` (root only) holds ``runtime.json`` (spec, disk
paths, the exact command line, status, migration record), ``pid``, ``qmp.sock`` (the
monitor), ``serial.sock`` (the interactive serial console), ``serial.log`` (everything
the guest wrote on its serial port) and ``qemu.log`` (qemu's own messages).  The logs
survive a stop as a post-mortem; everything else goes with the instance.  A pid is
trusted only if its ``/proc/<pid>/cmdline`` is the command line this instance was started
with, so a reused pid reads as a crash rather than as our instance.

qemu never runs as root: herd starts it as the ``herd-qemu`` user (created on first use
if the node role has not), with no supplementary group but ``kvm``, under qemu's seccomp
sandbox with privilege elevation, spawning, obsolete calls and resource control denied.
qemu 7.2's own ``-runas`` cannot be combined with that sandbox (it calls setuid after the
filter is in place and is killed), and ``spawn=deny`` rules out ``-daemonize``; so, as
libvirt does, herd drops the privileges itself and opens everything qemu needs as root
first, handing qemu descriptors: the monitor and serial sockets, the serial log, every
disk (an fd set per disk) and a sealed in-memory copy of the kernel and initrd.  qemu
can open no file of the node by name.

Semantics chosen where Ganeti's leave room:

* ``stop``: ACPI ``system_powerdown``, wait up to ``timeout`` for qemu to exit, then
  ``quit`` (SIGKILL if the monitor does not answer); ``method`` says which happened.
* ``reboot`` (Ganeti's KVM semantics): soft = the guest shuts itself down through ACPI and
  a new qemu starts from the saved command line (killed only if the guest ignores ACPI
  within ``REBOOT_ACPI_TIMEOUT``, reported as such); hard = kill and start at once.  A
  ``system_reset`` would be a power-cycle the guest never agreed to, so it is not "soft".
* ``migrate(live=False)``: the guest's vCPUs are paused (QMP ``stop``) before memory is
  copied, i.e. the guest does not run while it moves, and it is resumed on the target by
  ``migration_finish``.  A non-live request is never silently turned into a live one.
* After a completed migration the source qemu stays paused (qemu's ``postmigrate``) until
  ``migration_finish``: on success it quits, on failure it resumes, so a target that
  fails to take over never leaves the instance running nowhere.

The migration stream is qemu's own, over TLS with a throw-away certificate the master
issues from the cluster CA for this one migration: both ends verify the peer against the
CA, the source demands the migration id as the target's name and the target admits only
a client certificate for that id.  The target listens on one address of its own (the
secondary IP the master sends), never on every address.  qemu reads the credentials
once, when it creates its TLS object, so they are on disk only that long, in a directory
under ``/run/herd-qemu`` that only the qemu user can read.

A VNC console binds a loopback address unless a password file is set; a network-facing
VNC display without a password is refused when the instance is submitted.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import grp
import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd import hvparams
from herd.errors import ConflictError, NodeError, PrerequisiteError, ValidationError
from herd.node import proc
from herd.node.actions.registry import NodeContext
from herd.node.hv.base import (
    Hypervisor,
    MigrationTLS,
    check_name,
    check_spec,
    register_hypervisor,
)
from herd.node.hv.qmp import QMPClient, QMPError

QEMU = "qemu-system-x86_64"
MIB = 1024 * 1024
START_TIMEOUT = 30.0
QUIT_TIMEOUT = 10.0
REBOOT_ACPI_TIMEOUT = 120.0
#: Seconds between presses of the ACPI power button while a guest has not gone yet.
ACPI_REPRESS_INTERVAL = 5.0
MIGRATION_POLL = 0.2
#: Seconds a migration may go without any new bytes sent before it is cancelled.
MIGRATION_STALL_TIMEOUT = 60.0
#: sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
#: Characters that may appear in a value qemu parses as an option list ("a=b,c=d").
OPTION_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/+@=-]*$")
IFNAME_MAX = 15
NIC_MODES = ("bridged",)
#: The unprivileged user every qemu runs as.
QEMU_USER = "herd-qemu"
#: Where qemu-readable files live for the moment qemu needs them (migration credentials).
QEMU_RUN_DIR = Path("/run/herd-qemu")
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
#: QOM ids of the migration's TLS credentials and of the target's client check.
TLS_ID = "migration-tls"
AUTHZ_ID = "migration-authz"
#: Seconds between attempts to reach a starting qemu's monitor.
READY_POLL = 0.1
#: Seconds an incoming qemu may take to load the last of a completed migration.
MIGRATION_LAND_TIMEOUT = 30.0


@register_hypervisor
class KvmHypervisor(Hypervisor):
    """Instances as detached qemu processes with a QMP monitor each."""

    name = "kvm"
    PARAMETERS = hvparams.KVM

    @property
    def state_dir(self) -> Path:
        return self.ctx.root / "hv" / "kvm"

    def start(
        self, spec: dict[str, Any], disk_paths: list[str], boot: dict[str, str] | None = None
    ) -> dict[str, Any]:
        spec = self._checked(spec, disk_paths)
        if boot is not None:
            # Only this qemu sees the override; the master's hvparams stay as they are.
            spec = {**spec, "hvparams": {**spec["hvparams"], **boot_hvparams(boot)}}
        name = spec["name"]
        runtime = self._load(name)
        if runtime is not None and self._alive(name):
            if runtime["status"] == "running" and (runtime["spec"], runtime["disk_paths"]) == (
                spec,
                disk_paths,
            ):
                return {"changed": False, "pid": self._pid(name)}
            raise ConflictError(
                f"instance {name} is already {runtime['status']} here with another spec",
                name=name,
                status=runtime["status"],
            )
        self._cleanup(name)
        runtime = self._launch(spec, disk_paths)
        return {"changed": True, "pid": runtime["pid"]}

    def stop(self, name: str, timeout: float, force: bool) -> dict[str, Any]:
        runtime = self._load(check_name(name))
        if runtime is None:
            return {"changed": False, "method": None}
        if not self._alive(name):
            method = "crashed"
        elif force or not runtime["spec"]["hvparams"]["acpi"]:
            self._kill(name)
            method = "kill"
        elif self._acpi_shutdown(name, timeout):
            method = "acpi"
        else:
            self._kill(name)
            method = "kill-after-timeout"
        self._cleanup(name)
        return {"changed": True, "method": method}

    def reboot(self, name: str, hard: bool) -> dict[str, Any]:
        runtime = self._running(check_name(name))
        if hard or not runtime["spec"]["hvparams"]["acpi"]:
            self._kill(name)
            method = "kill"
        elif self._acpi_shutdown(name, REBOOT_ACPI_TIMEOUT):
            method = "acpi"
        else:
            self._kill(name)
            method = "kill-after-timeout"
        self._cleanup(name)
        runtime = self._launch(runtime["spec"], runtime["disk_paths"])
        return {"changed": True, "hard": hard, "method": method, "pid": runtime["pid"]}

    def info(self, name: str) -> dict[str, Any] | None:
        runtime = self._load(check_name(name))
        if runtime is None:
            return None
        qemu_status = None
        if self._alive(name):
            with contextlib.suppress(QMPError):
                qemu_status = self._qmp(name, "query-status")["status"]
        beparams = runtime["spec"]["beparams"]
        return {
            "name": name,
            "hypervisor": self.name,
            "state": runtime["status"] if qemu_status else "crashed",
            "qemu_status": qemu_status,
            "pid": self._pid(name) if qemu_status else None,
            "memory": beparams["memory"],
            "vcpus": beparams["vcpus"],
            "started_at": runtime["started_at"],
            "disk_paths": runtime["disk_paths"],
            "migration": runtime.get("migration"),
        }

    def list(self) -> list[dict[str, Any]]:
        if not self.state_dir.is_dir():
            return []
        names = sorted(p.parent.name for p in self.state_dir.glob("*/runtime.json"))
        return [info for info in map(self.info, names) if info is not None]

    def console(self, name: str) -> dict[str, Any]:
        runtime = self._running(check_name(name))
        paths = self._paths(name)
        hv = runtime["spec"]["hvparams"]
        if hv["vnc_bind_address"]:
            vnc = self._qmp(name, "query-vnc")
            return {
                "changed": False,
                "kind": "vnc",
                "host": vnc.get("host", hv["vnc_bind_address"]),
                "port": int(vnc["service"]),
            }
        if hv["serial_console"]:
            return {
                "changed": False,
                "kind": "serial",
                "socket": paths["serial_sock"],
                "log": paths["serial_log"],
                "command": f"socat -,raw,echo=0 UNIX-CONNECT:{paths['serial_sock']}",
            }
        return {
            "changed": False,
            "kind": "message",
            "message": f"instance {name} has neither a serial console nor VNC",
        }

    def migration_accept(
        self,
        spec: dict[str, Any],
        disk_paths: builtins.list[str],
        bind_ip: str = "127.0.0.1",
        tls: MigrationTLS | None = None,
    ) -> dict[str, Any]:
        tls = _require_tls(tls)
        spec = self._checked(spec, disk_paths)
        name = spec["name"]
        runtime = self._load(name)
        if runtime is not None and self._alive(name):
            if runtime["status"] == "incoming" and runtime["spec"] == spec:
                return {"changed": False, "port": runtime["port"]}
            raise ConflictError(
                f"instance {name} is already {runtime['status']} on this node",
                name=name,
                status=runtime["status"],
            )
        self._cleanup(name)
        port = _free_port(bind_ip)
        with _tls_dir(tls, "server", qemu_user()) as creds:
            # Deferred: the listener may open only once it demands TLS.
            extra = [*tls_objects(tls, creds, "server"), "-incoming", "defer"]
            self._launch(spec, disk_paths, extra, status="incoming", port=port)
        try:
            with QMPClient(self._paths(name)["qmp"]) as qmp:
                qmp.execute("migrate-set-parameters", {"tls-creds": TLS_ID, "tls-authz": AUTHZ_ID})
                qmp.execute("migrate-incoming", {"uri": _tcp_uri(bind_ip, port)})
        except QMPError:
            self.stop(name, 0.0, force=True)
            raise
        return {"changed": True, "port": port}

    def migrate(
        self, name: str, target_ip: str, port: int, live: bool, tls: MigrationTLS | None = None
    ) -> dict[str, Any]:
        tls = _require_tls(tls)
        runtime = self._load(check_name(name))
        if runtime is not None and runtime["status"] == "migrated":
            return {"changed": False, **runtime["migration"]}
        runtime = self._running(name)
        hv = runtime["spec"]["hvparams"]
        target = _tcp_uri(target_ip, port)
        with QMPClient(self._paths(name)["qmp"]) as qmp:
            _client_credentials(qmp, tls)
            qmp.execute(
                "migrate-set-parameters",
                {
                    "max-bandwidth": hv["migration_bandwidth"] * MIB,
                    "downtime-limit": hv["migration_downtime"],
                    "tls-creds": TLS_ID,
                    "tls-hostname": tls.migration_id,
                },
            )
            if not live:
                qmp.execute("stop")
            try:
                result = self._run_migration(qmp, name, target)
            except BaseException:
                if not live:
                    qmp.execute("cont")
                raise
        runtime["status"] = "migrated"
        runtime["migration"] = {"target": target.removeprefix("tcp:"), "live": live, **result}
        self._save(name, runtime)
        return {"changed": True, **runtime["migration"]}

    def migration_finish(self, name: str, success: bool) -> dict[str, Any]:
        runtime = self._load(check_name(name))
        if runtime is None:
            return {"changed": False, "role": None, "state": None}
        status = runtime["status"]
        if status == "incoming":
            if not success:
                self.stop(name, 0.0, force=True)
                return {"changed": True, "role": "target", "state": None}
            qemu_status = self._landed_status(name)
            if qemu_status not in ("running", "paused"):
                raise NodeError(
                    f"no complete migration of {name} arrived here (qemu: {qemu_status})",
                    name=name,
                    qemu_status=qemu_status,
                )
            if qemu_status == "paused":
                self._qmp(name, "cont")
            runtime["status"] = "running"
            self._save(name, runtime)
            return {"changed": True, "role": "target", "state": "running"}
        if status == "migrated":
            if success:
                self.stop(name, 0.0, force=True)
                return {"changed": True, "role": "source", "state": None}
            self._qmp(name, "cont")
            runtime["status"] = "running"
            self._save(name, runtime)
            return {"changed": True, "role": "source", "state": "running"}
        # A failed non-live migration may have left the source paused before it resumed.
        paused = (
            status == "running"
            and self._alive(name)
            and self._qmp(name, "query-status")["status"] == "paused"
        )
        if paused:
            self._qmp(name, "cont")
            return {"changed": True, "role": "source", "state": "running"}
        return {"changed": False, "role": None, "state": status}

    def _run_migration(self, qmp: QMPClient, name: str, target: str) -> dict[str, Any]:
        """Send the instance and wait for qemu to finish; cancelled if it stops moving."""
        qmp.execute("migrate", {"uri": target})
        last_progress = time.monotonic()
        transferred = -1
        while True:
            state = qmp.execute("query-migrate")
            status = state.get("status")
            ram = state.get("ram", {})
            if status == "completed":
                return {
                    "bytes": ram.get("transferred", 0),
                    "total_ms": state.get("total-time"),
                    "downtime_ms": state.get("downtime"),
                }
            if status in ("failed", "cancelled"):
                raise NodeError(
                    f"migration of {name} to {target} {status}: "
                    f"{state.get('error-desc', 'no reason given')}",
                    name=name,
                    target=target,
                )
            if ram.get("transferred", 0) != transferred:
                transferred = ram.get("transferred", 0)
                last_progress = time.monotonic()
                self._record_progress(name, status, ram)
            elif time.monotonic() - last_progress > MIGRATION_STALL_TIMEOUT:
                qmp.execute("migrate_cancel")
                raise NodeError(
                    f"migration of {name} to {target} made no progress for "
                    f"{MIGRATION_STALL_TIMEOUT:.0f}s; cancelled",
                    name=name,
                    target=target,
                )
            time.sleep(MIGRATION_POLL)

    def _record_progress(self, name: str, status: str, ram: dict[str, Any]) -> None:
        """Keep the latest progress in runtime.json so ``info`` from any session shows it."""
        runtime = self._load(name)
        if runtime is not None:
            runtime["migration"] = {
                "status": status,
                "bytes": ram.get("transferred", 0),
                "remaining": ram.get("remaining", 0),
                "total": ram.get("total", 0),
            }
            self._save(name, runtime)

    def _checked(self, spec: dict[str, Any], disk_paths: builtins.list[str]) -> dict[str, Any]:
        spec = check_spec(spec, type(self))
        disks = spec.get("disks", [])
        if len(disk_paths) != len(disks):
            raise ValidationError(
                "disk_paths", disk_paths, f"one path per disk of the spec ({len(disks)})"
            )
        for i, path in enumerate(disk_paths):
            if not os.path.exists(path):
                raise ValidationError(f"disk_paths[{i}]", path, "an existing file or device")
        if spec["hvparams"]["acceleration"] == "kvm" and not os.path.exists("/dev/kvm"):
            raise ValidationError(
                "spec.hvparams.acceleration",
                "kvm",
                "tcg (hypervisor kvm: this node has no /dev/kvm)",
            )
        paths = self._paths(spec["name"])
        for key in ("qmp", "serial_sock"):
            if len(paths[key].encode()) > MAX_SOCKET_PATH:
                raise ValidationError(
                    "spec.name",
                    spec["name"],
                    f"a name whose socket path {paths[key]} fits in {MAX_SOCKET_PATH} bytes",
                )
        return spec

    def _launch(
        self,
        spec: dict[str, Any],
        disk_paths: builtins.list[str],
        extra_args: builtins.list[str] | None = None,
        status: str = "running",
        port: int | None = None,
    ) -> dict[str, Any]:
        """Start qemu unprivileged and detached, and wait until its monitor answers.

        Everything qemu uses is opened here, as root, and handed over as descriptors
        (see the module docstring); qemu's messages go to ``qemu.log``, so a bad option
        or an unreadable disk is reported with qemu's own words.
        """
        name = spec["name"]
        paths = self._paths(name)
        _private_dir(Path(paths["dir"]))
        user = qemu_user()
        taps = _create_taps(spec, user)
        try:
            with contextlib.ExitStack() as stack:
                fds = _open_for_qemu(stack, spec, disk_paths, paths)
                argv = [*build_command(spec, disk_paths, fds, paths["dir"]), *(extra_args or [])]
                proc = _spawn(argv, fds, user, paths["qemu_log"])
        except BaseException:
            _delete_taps(taps)
            raise
        runtime = {
            "name": name,
            "spec": spec,
            "disk_paths": disk_paths,
            "argv": argv,
            "status": status,
            "port": port,
            "started_at": time.time(),
        }
        Path(paths["pid"]).write_text(f"{proc.pid}\n")
        self._save(name, runtime)
        try:
            status_now = self._wait_ready(name, proc)
        except BaseException:
            self._kill(name)
            self._cleanup(name)
            raise
        return {**runtime, "pid": proc.pid, "qemu_status": status_now}

    def _wait_ready(self, name: str, proc: subprocess.Popen[bytes]) -> str:
        """qemu's status once its monitor answers; its own message if it exits first."""
        paths = self._paths(name)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                reason = _tail(paths["qemu_log"]) or f"exit status {proc.returncode}"
                raise NodeError(f"qemu for {name} failed to start: {reason}", name=name)
            try:
                with QMPClient(paths["qmp"], timeout=READY_POLL * 10) as qmp:
                    status = qmp.execute("query-status")["status"]
                    self._set_vnc_password(name, qmp)
                    return str(status)
            except QMPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(READY_POLL)

    def _set_vnc_password(self, name: str, qmp: QMPClient) -> None:
        """The password goes over the monitor: never on qemu's command line or in a file
        qemu could read."""
        runtime = self._load(name)
        password_file = runtime["spec"]["hvparams"]["vnc_password_file"] if runtime else ""
        if password_file:
            password = _read_password(password_file)
            qmp.execute("set_password", {"protocol": "vnc", "password": password})

    def _acpi_shutdown(self, name: str, timeout: float) -> bool:
        """Press the ACPI power button, again every ``ACPI_REPRESS_INTERVAL``; True once
        qemu exited within ``timeout``.

        A press lands only once the guest's OS handles the button: one made while it
        still boots (a stop soon after a start) is lost, and a single press would leave
        the stop waiting out the whole timeout.
        """
        deadline = time.monotonic() + timeout
        next_press = time.monotonic()
        while time.monotonic() < deadline:
            if not self._alive(name):
                return True
            if time.monotonic() >= next_press:
                try:
                    self._qmp(name, "system_powerdown")
                except QMPError:
                    return not self._alive(name)
                next_press = time.monotonic() + ACPI_REPRESS_INTERVAL
            time.sleep(0.1)
        return not self._alive(name)

    def _kill(self, name: str) -> None:
        """``quit`` over QMP; SIGKILL if the monitor does not answer or qemu lingers."""
        pid = self._pid(name)
        with contextlib.suppress(QMPError):
            self._qmp(name, "quit", timeout=QUIT_TIMEOUT)
        deadline = time.monotonic() + QUIT_TIMEOUT
        while self._alive(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and self._alive(name):
            os.kill(pid, signal.SIGKILL)
            while self._alive(name):
                time.sleep(0.05)

    def _cleanup(self, name: str) -> None:
        """Forget everything but the serial log (kept for post-mortems)."""
        paths = self._paths(name)
        runtime = self._load(name)
        if runtime is not None:
            _delete_taps(_tap_names(runtime["spec"]))
        for key in ("runtime", "pid", "qmp", "serial_sock"):
            Path(paths[key]).unlink(missing_ok=True)

    def _running(self, name: str) -> dict[str, Any]:
        runtime = self._load(name)
        if runtime is None or runtime["status"] != "running" or not self._alive(name):
            raise PrerequisiteError(f"instance {name} is not running on this node", name=name)
        return runtime

    def _landed_status(self, name: str) -> str | None:
        """The incoming qemu's status once the stream has landed, None if it is gone.

        The source reports the migration completed when it has sent the last bytes; the
        target may still be loading them ("inmigrate") when it is told to resume, all the
        longer on a loaded host, so it is given a bounded while to finish.
        """
        deadline = time.monotonic() + MIGRATION_LAND_TIMEOUT
        while self._alive(name):
            status: str = self._qmp(name, "query-status")["status"]
            if status != "inmigrate" or time.monotonic() >= deadline:
                return status
            time.sleep(READY_POLL)
        return None

    def _qmp(self, name: str, command: str, timeout: float | None = None) -> Any:
        with QMPClient(self._paths(name)["qmp"]) as qmp:
            return qmp.execute(command, timeout=timeout)

    def _paths(self, name: str) -> dict[str, str]:
        base = self.state_dir / name
        return {
            "dir": str(base),
            "runtime": str(base / "runtime.json"),
            "pid": str(base / "pid"),
            "qmp": str(base / "qmp.sock"),
            "serial_sock": str(base / "serial.sock"),
            "serial_log": str(base / "serial.log"),
            "qemu_log": str(base / "qemu.log"),
        }

    def _pid(self, name: str) -> int | None:
        try:
            return int(Path(self._paths(name)["pid"]).read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, name: str) -> bool:
        """qemu of this instance runs: its pid's command line is the one we started."""
        pid = self._pid(name)
        runtime = self._load(name)
        if pid is None or runtime is None:
            return False
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        zombie = stat.rsplit(")", 1)[1].split()[0] == "Z"
        expected = b"".join(arg.encode() + b"\0" for arg in runtime["argv"])
        return not zombie and cmdline == expected

    def _load(self, name: str) -> dict[str, Any] | None:
        try:
            runtime: dict[str, Any] = json.loads(Path(self._paths(name)["runtime"]).read_text())
        except FileNotFoundError:
            return None
        return runtime

    def _save(self, name: str, runtime: dict[str, Any]) -> None:
        path = Path(self._paths(name)["runtime"])
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(runtime))
        os.replace(tmp, path)


def list_processes(ctx: NodeContext) -> list[dict[str, Any]]:
    """qemu processes of this node's instances: those naming a path in our state dir."""
    state_dir = f"{KvmHypervisor(ctx).state_dir}/"
    return [
        {"hypervisor": KvmHypervisor.name, "name": name.split(",")[0], "pid": pid}
        for pid, argv in proc.own_processes()
        if any(state_dir in arg for arg in argv) and (name := proc.arg_value(argv, "-name"))
    ]


@dataclass(frozen=True)
class QemuUser:
    """Who qemu runs as: the user, its group, and ``kvm`` (for /dev/kvm) if the node has it."""

    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True)
class QemuFds:
    """Descriptors opened as root for a qemu that may open nothing by name itself.

    ``disks`` holds per disk a read-write and a read-only descriptor (qemu asks for both
    access modes while it opens an image), or only the read-only one for a ro disk.
    """

    qmp: int
    serial: int | None = None
    serial_log: int | None = None
    disks: tuple[tuple[int, ...], ...] = ()
    kernel: int | None = None
    initrd: int | None = None

    def all(self) -> list[int]:
        single = (self.qmp, self.serial, self.serial_log, self.kernel, self.initrd)
        return [fd for fd in single if fd is not None] + [fd for d in self.disks for fd in d]


def build_command(
    spec: dict[str, Any], disk_paths: list[str], fds: QemuFds, instance_dir: str
) -> list[str]:
    """The qemu command line for a checked spec; refuses what qemu could not honour.

    Every value that lands inside a qemu option list is checked for commas and other
    separators first: a value like ``pc,accel=kvm`` must be refused, not parsed.  Paths
    do not appear: qemu gets descriptors (``QemuFds``) instead.  Only ``instance_dir``
    does, as an extra firmware directory that qemu cannot read (so it uses its own): it
    marks the process as this node's instance for the inventory (``list_processes``).
    """
    hv = spec["hvparams"]
    accel = hv["acceleration"]
    cpu = hv["cpu_type"] or ("host" if accel == "kvm" else "max")
    _check_option_value("spec.hvparams.cpu_type", cpu)
    _check_option_value("spec.hvparams.machine_type", hv["machine_type"])
    name = spec["name"]
    _check_option_value("instance_dir", instance_dir)
    argv = [
        QEMU,
        "-name", f"{name},debug-threads=on",
        "-machine", hv["machine_type"],
        "-accel", accel,
        "-cpu", cpu,
        "-m", str(spec["beparams"]["memory"]),
        "-smp", str(spec["beparams"]["vcpus"]),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-sandbox", SANDBOX,
        "-L", instance_dir,
        "-chardev", f"socket,id=qmp,fd={fds.qmp},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
    ]  # fmt: skip
    fdsets = _FdSets()
    if spec.get("uuid"):
        argv += ["-uuid", str(spec["uuid"])]
    if not hv["acpi"]:
        argv.append("-no-acpi")
    if hv["reboot_behavior"] == "exit":
        argv.append("-no-reboot")
    if hv["serial_console"]:
        if fds.serial is None or fds.serial_log is None:
            raise ValueError("serial_console needs the serial socket and log descriptors")
        log = fdsets.add(argv, fds.serial_log)
        argv += [
            "-chardev",
            f"socket,id=serial0,fd={fds.serial},server=on,wait=off,logfile={log},logappend=on",
            "-serial", "chardev:serial0",
        ]  # fmt: skip
    if hv["vnc_bind_address"]:
        argv += ["-vnc", _vnc_option(hv)]
    argv += _boot_args(hv, fds)
    argv += _disk_args(spec, disk_paths, hv["disk_cache"], fds, fdsets)
    argv += _nic_args(spec)
    return argv


def tls_objects(tls: MigrationTLS, creds_dir: str, endpoint: str) -> list[str]:
    """``-object`` options of a migration's x509 credentials (and, on the target, the
    check that admits only this migration's client)."""
    _check_option_value("creds_dir", creds_dir)
    args = [
        "-object",
        f"tls-creds-x509,id={TLS_ID},dir={creds_dir},endpoint={endpoint},verify-peer=on",
    ]
    if endpoint == "server":
        args += ["-object", f"authz-simple,id={AUTHZ_ID},identity=CN={tls.migration_id}"]
    return args


class _FdSets:
    """Numbers qemu ``-add-fd`` sets in the order descriptors are handed over."""

    def __init__(self) -> None:
        self.next = 0

    def add(self, argv: list[str], *fds: int) -> str:
        """Put ``fds`` in a new set; returns the name qemu opens it by."""
        number, self.next = self.next, self.next + 1
        for fd in fds:
            argv += ["-add-fd", f"fd={fd},set={number}"]
        return f"/dev/fdset/{number}"


def _vnc_option(hv: dict[str, Any]) -> str:
    ip = ipaddress.ip_address(hv["vnc_bind_address"])
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{host}:0,to=99" + (",password=on" if hv["vnc_password_file"] else "")


def boot_hvparams(boot: dict[str, str]) -> dict[str, str]:
    """The hvparams a one-off boot override stands for."""
    return {
        "kernel_path": boot["kernel"],
        "initrd_path": boot["initrd"],
        "kernel_args": boot["cmdline"],
    }


def _boot_args(hv: dict[str, Any], fds: QemuFds) -> list[str]:
    if not hv["kernel_path"]:
        if hv["initrd_path"]:
            raise ValidationError(
                "spec.hvparams.initrd_path", hv["initrd_path"], "empty unless kernel_path is set"
            )
        return ["-boot", {"disk": "c", "cdrom": "d", "network": "n"}[hv["boot_order"]]]
    args = ["-kernel", f"/proc/self/fd/{fds.kernel}", "-append", hv["kernel_args"]]
    if hv["initrd_path"]:
        args += ["-initrd", f"/proc/self/fd/{fds.initrd}"]
    return args


def _disk_args(
    spec: dict[str, Any], disk_paths: list[str], cache: str, fds: QemuFds, fdsets: _FdSets
) -> list[str]:
    args: list[str] = []
    disks = spec.get("disks", [])
    for i, disk in enumerate(disks):
        field = f"spec.disks[{i}]"
        mode = disk.get("mode", "rw")
        if mode not in ("rw", "ro"):
            raise ValidationError(f"{field}.mode", mode, "rw or ro (hypervisor kvm)")
    if len(fds.disks) != len(disks) or len(disk_paths) != len(disks):
        raise ValueError("one path and one set of descriptors per disk")
    for i, (disk, disk_fds) in enumerate(zip(disks, fds.disks, strict=True)):
        drive = f"file={fdsets.add(args, *disk_fds)},format=raw,if=virtio,index={i}"
        if disk.get("mode", "rw") == "ro":
            drive += ",readonly=on"
        if cache != "default":
            drive += f",cache={cache}"
        args += ["-drive", drive]
    return args


def _nic_args(spec: dict[str, Any]) -> list[str]:
    nics = spec.get("nics", [])
    if not nics:
        return ["-nic", "none"]
    args: list[str] = []
    for i, (nic, tap) in enumerate(zip(nics, _tap_names(spec), strict=True)):
        field = f"spec.nics[{i}]"
        if nic.get("mode") not in NIC_MODES:
            raise ValidationError(
                f"{field}.mode", nic.get("mode"), f"one of {list(NIC_MODES)} (hypervisor kvm)"
            )
        if not nic.get("link"):
            raise ValidationError(f"{field}.link", nic.get("link"), "the bridge to attach to")
        mac = nic.get("mac")
        if not isinstance(mac, str) or not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
            raise ValidationError(f"{field}.mac", mac, "a lower-case MAC address aa:bb:cc:dd:ee:ff")
        args += [
            "-netdev", f"tap,id=net{i},ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net{i},mac={mac}",
        ]  # fmt: skip
    return args


def _tap_names(spec: dict[str, Any]) -> list[str]:
    """One tap per NIC, named from a hash of the NIC uuid: stable across restarts and
    migrations, unique in practice, and within the 15 characters Linux allows."""
    names = []
    for i, nic in enumerate(spec.get("nics", [])):
        ident = str(nic.get("uuid") or f"{spec['name']}/{i}")
        names.append("htap" + hashlib.sha1(ident.encode()).hexdigest()[: IFNAME_MAX - 4])
    return names


def _create_taps(spec: dict[str, Any], user: QemuUser) -> list[str]:
    """Create each NIC's tap, owned by the qemu user (who may then attach to it and to
    no other), and plug it into its bridge before qemu opens it."""
    created: list[str] = []
    owner = ("user", str(user.uid), "group", str(user.gid))
    try:
        for nic, tap in zip(spec.get("nics", []), _tap_names(spec), strict=True):
            _ip("tuntap", "add", "dev", tap, "mode", "tap", *owner)
            created.append(tap)
            _ip("link", "set", tap, "master", nic["link"], "up")
    except NodeError:
        _delete_taps(created)
        raise
    return created


def _delete_taps(taps: list[str]) -> None:
    for tap in taps:
        if Path(f"/sys/class/net/{tap}").exists():
            subprocess.run(["ip", "link", "del", tap], capture_output=True, check=False)


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NodeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}", command=["ip", *args])


def _check_option_value(field: str, value: str) -> None:
    if not OPTION_VALUE_RE.match(value):
        raise ValidationError(
            field, value, "letters, digits and ._:/+@=- only (no commas: qemu option syntax)"
        )


def _free_port(bind_ip: str) -> int:
    """A TCP port free on ``bind_ip`` right now; qemu binds it a moment later (a clash
    fails loudly)."""
    family = socket.AF_INET6 if ipaddress.ip_address(bind_ip).version == 6 else socket.AF_INET
    with socket.create_server((bind_ip, 0), family=family) as sock:
        return int(sock.getsockname()[1])


def _tcp_uri(ip: str, port: int) -> str:
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"tcp:{host}:{port}"


def _require_tls(tls: MigrationTLS | None) -> MigrationTLS:
    if tls is None:
        raise ValidationError(
            "migration_id", None, "a migration id with its certificate (kvm migrates only over TLS)"
        )
    return tls


def qemu_user() -> QemuUser:
    """The qemu user, created as a system user if this node does not have it yet."""
    try:
        entry = pwd.getpwnam(QEMU_USER)
    except KeyError:
        _create_qemu_user()
        entry = pwd.getpwnam(QEMU_USER)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise PrerequisiteError(f"user {QEMU_USER} must not be root or in group root")
    groups: tuple[int, ...] = ()
    with contextlib.suppress(KeyError):
        groups = (grp.getgrnam("kvm").gr_gid,)
    return QemuUser(entry.pw_uid, entry.pw_gid, groups)


def _create_qemu_user() -> None:
    command = [
        "useradd", "--system", "--user-group", "--no-create-home",
        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", QEMU_USER,
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise NodeError(
            f"cannot create user {QEMU_USER} for qemu: {proc.stderr.strip()}", command=command
        )


def _private_dir(path: Path) -> None:
    """The instance directory: root's alone (qemu gets descriptors, not paths)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _open_for_qemu(
    stack: contextlib.ExitStack, spec: dict[str, Any], disk_paths: list[str], paths: dict[str, str]
) -> QemuFds:
    """Open, as root, everything the qemu of ``spec`` uses; ``stack`` closes our copies."""
    hv = spec["hvparams"]

    def keep(fd: int) -> int:
        stack.callback(os.close, fd)
        return fd

    serial = serial_log = None
    if hv["serial_console"]:
        serial = keep(_listening_socket(paths["serial_sock"]))
        serial_log = keep(
            os.open(paths["serial_log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        )
    disks = []
    for i, (disk, path) in enumerate(zip(spec.get("disks", []), disk_paths, strict=True)):
        modes = (os.O_RDONLY,) if disk.get("mode", "rw") == "ro" else (os.O_RDWR, os.O_RDONLY)
        disks.append(tuple(keep(_open(f"disk_paths[{i}]", path, mode)) for mode in modes))
    kernel = initrd = None
    if hv["kernel_path"]:
        kernel = keep(_sealed_copy("spec.hvparams.kernel_path", hv["kernel_path"]))
    if hv["kernel_path"] and hv["initrd_path"]:
        initrd = keep(_sealed_copy("spec.hvparams.initrd_path", hv["initrd_path"]))
    qmp = keep(_listening_socket(paths["qmp"]))
    return QemuFds(qmp, serial, serial_log, tuple(disks), kernel, initrd)


def _open(field: str, path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise ValidationError(field, path, f"a file or device this node can open ({exc})") from exc


def _listening_socket(path: str) -> int:
    """A Unix socket qemu serves on; made by root, so qemu needs no writable directory."""
    Path(path).unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return sock.detach()


def _sealed_copy(field: str, path: str) -> int:
    """An in-memory, sealed copy of a root-readable file (kernel, initrd).

    qemu opens it as ``/proc/self/fd/N``; reopening that way checks the permissions of
    the file behind it, which an unprivileged qemu lacks for e.g. a 0600 kernel, while a
    memfd is open to its holder and the seals keep it from being changed.
    """
    source = _open(field, path, os.O_RDONLY)
    memfd = os.memfd_create(os.path.basename(path), os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    try:
        with os.fdopen(source, "rb") as src, open(memfd, "wb", closefd=False) as dst:
            shutil.copyfileobj(src, dst)
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(memfd)
        raise
    return memfd


def _spawn(argv: list[str], fds: QemuFds, user: QemuUser, log_path: str) -> subprocess.Popen[bytes]:
    """qemu as the qemu user in a session of its own, its stdio on the log."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=fds.all(),
            user=user.uid,
            group=user.gid,
            extra_groups=list(user.groups),
            umask=0o077,
            start_new_session=True,
        )
    except OSError as exc:
        raise NodeError(f"cannot start qemu: {exc}", command=argv[:1]) from exc
    finally:
        os.close(log)


def _tail(path: str, limit: int = 1000) -> str:
    try:
        return Path(path).read_text(errors="replace").strip()[-limit:]
    except OSError:
        return ""


def _read_password(path: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValidationError(
            "spec.hvparams.vnc_password_file", path, f"a readable file with a password ({exc})"
        ) from exc
    password = lines[0].strip() if lines else ""
    if not password:
        raise ValidationError(
            "spec.hvparams.vnc_password_file", path, "a file whose first line is the password"
        )
    return password


@contextlib.contextmanager
def _tls_dir(tls: MigrationTLS, endpoint: str, user: QemuUser) -> Iterator[str]:
    """qemu's x509 files (``ca-cert.pem``, ``<endpoint>-cert.pem`` and ``-key.pem``) for
    as long as the block runs: qemu loads them when it creates the TLS object, so they
    need not outlive that, and only the qemu user can read them meanwhile."""
    QEMU_RUN_DIR.mkdir(mode=0o711, exist_ok=True)
    os.chmod(QEMU_RUN_DIR, 0o711)
    path = Path(tempfile.mkdtemp(prefix="tls-", dir=QEMU_RUN_DIR))
    try:
        files = {
            "ca-cert.pem": tls.ca_pem,
            f"{endpoint}-cert.pem": tls.cert_pem,
            f"{endpoint}-key.pem": tls.key_pem,
        }
        for fname, data in files.items():
            fd = os.open(path / fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as handle:
                os.fchown(fd, user.uid, user.gid)
                handle.write(data)
        os.chown(path, user.uid, user.gid)
        os.chmod(path, 0o500)
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _client_credentials(qmp: QMPClient, tls: MigrationTLS) -> None:
    """(Re)create the source's TLS object for this migration; a retry replaces the last."""
    with contextlib.suppress(QMPError):
        qmp.execute("object-del", {"id": TLS_ID})
    with _tls_dir(tls, "client", qemu_user()) as creds:
        _check_option_value("creds_dir", creds)
        qmp.execute(
            "object-add",
            {
                "qom-type": "tls-creds-x509",
                "id": TLS_ID,
                "dir": creds,
                "endpoint": "client",
                "verify-peer": True,
            },
        )
