"""A small QMP (QEMU Machine Protocol) client over a Unix socket.

QMP is JSON objects, one per line, in both directions: a greeting, then replies that
carry the request's ``id``, interleaved with asynchronous events (``POWERDOWN``,
``SHUTDOWN``, ``MIGRATION`` …).  Matching replies by ``id`` and queueing events on the
side means a caller that waits for a reply never loses an event it wants to look at
next, and a stale reply left by a timed-out command is never mistaken for a new one.

No external library: the protocol is small, and the node agent must not grow
dependencies that every node then has to install.
"""

from __future__ import annotations

import collections
import itertools
import json
import socket
import time
from types import TracebackType
from typing import Any

from herd.errors import HerdError

DEFAULT_TIMEOUT = 10.0


class QMPError(HerdError):
    """QEMU answered a command with an error, or the monitor could not be talked to."""

    kind = "QMPError"


class QMPClient:
    """One QMP session: connect, negotiate capabilities, then ``execute`` commands.

    Not thread-safe: a node agent action owns its session for the action's duration.
    """

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self.greeting: dict[str, Any] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> QMPClient:
        """Connect and leave capabilities negotiation mode (commands are refused before)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise QMPError(
                f"cannot connect to QMP socket {self.path}: {exc}", path=self.path
            ) from exc
        self._sock = sock
        greeting = self._read_message(time.monotonic() + self.timeout)
        if "QMP" not in greeting:
            self.close()
            raise QMPError(f"no QMP greeting on {self.path}: {greeting!r}", path=self.path)
        self.greeting = greeting["QMP"]
        self.execute("qmp_capabilities")
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> QMPClient:
        return self.connect() if self._sock is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Run one command and return its ``return`` value; QMPError carries QEMU's error."""
        req_id = f"herd-{next(self._ids)}"
        request: dict[str, Any] = {"execute": command, "id": req_id}
        if arguments:
            request["arguments"] = arguments
        self._send(request)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self._read_message(deadline, command)
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id") != req_id:
                continue
            elif "error" in msg:
                err = msg["error"]
                raise QMPError(
                    f"QMP command {command} failed: {err.get('desc', err)}",
                    command=command,
                    error_class=str(err.get("class", "")),
                    path=self.path,
                )
            else:
                return msg.get("return")

    def wait_event(self, names: set[str], timeout: float) -> dict[str, Any] | None:
        """The first queued or arriving event named in ``names``, or None on timeout.

        Events with other names stay queued in order for later callers.
        """
        for msg in list(self.events):
            if msg["event"] in names:
                self.events.remove(msg)
                return msg
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._read_message(deadline, "event wait")
            except QMPError as exc:
                if exc.details.get("reason") == "timeout":
                    return None
                raise
            if msg.get("event") in names:
                return msg
            if "event" in msg:
                self.events.append(msg)

    def _send(self, request: dict[str, Any]) -> None:
        if self._sock is None:
            raise QMPError(f"QMP session on {self.path} is not connected", path=self.path)
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise QMPError(f"QMP write to {self.path} failed: {exc}", path=self.path) from exc

    def _read_message(self, deadline: float, waiting_for: str = "greeting") -> dict[str, Any]:
        if self._sock is None:
            raise QMPError(f"QMP session on {self.path} is not connected", path=self.path)
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QMPError(
                    f"timed out waiting for QMP {waiting_for} on {self.path}",
                    path=self.path,
                    reason="timeout",
                )
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise QMPError(f"QMP read from {self.path} failed: {exc}", path=self.path) from exc
            if not chunk:
                raise QMPError(
                    f"QEMU closed the QMP socket {self.path} while waiting for {waiting_for}",
                    path=self.path,
                    reason="closed",
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise QMPError(f"malformed QMP message on {self.path}: {line[:200]!r}") from exc
        if not isinstance(msg, dict):
            raise QMPError(f"malformed QMP message on {self.path}: {line[:200]!r}")
        return msg
