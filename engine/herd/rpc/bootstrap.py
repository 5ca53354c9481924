"""First contact with a new node: put the cluster's SSH key into root's authorized_keys.

This is the only moment the master logs in with a key that is not the cluster's own
(the operator's bootstrap key); everything afterwards uses the cluster key and the host
key pinned here. The key travels on stdin, so no quoting of key text into a shell line.
"""

from __future__ import annotations

import paramiko

from herd.errors import NodeError
from herd.rpc.ssh import NodeAddress, SSHPool

_ADD = (
    'umask 077; mkdir -p "$HOME/.ssh"; f="$HOME/.ssh/authorized_keys"; k=$(cat); touch "$f"; '
    'if grep -qxF "$k" "$f"; then echo unchanged; else printf "%s\\n" "$k" >> "$f"; echo added; fi'
)
_REMOVE = (
    'f="$HOME/.ssh/authorized_keys"; k=$(cat); [ -f "$f" ] || { echo unchanged; exit 0; }; '
    'if grep -qxF "$k" "$f"; then grep -vxF "$k" "$f" > "$f.herd-tmp"; mv "$f.herd-tmp" "$f"; '
    "echo removed; else echo unchanged; fi"
)


def _edit_keys(
    node: NodeAddress, pkey: paramiko.PKey, script: str, key_line: str, timeout: float
) -> str:
    with SSHPool(pkey, connect_timeout=timeout, connect_retries=1) as pool:
        result = pool.run(node, script, stdin=key_line.encode() + b"\n", timeout=timeout)
    if result.exit_status != 0:
        raise NodeError(
            f"node {node.name}: editing authorized_keys failed (exit {result.exit_status}): "
            f"{result.stderr.decode(errors='replace').strip()}",
            node=node.name,
        )
    return result.stdout.decode().strip()


def install_cluster_key(
    node: NodeAddress, login_key: paramiko.PKey, cluster_key_line: str, timeout: float = 15.0
) -> bool:
    """Authorise the cluster key on the node; True if it was not there before."""
    return _edit_keys(node, login_key, _ADD, cluster_key_line, timeout) == "added"


def remove_cluster_key(
    node: NodeAddress, login_key: paramiko.PKey, cluster_key_line: str, timeout: float = 15.0
) -> bool:
    """Withdraw the cluster key (node removal or a rolled-back add); True if it was there."""
    return _edit_keys(node, login_key, _REMOVE, cluster_key_line, timeout) == "removed"
