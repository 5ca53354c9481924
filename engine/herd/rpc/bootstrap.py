"""First contact with a new node: authorise the cluster's SSH key, for herd-node only.

This is the only moment the master logs in with a key that is not the cluster's own
(the operator's bootstrap key); everything afterwards uses the cluster key and the host
key pinned here. The edit itself is a herd-node action (``ssh_key_authorize``), so the
line it writes, ``restrict,command="herd-node --serve" <key>``, is made in one place,
and removing the key later works with the cluster key too: its forced command is that
same agent, which is all the master ever runs on a node.
"""

from __future__ import annotations

from typing import Any

import paramiko

from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool


def _key_action(
    node: NodeAddress, pkey: paramiko.PKey, action: str, key_line: str, timeout: float
) -> dict[str, Any]:
    with (
        SSHPool(pkey, connect_timeout=timeout, connect_retries=1) as pool,
        NodeClient(pool, call_timeout=timeout, max_sessions=1) as client,
    ):
        return client.call(node, action, {"key": key_line})


def install_cluster_key(
    node: NodeAddress, login_key: paramiko.PKey, cluster_key_line: str, timeout: float = 15.0
) -> bool:
    """Authorise the cluster key on the node, restricted; True if it was not there before
    (an unrestricted line from an older Herd is replaced and counts as there)."""
    return bool(
        _key_action(node, login_key, "ssh_key_authorize", cluster_key_line, timeout)["added"]
    )


def remove_cluster_key(
    node: NodeAddress, login_key: paramiko.PKey, cluster_key_line: str, timeout: float = 15.0
) -> bool:
    """Withdraw the cluster key (node removal or a rolled-back add); True if it was there."""
    return bool(
        _key_action(node, login_key, "ssh_key_revoke", cluster_key_line, timeout)["changed"]
    )
