"""The process that stands in for a VM under the ``fake`` hypervisor.

It is a real process so everything around it is real: it holds its disks open, can
crash or be killed, survives the agent session that started it, and a migration moves
real bytes over the network to a new process on another node.  It reports through a
status file (written atomically) with a heartbeat the tests and ``info`` read.

Signals play the hypervisor's controls: SIGTERM is the ACPI power button (ignored when
the instance has ``acpi`` off, as a hung guest would), SIGUSR1 asks for a soft reboot
(the boot counter goes up), SIGUSR2 resumes an instance that arrived by migration.

With ``--incoming-fd`` it starts paused, as ``qemu -incoming`` does: it accepts a
migration stream on the inherited listening socket, confirms its checksum to the sender,
and runs only when resumed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONTROL_SIGNALS = {signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}
INCOMING_TIMEOUT = 600.0
MAX_HEADER = 1024 * 1024
CHUNK = 1024 * 1024


class Guest:
    """The guest's state and its status file."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.name: str = args.name
        self.status_path = Path(args.status)
        self.interval: float = args.interval
        self.acpi: bool = args.acpi
        self.disk_paths: list[str] = args.disks
        self.attached: list[tuple[str, int]] = []
        self.boots = 0
        self.phase = "starting"
        self.started_at = time.time()
        self.migration: dict[str, Any] | None = None

    def write_status(self) -> None:
        status = {
            "name": self.name,
            "pid": os.getpid(),
            "phase": self.phase,
            "boots": self.boots,
            "heartbeat": time.time(),
            "started_at": self.started_at,
            "disks": [
                {"path": path, "size": os.lseek(fd, 0, os.SEEK_END)} for path, fd in self.attached
            ],
            "migration": self.migration,
        }
        tmp = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_path)

    def attach(self) -> None:
        """(Re)open every disk read-write, as a VM attaches its block devices, and run."""
        for _, fd in self.attached:
            os.close(fd)
        self.attached = [(path, os.open(path, os.O_RDWR)) for path in self.disk_paths]
        self.phase = "running"
        self.write_status()

    def boot(self) -> None:
        self.boots += 1
        self.attach()

    def run(self) -> int:
        """Heartbeat until the power button is pressed (or forever without ACPI)."""
        while True:
            sig = signal.sigtimedwait(CONTROL_SIGNALS, self.interval)
            if sig is not None and sig.si_signo == signal.SIGTERM and self.acpi:
                self.phase = "shutdown"
                self.write_status()
                return 0
            if sig is not None and sig.si_signo == signal.SIGUSR1:
                self.boot()
            else:
                self.write_status()

    def receive(self, listener: socket.socket) -> bool:
        """Accept migration streams until one for this instance arrives intact.

        A connection that is not a migration of this instance (a port scan, a stale
        sender) is dropped and the wait goes on.  False if powered off or timed out.
        """
        self.phase = "incoming"
        self.write_status()
        listener.settimeout(self.interval)
        deadline = time.monotonic() + INCOMING_TIMEOUT
        while time.monotonic() < deadline:
            if _pending(signal.SIGTERM):
                return False
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                self.write_status()
                continue
            with conn:
                if self._receive_one(conn):
                    return True
        return False

    def _receive_one(self, conn: socket.socket) -> bool:
        conn.settimeout(60.0)
        stream = conn.makefile("rb")
        try:
            header = json.loads(stream.readline(MAX_HEADER))
            if not isinstance(header, dict) or header.get("name") != self.name:
                return False
            remaining = int(header["image_bytes"])
            digest = hashlib.sha256()
            received = 0
            while received < remaining:
                chunk = stream.read(min(CHUNK, remaining - received))
                if not chunk:
                    return False
                digest.update(chunk)
                received += len(chunk)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        ok = digest.hexdigest() == header.get("sha256")
        if ok:
            # Recorded before the sender hears of it: the sender's next step is asking
            # this node to resume the copy, which reads this status.
            self.boots = int(header.get("boots", 0))
            self.migration = {"bytes": received, "sha256": digest.hexdigest(), "time": time.time()}
            self.phase = "received"
            self.write_status()
        conn.sendall(
            json.dumps({"ok": ok, "sha256": digest.hexdigest(), "bytes": received}).encode() + b"\n"
        )
        return ok

    def wait_resume(self) -> bool:
        """Paused after an incoming migration: SIGUSR2 resumes, SIGTERM discards."""
        while True:
            sig = signal.sigtimedwait({signal.SIGTERM, signal.SIGUSR2}, self.interval)
            if sig is None:
                self.write_status()
            else:
                return sig.si_signo == signal.SIGUSR2


def _pending(signo: int) -> bool:
    return signal.sigtimedwait({signo}, 0) is not None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake_guest", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--status", required=True, help="status file to keep up to date")
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat seconds")
    parser.add_argument("--acpi", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--incoming-fd", type=int, help="listening socket for a migration")
    parser.add_argument("disks", nargs="*")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Blocked signals wait in the queue for sigtimedwait: no handler races the loop.
    signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
    guest = Guest(args)
    if args.incoming_fd is not None:
        listener = socket.socket(fileno=args.incoming_fd)
        with listener:
            if not guest.receive(listener):
                return 1
        if not guest.wait_resume():
            return 0
        guest.attach()
    else:
        guest.boot()
    return guest.run()


if __name__ == "__main__":
    sys.exit(main())
