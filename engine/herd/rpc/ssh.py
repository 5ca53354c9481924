"""SSH connections to nodes: one pooled, authenticated paramiko transport per node.

Node calls are frequent and small, while an SSH handshake costs tens of milliseconds
of CPU on both ends, so a transport is made once per node and every session (exec
channel) rides on it.  Trust is pinned, never learned: the caller supplies the host
key recorded at node add and a different key aborts the connection *before* we
authenticate, with both fingerprints in the error so an operator can tell a
reinstalled node from an impostor.

Retries cover connection setup only (TCP connect, handshake, opening a channel), where
nothing has run on the node yet.  Whatever runs over a channel is never retried here:
the caller alone knows whether repeating it is safe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

import paramiko

from herd.errors import HostKeyMismatchError, NodeError, ValidationError

# Host key algorithms a pinned key type may be presented with (RSA signs with SHA-2 now).
_KEY_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}


@dataclass(frozen=True)
class NodeAddress:
    """How to reach one node: its name for errors, its address and its pinned host key."""

    name: str
    host: str
    host_key: str
    port: int = 22


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes


def parse_host_key(text: str, field: str = "host_key") -> tuple[str, bytes]:
    """Split an OpenSSH ``"type base64 [comment]"`` key into its type and key blob."""
    parts = text.split()
    try:
        if len(parts) < 2:
            raise ValueError("need 'type base64'")
        blob = base64.b64decode(parts[1], validate=True)
        key_type_in_blob = paramiko.Message(blob).get_text()
    except (ValueError, binascii.Error, paramiko.SSHException) as exc:
        raise ValidationError(field, text[:80], "an OpenSSH public key 'type base64'") from exc
    if key_type_in_blob != parts[0]:
        raise ValidationError(field, text[:80], f"a key whose blob is of type {parts[0]}")
    return parts[0], blob


def fingerprint(blob: bytes) -> str:
    """OpenSSH-style ``SHA256:…`` fingerprint, the form operators compare by eye."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fetch_host_key(address: str, port: int = 22, timeout: float = 10.0) -> str:
    """The host key ``address`` presents, as ``"type base64"``, for pinning at node add.

    This is the one place a key is accepted unverified; the caller should show its
    fingerprint to the operator (or compare it to one obtained out of band).
    """
    transport = _handshake(address, address, port, timeout, key_types=None)
    try:
        key = transport.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    finally:
        transport.close()


class SSHPool:
    """Authenticated transports keyed by node name, made on first use and reused.

    Thread-safe: a per-node lock makes concurrent first calls share one connection
    instead of racing to open several.
    """

    def __init__(
        self,
        pkey: paramiko.PKey,
        *,
        user: str = "root",
        connect_timeout: float = 10.0,
        connect_retries: int = 2,
        retry_delay: float = 0.5,
        keepalive: int = 15,
    ) -> None:
        self.pkey = pkey
        self.user = user
        self.connect_timeout = connect_timeout
        self.connect_retries = connect_retries
        self.retry_delay = retry_delay
        self.keepalive = keepalive
        #: SSH connections established per node (tests and stats read it).
        self.connects: Counter[str] = Counter()
        self._transports: dict[str, paramiko.Transport] = {}
        self._node_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transport(self, node: NodeAddress) -> paramiko.Transport:
        """The node's live transport, connecting (with retries) if there is none."""
        with self._node_lock(node.name):
            current = self._transports.get(node.name)
            if current is not None and current.is_active():
                return current
            if current is not None:
                current.close()
            fresh = self._connect(node)
            self._transports[node.name] = fresh
            return fresh

    def open_channel(
        self, node: NodeAddress, command: str, timeout: float | None = None
    ) -> paramiko.Channel:
        """Start ``command`` on the node in a new session channel of the pooled transport.

        If the pooled transport turns out dead (the node rebooted, sshd restarted), the
        channel is retried once on a fresh connection: nothing has run yet, so it is safe.
        """
        error: Exception | None = None
        for _ in range(2):
            transport = self.transport(node)
            try:
                channel = transport.open_session(timeout=self.connect_timeout)
                channel.settimeout(timeout)
                channel.exec_command(command)
                return channel
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.drop(node.name)
                error = exc
        raise NodeError(
            f"node {node.name} ({node.host}:{node.port}): cannot start a session: "
            f"{error or type(error).__name__}",
            node=node.name,
            address=node.host,
        ) from error

    def run(
        self, node: NodeAddress, command: str, stdin: bytes = b"", timeout: float | None = None
    ) -> CommandResult:
        """Run one command to completion (no pty); for one-off calls outside a session."""
        channel = self.open_channel(node, command, timeout)
        try:
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            stdout = channel.makefile("rb").read()
            stderr = channel.makefile_stderr("rb").read()
            return CommandResult(channel.recv_exit_status(), stdout, stderr)
        except (OSError, paramiko.SSHException) as exc:
            raise NodeError(
                f"node {node.name} ({node.host}): command failed in transit: {exc}",
                node=node.name,
                address=node.host,
            ) from exc
        finally:
            channel.close()

    def drop(self, name: str) -> None:
        """Forget (and close) a node's transport, e.g. after it proved dead."""
        with self._lock:
            transport = self._transports.pop(name, None)
        if transport is not None:
            transport.close()

    def close(self) -> None:
        with self._lock:
            transports = list(self._transports.values())
            self._transports.clear()
        for transport in transports:
            transport.close()

    def _node_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._node_locks.setdefault(name, threading.Lock())

    def _handshake_with_retries(self, node: NodeAddress, key_type: str) -> paramiko.Transport:
        failures = 0
        while True:
            try:
                return _handshake(
                    node.name,
                    node.host,
                    node.port,
                    self.connect_timeout,
                    key_types=_KEY_ALGORITHMS.get(key_type, (key_type,)),
                )
            except NodeError:
                failures += 1
                if failures > self.connect_retries:
                    raise
                time.sleep(self.retry_delay)

    def _connect(self, node: NodeAddress) -> paramiko.Transport:
        key_type, pinned = parse_host_key(node.host_key)
        transport = self._handshake_with_retries(node, key_type)
        try:
            presented = transport.get_remote_server_key().asbytes()
            if presented != pinned:
                raise HostKeyMismatchError(
                    f"node {node.name} ({node.host}) presented host key {fingerprint(presented)}"
                    f" but {fingerprint(pinned)} is pinned; refusing to connect",
                    node=node.name,
                    address=node.host,
                    expected=fingerprint(pinned),
                    presented=fingerprint(presented),
                )
            transport.auth_publickey(self.user, self.pkey)
        except paramiko.AuthenticationException as exc:
            transport.close()
            raise NodeError(
                f"node {node.name} ({node.host}) refused the cluster key for {self.user}: {exc}",
                node=node.name,
                address=node.host,
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise NodeError(
                f"node {node.name} ({node.host}) dropped the connection during login: {exc}",
                node=node.name,
                address=node.host,
            ) from exc
        except BaseException:
            transport.close()
            raise
        transport.set_keepalive(self.keepalive)
        self.connects[node.name] += 1
        return transport


def _handshake(
    name: str, host: str, port: int, timeout: float, key_types: tuple[str, ...] | None
) -> paramiko.Transport:
    """TCP connect and SSH key exchange, bounded by ``timeout``; NodeError if unreachable."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise NodeError(
            f"node {name} unreachable at {host}:{port}: {exc}", node=name, address=host
        ) from exc
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    try:
        if key_types is not None:
            transport.get_security_options().key_types = key_types
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise NodeError(
            f"node {name} at {host}:{port}: SSH handshake failed: {exc or type(exc).__name__}",
            node=name,
            address=host,
        ) from exc
    return transport
