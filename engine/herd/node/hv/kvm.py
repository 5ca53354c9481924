"""The ``kvm`` hypervisor: one detached ``qemu-system-x86_64`` per instance, driven by QMP.

Per instance, ``<root>/hv/kvm/<name>/`` holds ``runtime.json`` (spec, disk paths, the
exact command line, status, migration record), ``pid`` (qemu's pidfile), ``qmp.sock``
(the monitor), ``serial.sock`` (the interactive serial console) and ``serial.log``
(everything the guest wrote on its serial port).  ``serial.log`` survives a stop as a
post-mortem; everything else goes with the instance.  A pid is trusted only if its
``/proc/<pid>/cmdline`` names this instance's monitor socket, so a reused pid reads as
a crash rather than as our instance.

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

The migration stream is qemu's own: clear text and unauthenticated, on a port bound on
every address of the target; it belongs on a trusted replication network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from herd.errors import ConflictError, NodeError, PrerequisiteError, ValidationError
from herd.node.hv.base import HvParam, Hypervisor, check_name, check_spec, register_hypervisor
from herd.node.hv.qmp import QMPClient, QMPError

QEMU = "qemu-system-x86_64"
MIB = 1024 * 1024
START_TIMEOUT = 30.0
QUIT_TIMEOUT = 10.0
REBOOT_ACPI_TIMEOUT = 120.0
MIGRATION_POLL = 0.2
#: Seconds a migration may go without any new bytes sent before it is cancelled.
MIGRATION_STALL_TIMEOUT = 60.0
#: sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
#: Characters that may appear in a value qemu parses as an option list ("a=b,c=d").
OPTION_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/+@=-]*$")
IFNAME_MAX = 15
NIC_MODES = ("bridged",)


def _str_param(default: str, doc: str) -> HvParam:
    return HvParam(str, default, doc)


@register_hypervisor
class KvmHypervisor(Hypervisor):
    """Instances as detached qemu processes with a QMP monitor each."""

    name = "kvm"
    PARAMETERS = {
        "acceleration": HvParam(
            str, "kvm", "kvm: hardware virtualisation (/dev/kvm); tcg: emulation", ("kvm", "tcg")
        ),
        "cpu_type": _str_param("", "qemu -cpu model; empty: host (kvm) or max (tcg)"),
        "machine_type": _str_param("pc", "qemu -machine type, e.g. pc, q35, pc-i440fx-7.2"),
        "kernel_path": _str_param("", "kernel to boot directly; empty: boot from the disks"),
        "initrd_path": _str_param("", "initrd for kernel_path; empty: none"),
        "kernel_args": _str_param("ro console=ttyS0", "kernel command line for kernel_path"),
        "boot_order": HvParam(
            str, "disk", "first boot device without kernel_path", ("disk", "cdrom", "network")
        ),
        "disk_cache": HvParam(
            str,
            "default",
            "qemu cache mode of every disk; default: qemu's own choice",
            ("default", "none", "writethrough", "writeback", "directsync", "unsafe"),
        ),
        "serial_console": HvParam(bool, True, "serial port on a Unix socket plus serial.log"),
        "vnc_bind_address": _str_param("", "address for a VNC display; empty: no VNC"),
        "acpi": HvParam(bool, True, "ACPI for the guest; off: a clean stop is impossible"),
        "reboot_behavior": HvParam(
            str,
            "reboot",
            "guest-initiated reboot: reboot in place, or exit qemu",
            ("reboot", "exit"),
        ),
        "migration_bandwidth": HvParam(int, 32, "MiB/s a migration may use"),
        "migration_downtime": HvParam(int, 30, "longest pause (ms) at the migration switch-over"),
    }

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
        runtime = self._launch(spec, disk_paths, build_command(spec, disk_paths, self._paths(name)))
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
        runtime = self._launch(runtime["spec"], runtime["disk_paths"], runtime["argv"])
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

    def migration_accept(self, spec: dict[str, Any], disk_paths: list[str]) -> dict[str, Any]:
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
        port = _free_port()
        argv = [
            *build_command(spec, disk_paths, self._paths(name)),
            "-incoming",
            f"tcp:0.0.0.0:{port}",
        ]
        self._launch(spec, disk_paths, argv, status="incoming", port=port)
        return {"changed": True, "port": port}

    def migrate(self, name: str, target_ip: str, port: int, live: bool) -> dict[str, Any]:
        runtime = self._load(check_name(name))
        if runtime is not None and runtime["status"] == "migrated":
            return {"changed": False, **runtime["migration"]}
        runtime = self._running(name)
        hv = runtime["spec"]["hvparams"]
        target = f"{target_ip}:{port}"
        with QMPClient(self._paths(name)["qmp"]) as qmp:
            qmp.execute(
                "migrate-set-parameters",
                {
                    "max-bandwidth": hv["migration_bandwidth"] * MIB,
                    "downtime-limit": hv["migration_downtime"],
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
        runtime["migration"] = {"target": target, "live": live, **result}
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
            qemu_status = self._qmp(name, "query-status")["status"] if self._alive(name) else None
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
        qmp.execute("migrate", {"uri": f"tcp:{target}"})
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

    def _checked(self, spec: dict[str, Any], disk_paths: list[str]) -> dict[str, Any]:
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
        disk_paths: list[str],
        argv: list[str],
        status: str = "running",
        port: int | None = None,
    ) -> dict[str, Any]:
        """Start qemu detached (``-daemonize``) and wait until its monitor answers.

        ``-daemonize`` returns only once qemu has opened its sockets and devices, so a bad
        option or a missing disk is reported here with qemu's own message.  qemu's stdio
        goes to /dev/null and the log, never to the agent's framing pipes.
        """
        name = spec["name"]
        paths = self._paths(name)
        Path(paths["dir"]).mkdir(parents=True, exist_ok=True)
        runtime = {
            "name": name,
            "spec": spec,
            "disk_paths": disk_paths,
            "argv": argv,
            "status": status,
            "port": port,
            "started_at": time.time(),
        }
        taps = _create_taps(spec)
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                start_new_session=True,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _delete_taps(taps)
            raise NodeError(f"cannot start qemu for {name}: {exc}", name=name) from exc
        if proc.returncode != 0:
            _delete_taps(taps)
            reason = proc.stderr.strip()[-1000:] or f"exit status {proc.returncode}"
            raise NodeError(f"qemu for {name} failed to start: {reason}", name=name)
        self._save(name, runtime)
        try:
            status_now = self._qmp(name, "query-status")["status"]
        except QMPError:
            self._kill(name)
            self._cleanup(name)
            raise
        return {**runtime, "pid": self._pid(name), "qemu_status": status_now}

    def _acpi_shutdown(self, name: str, timeout: float) -> bool:
        """Press the ACPI power button; True once qemu exited within ``timeout``."""
        try:
            self._qmp(name, "system_powerdown")
        except QMPError:
            return not self._alive(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(name):
                return True
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
        }

    def _pid(self, name: str) -> int | None:
        try:
            return int(Path(self._paths(name)["pid"]).read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, name: str) -> bool:
        """qemu of this instance runs: its pid's command line names our monitor socket."""
        pid = self._pid(name)
        if pid is None:
            return False
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        zombie = stat.rsplit(")", 1)[1].split()[0] == "Z"
        return not zombie and self._paths(name)["qmp"].encode() in cmdline

    def _load(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(Path(self._paths(name)["runtime"]).read_text())
        except FileNotFoundError:
            return None

    def _save(self, name: str, runtime: dict[str, Any]) -> None:
        path = Path(self._paths(name)["runtime"])
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(runtime))
        os.replace(tmp, path)


def build_command(spec: dict[str, Any], disk_paths: list[str], paths: dict[str, str]) -> list[str]:
    """The qemu command line for a checked spec; refuses what qemu could not honour.

    Every value that lands inside a qemu option list is checked for commas and other
    separators first: a path like ``a,format=qcow2`` must be refused, not parsed.
    """
    hv = spec["hvparams"]
    accel = hv["acceleration"]
    cpu = hv["cpu_type"] or ("host" if accel == "kvm" else "max")
    _check_option_value("spec.hvparams.cpu_type", cpu)
    _check_option_value("spec.hvparams.machine_type", hv["machine_type"])
    name = spec["name"]
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
        "-daemonize",
        "-pidfile", paths["pid"],
        "-chardev", f"socket,id=qmp,path={paths['qmp']},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
    ]  # fmt: skip
    for key in ("pid", "qmp", "serial_sock", "serial_log"):
        _check_option_value(f"spec.name ({key} path)", paths[key])
    if spec.get("uuid"):
        argv += ["-uuid", str(spec["uuid"])]
    if not hv["acpi"]:
        argv.append("-no-acpi")
    if hv["reboot_behavior"] == "exit":
        argv.append("-no-reboot")
    if hv["serial_console"]:
        argv += [
            "-chardev",
            f"socket,id=serial0,path={paths['serial_sock']},server=on,wait=off,"
            f"logfile={paths['serial_log']},logappend=off",
            "-serial", "chardev:serial0",
        ]  # fmt: skip
    if hv["vnc_bind_address"]:
        _check_option_value("spec.hvparams.vnc_bind_address", hv["vnc_bind_address"])
        argv += ["-vnc", f"{hv['vnc_bind_address']}:0,to=99"]
    argv += _boot_args(hv)
    argv += _disk_args(spec, disk_paths, hv["disk_cache"])
    argv += _nic_args(spec)
    return argv


def boot_hvparams(boot: dict[str, str]) -> dict[str, str]:
    """The hvparams a one-off boot override stands for."""
    return {
        "kernel_path": boot["kernel"],
        "initrd_path": boot["initrd"],
        "kernel_args": boot["cmdline"],
    }


def _boot_args(hv: dict[str, Any]) -> list[str]:
    if not hv["kernel_path"]:
        if hv["initrd_path"]:
            raise ValidationError(
                "spec.hvparams.initrd_path", hv["initrd_path"], "empty unless kernel_path is set"
            )
        return ["-boot", {"disk": "c", "cdrom": "d", "network": "n"}[hv["boot_order"]]]
    args = ["-kernel", hv["kernel_path"], "-append", hv["kernel_args"]]
    if hv["initrd_path"]:
        args += ["-initrd", hv["initrd_path"]]
    return args


def _disk_args(spec: dict[str, Any], disk_paths: list[str], cache: str) -> list[str]:
    args: list[str] = []
    for i, (disk, path) in enumerate(zip(spec.get("disks", []), disk_paths, strict=True)):
        field = f"spec.disks[{i}]"
        _check_option_value(f"disk_paths[{i}]", path)
        mode = disk.get("mode", "rw")
        if mode not in ("rw", "ro"):
            raise ValidationError(f"{field}.mode", mode, "rw or ro (hypervisor kvm)")
        drive = f"file={path},format=raw,if=virtio,index={i}"
        if mode == "ro":
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


def _create_taps(spec: dict[str, Any]) -> list[str]:
    """Create each NIC's tap and plug it into its bridge before qemu opens it."""
    created: list[str] = []
    try:
        for nic, tap in zip(spec.get("nics", []), _tap_names(spec), strict=True):
            _ip("tuntap", "add", "dev", tap, "mode", "tap")
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


def _free_port() -> int:
    """A TCP port free right now; qemu binds it a moment later (a clash fails loudly)."""
    with socket.create_server(("0.0.0.0", 0)) as sock:
        return int(sock.getsockname()[1])
