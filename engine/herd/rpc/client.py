"""Calls to node agents over long-lived ``herd-node --serve`` sessions.

A fresh ``ssh node herd-node`` per call would cost a handshake plus a Python start
(hundreds of milliseconds); a session kept open on the pooled transport answers a
request in about a millisecond of agent time.  See ``herd.node.agent`` for the framing.

Concurrency: each session is strictly one request at a time (write a line, read its
answer), and a node gets a small set of sessions, up to ``max_sessions`` in parallel.
Multiplexing many requests by id over a single session was the alternative; it would
need a threaded agent, and one slow action (a disk wipe) would still share a process
and its failure modes with every other call to that node.  Separate sessions keep the
agent a simple sequential loop, let slow and fast calls to one node overlap, and cost
one extra Python start only when a node really has that many calls in flight.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paramiko

from herd.errors import HerdError, NodeError
from herd.rpc.protocol import PROTOCOL, CallResult, result_of
from herd.rpc.ssh import NodeAddress, SSHPool

DEFAULT_COMMAND = "herd-node --serve"
STDERR_TAIL_BYTES = 4096


#: How long a new agent may take to send its banner: an interpreter start and the
#: engine's imports, which take seconds on a busy host (a software-emulated guest on a
#: loaded machine took over 10 s), where a TCP connect that slow would mean the node is
#: gone; the SSH connect keeps its own, shorter bound.
AGENT_START_TIMEOUT = 60.0


class _BrokenSession(Exception):
    """The session can no longer be trusted; the request may or may not have run."""


class _Session:
    """One running ``herd-node --serve`` on one channel; used by one thread at a time."""

    def __init__(self, node: NodeAddress, channel: paramiko.Channel) -> None:
        self.node = node
        self.channel = channel
        self._reader = channel.makefile("rb")
        self._ids = itertools.count(1)
        self._stderr: deque[int] = deque(maxlen=STDERR_TAIL_BYTES)

    def read_banner(self, timeout: float) -> dict[str, Any]:
        self.channel.settimeout(timeout)
        banner = self._read_frame()
        if banner.get("agent") != "herd-node" or banner.get("protocol") != PROTOCOL:
            raise _BrokenSession(f"unexpected agent banner {banner!r}")
        return banner

    def alive(self) -> bool:
        transport = self.channel.get_transport()
        return (
            not self.channel.closed
            and not self.channel.exit_status_ready()
            and transport is not None
            and transport.is_active()
        )

    def call(self, action: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and read its answer; agent errors come back as their HerdError."""
        req_id = next(self._ids)
        line = json.dumps({"id": req_id, "action": action, "args": args}) + "\n"
        self.channel.settimeout(timeout)
        try:
            self.channel.sendall(line.encode())
        except (OSError, paramiko.SSHException) as exc:
            raise _BrokenSession(f"send failed: {exc or type(exc).__name__}") from exc
        answer = self._read_frame()
        if answer.get("id") != req_id:
            raise _BrokenSession(f"answer for request {answer.get('id')!r}, expected {req_id}")
        return result_of(answer, self.node.name)

    def stderr_tail(self) -> str:
        return bytes(self._stderr).decode("utf-8", "replace").strip()

    def close(self) -> None:
        """End the agent cleanly: EOF on its stdin makes it exit."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.shutdown_write()
        self.channel.close()

    def _read_frame(self) -> dict[str, Any]:
        try:
            line = self._reader.readline()
        except TimeoutError as exc:
            raise _BrokenSession("no answer before the timeout") from exc
        except (OSError, paramiko.SSHException) as exc:
            raise _BrokenSession(f"read failed: {exc or type(exc).__name__}") from exc
        finally:
            self._drain_stderr()
        if not line:
            status = self.channel.exit_status if self.channel.exit_status_ready() else None
            raise _BrokenSession(f"agent exited (status {status})")
        try:
            frame = json.loads(line)
        except ValueError as exc:
            raise _BrokenSession(f"garbled frame {line[:80]!r}") from exc
        if not isinstance(frame, dict):
            raise _BrokenSession(f"garbled frame {line[:80]!r}")
        return frame

    def _drain_stderr(self) -> None:
        """Keep the agent's stderr flowing (a full window would block it) and its tail."""
        while self.channel.recv_stderr_ready():
            self._stderr.extend(self.channel.recv_stderr(STDERR_TAIL_BYTES))


class _NodeSessions:
    """Idle sessions of one node plus how many exist, guarded by one condition."""

    def __init__(self) -> None:
        self.idle: list[_Session] = []
        self.count = 0
        self.cond = threading.Condition()


class NodeClient:
    """Thread-safe client of node agents, keeping sessions open between calls."""

    def __init__(
        self,
        pool: SSHPool,
        *,
        command: str = DEFAULT_COMMAND,
        call_timeout: float = 60.0,
        max_sessions: int = 4,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.pool = pool
        self.command = command
        self.call_timeout = call_timeout
        self.max_sessions = max_sessions
        #: ``herd-node --serve`` sessions started per node (tests and stats read it).
        self.sessions_opened: Counter[str] = Counter()
        self._nodes: dict[str, _NodeSessions] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        node: NodeAddress,
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run ``action`` on ``node`` and return its result.

        Raises the agent's own HerdError subclass for a refused or failed action, and
        NodeError (naming the node) when the node or its session fails.  A session found
        dead before sending is replaced once; a request that was sent is never resent,
        since it may already have run.
        """
        slot = self._slot(node.name)
        session = self._acquire(node, slot)
        if not session.alive():
            self._discard(slot, session)
            session = self._acquire(node, slot)
        try:
            result = session.call(action, args or {}, timeout or self.call_timeout)
        except _BrokenSession as exc:
            self._discard(slot, session)
            raise self._node_error(node, session, f"call {action} failed: {exc}") from exc
        except HerdError:
            self._release(slot, session)
            raise
        except BaseException:
            self._discard(slot, session)
            raise
        self._release(slot, session)
        return result

    def call_many(
        self,
        nodes: Iterable[NodeAddress],
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
        max_workers: int = 16,
    ) -> dict[str, CallResult]:
        """Run one action on many nodes in parallel; one node failing does not stop others."""
        targets = list(nodes)
        if not targets:
            return {}

        def one(node: NodeAddress) -> CallResult:
            try:
                return CallResult(node.name, result=self.call(node, action, args, timeout))
            except HerdError as exc:
                return CallResult(node.name, error=exc)

        with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
            return {r.node: r for r in pool.map(one, targets)}

    def close(self) -> None:
        """End every idle session; sessions in use end when their call returns."""
        with self._lock:
            slots = list(self._nodes.values())
        for slot in slots:
            with slot.cond:
                idle, slot.idle = slot.idle, []
                slot.count -= len(idle)
                slot.cond.notify_all()
            for session in idle:
                session.close()

    def _slot(self, name: str) -> _NodeSessions:
        with self._lock:
            return self._nodes.setdefault(name, _NodeSessions())

    def _acquire(self, node: NodeAddress, slot: _NodeSessions) -> _Session:
        with slot.cond:
            while not slot.idle and slot.count >= self.max_sessions:
                slot.cond.wait()
            if slot.idle:
                return slot.idle.pop()
            slot.count += 1
        try:
            return self._open(node)
        except BaseException:
            with slot.cond:
                slot.count -= 1
                slot.cond.notify()
            raise

    def _release(self, slot: _NodeSessions, session: _Session) -> None:
        with slot.cond:
            slot.idle.append(session)
            slot.cond.notify()

    def _discard(self, slot: _NodeSessions, session: _Session) -> None:
        session.close()
        with slot.cond:
            slot.count -= 1
            slot.cond.notify()

    def _open(self, node: NodeAddress) -> _Session:
        channel = self.pool.open_channel(node, self.command)
        session = _Session(node, channel)
        try:
            session.read_banner(AGENT_START_TIMEOUT)
        except _BrokenSession as exc:
            session.close()
            raise self._node_error(node, session, f"cannot start '{self.command}': {exc}") from exc
        self.sessions_opened[node.name] += 1
        return session

    @staticmethod
    def _node_error(node: NodeAddress, session: _Session, what: str) -> NodeError:
        stderr = session.stderr_tail()
        return NodeError(
            f"node {node.name} ({node.host}): {what}" + (f"; stderr: {stderr}" if stderr else ""),
            node=node.name,
            address=node.host,
            stderr=stderr,
        )
