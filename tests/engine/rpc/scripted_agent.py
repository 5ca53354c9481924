"""A ``herd-node --serve`` session without SSH: NodeClient over a channel that answers from
a script, so the client's own error paths run without a lab node."""

from __future__ import annotations

import io
import json
from typing import Any

from herd.node.agent import banner
from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress

NODE = NodeAddress("n1", "192.0.2.1", "ssh-ed25519 AAAA")


class ScriptedChannel:
    """The part of a paramiko channel a session uses: it reads the banner and then
    ``frames`` (JSON documents, or raw bytes for a garbled line) and ``stderr``."""

    def __init__(self, frames: list[dict[str, Any] | bytes], stderr: bytes = b"") -> None:
        lines = [f if isinstance(f, bytes) else json.dumps(f).encode() for f in frames]
        self._stdout = io.BytesIO(
            b"".join(line + b"\n" for line in [json.dumps(banner()).encode(), *lines])
        )
        self._stderr = stderr
        self.closed = False
        self.sent: list[bytes] = []
        self.timeouts: list[float] = []

    def makefile(self, mode: str) -> io.BytesIO:
        return self._stdout

    def settimeout(self, timeout: float) -> None:
        self.timeouts.append(timeout)

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def recv_stderr_ready(self) -> bool:
        return bool(self._stderr)

    def recv_stderr(self, size: int) -> bytes:
        chunk, self._stderr = self._stderr[:size], self._stderr[size:]
        return chunk

    def exit_status_ready(self) -> bool:
        return False

    def get_transport(self) -> ScriptedChannel:
        return self

    def is_active(self) -> bool:
        return not self.closed

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class ScriptedPool:
    """Hands out the given channels, one per session the client opens."""

    connect_timeout = 5.0

    def __init__(self, *channels: ScriptedChannel) -> None:
        self.channels = list(channels)

    def open_channel(self, node: NodeAddress, command: str) -> ScriptedChannel:
        return self.channels.pop(0)


def scripted_client(*channels: ScriptedChannel) -> NodeClient:
    return NodeClient(ScriptedPool(*channels))  # type: ignore[arg-type]
