"""The ``fake`` hypervisor: one real process per instance instead of a VM.

It lets the whole stack (ops, jobs, RPC, lab nodes) start, stop, reboot, lose and
migrate instances in milliseconds on machines without usable virtualisation, while the
things that can go wrong stay real: processes die, pids get reused, a migration crosses
the network.  The guest is ``herd.node.hv.fake_guest``; this module is its hypervisor.

Per instance, ``<root>/hv/fake/`` holds ``<name>.json`` (what we started: pid, its
kernel start time, spec, disk paths, status), ``<name>.guest.json`` (what the guest
reports: phase, boots, heartbeat) and ``<name>.log``.  A recorded pid is trusted only if
``/proc/<pid>/stat`` shows the same start time, so a reused pid reads as a crash rather
than as our instance.  Guests run in their own session, so they outlive the agent.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from herd import hvparams
from herd.errors import (
    ConflictError,
    NodeError,
    NotFoundError,
    PrerequisiteError,
    TransferError,
    ValidationError,
)
from herd.node import proc
from herd.node.actions.registry import NodeContext
from herd.node.hv.base import (
    Hypervisor,
    MigrationTLS,
    check_name,
    check_spec,
    register_hypervisor,
)

MIB = 1024 * 1024
#: Seconds a fake guest may take to report ready: a bound for a broken guest, not a
#: pace. A Python start on a loaded, software-emulated VM node took longer than 15 s.
READY_TIMEOUT = 60.0
KILL_TIMEOUT = 5.0
CONNECT_TIMEOUT = 10.0
CONFIRM_TIMEOUT = 60.0
GUEST_MODULE = "herd.node.hv.fake_guest"
INCOMING_FD = 3
#: Helper images the fake hypervisor emulates, by their ``herd.helper=`` name.
HELPERS = {"zero": "herd.node.hv.fake_zeroing"}


@register_hypervisor
class FakeHypervisor(Hypervisor):
    """Instances as detached ``fake_guest`` processes with a status file each."""

    name = "fake"
    PARAMETERS = hvparams.FAKE

    @property
    def state_dir(self) -> Path:
        return self.ctx.root / "hv" / "fake"

    def start(
        self, spec: dict[str, Any], disk_paths: list[str], boot: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """With ``boot``, the helper image runs instead of the guest (see ``HELPERS``)."""
        spec = self._checked(spec, disk_paths)
        helper = None if boot is None else _helper_for(boot)
        name = spec["name"]
        state = self._load(name)
        if state is not None and _alive(state):
            if state["status"] == "running" and (
                state["spec"],
                state["disk_paths"],
                state.get("boot"),
            ) == (spec, disk_paths, boot):
                return {"changed": False, "pid": state["pid"]}
            raise ConflictError(
                f"instance {name} is already {state['status']} here with another spec",
                name=name,
                status=state["status"],
            )
        self._forget(name)
        if helper is not None:
            # A helper powers itself off when done; nobody waits for it to get "ready".
            state = self._spawn(spec, disk_paths, "running", helper=helper, boot=boot)
            return {"changed": True, "pid": state["pid"]}
        state = self._spawn(spec, disk_paths, "running")
        self._wait_guest(state, lambda g: g["phase"] == "running")
        return {"changed": True, "pid": state["pid"]}

    def stop(self, name: str, timeout: float, force: bool) -> dict[str, Any]:
        state = self._load(check_name(name))
        if state is None:
            return {"changed": False, "method": None}
        if not _alive(state):
            self._forget(name)
            return {"changed": True, "method": "crashed"}
        if force:
            method = "kill"
        elif _terminate(state, signal.SIGTERM, timeout):
            method = "acpi"
        else:
            method = "kill-after-timeout"
        if method != "acpi" and not _terminate(state, signal.SIGKILL, KILL_TIMEOUT):
            raise NodeError(f"instance {name} (pid {state['pid']}) survived SIGKILL", name=name)
        self._forget(name)
        return {"changed": True, "method": method}

    def reboot(self, name: str, hard: bool) -> dict[str, Any]:
        state = self._running(check_name(name))
        if hard:
            self.stop(name, 0.0, force=True)
            state = self._spawn(state["spec"], state["disk_paths"], "running")
            guest = self._wait_guest(state, lambda g: g["phase"] == "running")
        else:
            boots = self._guest(name)["boots"]
            os.kill(state["pid"], signal.SIGUSR1)
            guest = self._wait_guest(state, lambda g: g["boots"] > boots)
        return {"changed": True, "hard": hard, "pid": state["pid"], "boots": guest["boots"]}

    def info(self, name: str) -> dict[str, Any] | None:
        state = self._load(check_name(name))
        if state is None:
            return None
        guest = self._guest(name)
        # A migrated-away source has no process by design; only a live status can crash.
        gone = state["status"] != "migrated" and not _alive(state)
        return {
            "name": name,
            "hypervisor": self.name,
            "state": "crashed" if gone else state["status"],
            "pid": state["pid"],
            "memory": state["spec"]["beparams"]["memory"],
            "vcpus": state["spec"]["beparams"]["vcpus"],
            "started_at": state["started_at"],
            "disk_paths": state["disk_paths"],
            "boots": guest.get("boots"),
            "heartbeat": guest.get("heartbeat"),
        }

    def list(self) -> list[dict[str, Any]]:
        if not self.state_dir.is_dir():
            return []
        names = sorted(
            p.name.removesuffix(".json")
            for p in self.state_dir.glob("*.json")
            if not p.name.endswith(".guest.json")
        )
        return [info for info in map(self.info, names) if info is not None]

    def console(self, name: str) -> dict[str, Any]:
        state = self._running(check_name(name))
        return {
            "changed": False,
            "kind": "message",
            "message": f"instance {name} runs under the fake hypervisor as pid "
            f"{state['pid']}; it has no console",
        }

    def migration_accept(
        self,
        spec: dict[str, Any],
        disk_paths: builtins.list[str],
        bind_ip: str = "127.0.0.1",
        tls: MigrationTLS | None = None,
    ) -> dict[str, Any]:
        """Listens on ``bind_ip`` like kvm; ``tls`` is unused (the fake stream is test data)."""
        spec = self._checked(spec, disk_paths)
        name = spec["name"]
        state = self._load(name)
        if state is not None and _alive(state):
            if state["status"] == "incoming" and state["spec"] == spec:
                return {"changed": False, "port": state["port"]}
            raise ConflictError(
                f"instance {name} is already {state['status']} on this node",
                name=name,
                status=state["status"],
            )
        self._forget(name)
        with socket.create_server((bind_ip, 0)) as listener:
            port = listener.getsockname()[1]
            state = self._spawn(spec, disk_paths, "incoming", listener, port)
        self._wait_guest(state, lambda g: g["phase"] == "incoming")
        return {"changed": True, "port": port}

    def migrate(
        self, name: str, target_ip: str, port: int, live: bool, tls: MigrationTLS | None = None
    ) -> dict[str, Any]:
        state = self._load(check_name(name))
        if state is not None and state["status"] == "migrated":
            return {"changed": False, **state["migration"]}
        state = self._running(name)
        size = state["spec"]["hvparams"]["migration_image_mib"] * MIB
        image = os.urandom(size)
        header = {
            "name": name,
            "spec": state["spec"],
            "boots": self._guest(name)["boots"],
            "image_bytes": size,
            "sha256": hashlib.sha256(image).hexdigest(),
        }
        if not live:
            os.kill(state["pid"], signal.SIGSTOP)
        try:
            reply = _send(target_ip, port, header, image)
        except BaseException:
            if not live:
                os.kill(state["pid"], signal.SIGCONT)
            raise
        # The target holds the instance now: the source copy must not run on.
        _terminate(state, signal.SIGKILL, KILL_TIMEOUT)
        state["status"] = "migrated"
        state["migration"] = {
            "target": f"{target_ip}:{port}",
            "bytes": reply["bytes"],
            "sha256": reply["sha256"],
            "live": live,
        }
        self._save(state)
        return {"changed": True, **state["migration"]}

    def migration_finish(self, name: str, success: bool) -> dict[str, Any]:
        state = self._load(check_name(name))
        if state is None:
            return {"changed": False, "role": None}
        status = state["status"]
        if status == "incoming":
            if not success:
                self.stop(name, 0.0, force=True)
                return {"changed": True, "role": "target", "state": None}
            if self._guest(name).get("phase") != "received" or not _alive(state):
                raise NodeError(f"no complete migration of {name} arrived here", name=name)
            os.kill(state["pid"], signal.SIGUSR2)
            self._wait_guest(state, lambda g: g["phase"] == "running")
            state["status"] = "running"
            self._save(state)
            return {"changed": True, "role": "target", "state": "running"}
        if status == "migrated":
            if success:
                self._forget(name)
                return {"changed": True, "role": "source", "state": None}
            # The source copy was killed once the target confirmed; boot it again here
            # rather than leave the instance running nowhere.
            self._forget(name)
            state = self._spawn(state["spec"], state["disk_paths"], "running")
            self._wait_guest(state, lambda g: g["phase"] == "running")
            return {"changed": True, "role": "source", "state": "running"}
        if _alive(state) and _proc_state(state["pid"]) == "T":
            os.kill(state["pid"], signal.SIGCONT)
            return {"changed": True, "role": "source", "state": "running"}
        return {"changed": False, "role": None, "state": status}

    def _checked(self, spec: dict[str, Any], disk_paths: builtins.list[str]) -> dict[str, Any]:
        spec = check_spec(spec, type(self))
        if len(disk_paths) != len(spec.get("disks", [])):
            raise ValidationError(
                "disk_paths", disk_paths, f"one path per disk of the spec ({len(spec['disks'])})"
            )
        for i, path in enumerate(disk_paths):
            if not os.path.exists(path):
                raise NotFoundError(f"disk path {path} does not exist", field=f"disk_paths[{i}]")
        return spec

    def _running(self, name: str) -> dict[str, Any]:
        state = self._load(name)
        if state is None or state["status"] != "running" or not _alive(state):
            raise PrerequisiteError(f"instance {name} is not running on this node", name=name)
        return state

    def _spawn(
        self,
        spec: dict[str, Any],
        disk_paths: builtins.list[str],
        status: str,
        listener: socket.socket | None = None,
        port: int | None = None,
        helper: str | None = None,
        boot: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Start a guest (or the ``helper`` module) in its own session with no tie to the
        agent's stdio.

        posix_spawn instead of Popen: there is no Popen object to outlive, and only the
        descriptors named here reach the guest, never the agent's framing pipes.
        """
        name = spec["name"]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        args = disk_paths
        if helper is not None:
            argv = [sys.executable, "-m", helper, "--name", name]
            # Read-only disks stay untouched, as under kvm where they are readonly=on.
            disks = spec.get("disks", [])
            args = [p for p, d in zip(disk_paths, disks, strict=True) if d.get("mode") != "ro"]
        else:
            argv = [
                sys.executable, "-m", GUEST_MODULE, "--name", name,
                "--status", str(self._path(name, ".guest.json")),
                "--interval", str(spec["hvparams"]["heartbeat_interval"]),
                "--acpi" if spec["hvparams"]["acpi"] else "--no-acpi",
            ]  # fmt: skip
        log = os.open(self._path(name, ".log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ]
        if listener is not None:
            argv += ["--incoming-fd", str(INCOMING_FD)]
            actions.append((os.POSIX_SPAWN_DUP2, listener.fileno(), INCOMING_FD))
        try:
            pid = os.posix_spawn(
                sys.executable, [*argv, "--", *args], os.environ,
                file_actions=actions, setsid=True,
            )  # fmt: skip
        finally:
            os.close(log)
        state = {
            "name": name,
            "pid": pid,
            "starttime": _starttime(pid),
            "spec": spec,
            "disk_paths": disk_paths,
            "started_at": time.time(),
            "status": status,
            "port": port,
            "boot": boot,
        }
        self._save(state)
        return state

    def _wait_guest(
        self, state: dict[str, Any], ready: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """The guest's status once ``ready`` holds; NodeError with its log if it dies."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            guest = self._guest(state["name"])
            if guest.get("pid") == state["pid"] and ready(guest):
                return guest
            if not _alive(state):
                break
            time.sleep(0.01)
        _terminate(state, signal.SIGKILL, KILL_TIMEOUT)
        log = self._path(state["name"], ".log").read_text(errors="replace")[-1000:]
        raise NodeError(
            f"fake guest of {state['name']} did not get ready: {log.strip() or 'no output'}",
            name=state["name"],
        )

    def _path(self, name: str, suffix: str) -> Path:
        return self.state_dir / f"{name}{suffix}"

    def _load(self, name: str) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self._path(name, ".json").read_text())
        except FileNotFoundError:
            return None
        return state

    def _guest(self, name: str) -> dict[str, Any]:
        try:
            guest: dict[str, Any] = json.loads(self._path(name, ".guest.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return guest

    def _save(self, state: dict[str, Any]) -> None:
        path = self._path(state["name"], ".json")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _forget(self, name: str) -> None:
        for suffix in (".json", ".guest.json"):
            self._path(name, suffix).unlink(missing_ok=True)


def list_processes(ctx: NodeContext) -> list[dict[str, Any]]:
    """Fake guests and helpers running on this node, found by process rather than by state
    file: a guest whose state file is gone (or was never written) still runs."""
    modules = {GUEST_MODULE, *HELPERS.values()}
    return [
        {"hypervisor": FakeHypervisor.name, "name": name, "pid": pid}
        for pid, argv in proc.own_processes()
        if proc.python_module(argv) in modules
        and (name := proc.arg_value(argv, "--name"))
        and _of_this_node(ctx, argv)
    ]


def _of_this_node(ctx: NodeContext, argv: list[str]) -> bool:
    """Whether a guest keeps its status under this node's state: nodes that share one
    process namespace (the in-process test nodes, several agents on one host) must not
    count each other's guests as their orphans. Helpers carry no status and count."""
    status = proc.arg_value(argv, "--status")
    return status is None or Path(status).parent == FakeHypervisor(ctx).state_dir


def _helper_for(boot: dict[str, str]) -> str:
    """The module emulating the helper image ``boot`` asks for.

    The fake hypervisor runs no kernel, so it cannot boot an arbitrary image; it stands in
    for the helpers Herd ships, recognised by the ``herd.helper=`` word their command
    line carries. Any other override is refused rather than silently booting nothing.
    """
    words = dict(w.split("=", 1) for w in boot["cmdline"].split() if "=" in w)
    module = HELPERS.get(words.get("herd.helper", ""))
    if module is None:
        raise ValidationError(
            "boot.cmdline",
            boot["cmdline"],
            "a command line with herd.helper="
            + "|".join(sorted(HELPERS))
            + " (hypervisor fake emulates only Herd's helper images)",
        )
    return module


def _send(target_ip: str, port: int, header: dict[str, Any], image: bytes) -> dict[str, Any]:
    """Stream the spec and image to the target and return its verified confirmation."""
    where = f"{target_ip}:{port}"
    try:
        with socket.create_connection((target_ip, port), timeout=CONNECT_TIMEOUT) as conn:
            conn.settimeout(CONFIRM_TIMEOUT)
            conn.sendall(json.dumps(header).encode() + b"\n")
            conn.sendall(image)
            line = conn.makefile("rb").readline(64 * 1024)
    except OSError as exc:
        raise TransferError(
            f"migration of {header['name']} to {where} failed: {exc}", target=where
        ) from exc
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if (
        not isinstance(reply, dict)
        or not reply.get("ok")
        or reply.get("sha256") != header["sha256"]
    ):
        raise TransferError(
            f"target {where} did not confirm the migration of {header['name']}: {reply!r}",
            target=where,
        )
    return reply


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), None if gone."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own exited children so they read as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _starttime(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _proc_state(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[0] if fields else None


def _alive(state: dict[str, Any]) -> bool:
    """The recorded process still runs and is the one we started (not a reused pid)."""
    fields = _proc_stat(state["pid"])
    return (
        fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == state["starttime"]
    )


def _terminate(state: dict[str, Any], sig: signal.Signals, timeout: float) -> bool:
    """Send ``sig`` (waking a stopped guest so it can act on it); True once it is gone."""
    with contextlib.suppress(ProcessLookupError):
        if _alive(state):
            os.kill(state["pid"], sig)
            os.kill(state["pid"], signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while _alive(state):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
