"""The master's node services: key paths and the pooled node RPC client, behind the
``herd.ops.base.NodeServices`` protocol that ops are given as ``ctx.services``.

Ops never open SSH connections themselves; they ask these services, which keep one pooled
connection and one agent session per node for the master's lifetime.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paramiko

from herd import faults
from herd.crypto.sshkeys import load_ssh_key
from herd.errors import PrerequisiteError
from herd.rpc.client import NodeClient
from herd.rpc.protocol import CallResult
from herd.rpc.ssh import NodeAddress, SSHPool

SSH_KEY_FILE = "ssh_key"
BOOTSTRAP_KEY_ENV = "HERD_BOOTSTRAP_KEY"


class Reachable(Protocol):
    """What reaching a node takes (``herd.config.model.Node`` has it); named here so rpc
    stays below the config model instead of importing it."""

    @property
    def name(self) -> str: ...

    @property
    def primary_ip(self) -> str: ...

    @property
    def host_key(self) -> str: ...

    @property
    def ssh_port(self) -> int: ...


def address(node: Reachable) -> NodeAddress:
    return NodeAddress(node.name, node.primary_ip, node.host_key, node.ssh_port)


@dataclass
class Services:
    """Created once by the master; ops must not build their own copies of these."""

    state_dir: Path
    bootstrap_key_file: str | None = None
    _client: NodeClient | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def crypto_dir(self) -> Path:
        return self.state_dir / "crypto"

    @property
    def ssh_key_path(self) -> Path:
        return self.crypto_dir / SSH_KEY_FILE

    def cluster_key(self) -> paramiko.PKey:
        if not self.ssh_key_path.exists():
            raise PrerequisiteError("the cluster has no SSH key yet: run 'herd cluster init'")
        return load_ssh_key(self.ssh_key_path)

    def bootstrap_key(self) -> paramiko.PKey:
        """The operator's key used only to install the cluster key on a new node."""
        path = (
            self.bootstrap_key_file
            or os.environ.get(BOOTSTRAP_KEY_ENV)
            or os.path.expanduser("~/.ssh/id_ed25519")
        )
        if not os.path.exists(path):
            raise PrerequisiteError(
                f"no bootstrap SSH key at {path}: set {BOOTSTRAP_KEY_ENV} or pass "
                "bootstrap_key_file, with a key root on the new node accepts",
                path=path,
            )
        return paramiko.PKey.from_path(path)

    def rpc(self) -> NodeClient:
        with self._lock:
            if self._client is None:
                self._client = NodeClient(SSHPool(self.cluster_key()))
            return self._client

    def reset_rpc(self) -> None:
        """Forget pooled sessions, e.g. after the cluster key changed or a node left."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
            client.pool.close()

    def call(
        self,
        node: Reachable,
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        answer = self.rpc().call(address(node), action, args, timeout)
        faults.point(f"rpc:{action}:done")  # the node acted; the master has not noted it
        return answer

    def call_many(
        self,
        nodes: Sequence[Reachable],
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, CallResult]:
        answers = self.rpc().call_many([address(n) for n in nodes], action, args, timeout)
        faults.point(f"rpc:{action}:done")
        return answers

    def forget_node(self, name: str) -> None:
        if self._client is not None:
            self._client.pool.drop(name)
