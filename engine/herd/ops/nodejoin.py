"""Bringing a host into the cluster: shared by ``cluster.init`` (the master node) and
``node.add``. Each remote step registers its undo first, so a join that fails half way
leaves the host exactly as it found it.
"""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import herd
from herd.config.model import Node
from herd.config.store import Transaction
from herd.crypto.ca import ClusterCA
from herd.errors import ConflictError, HostKeyMismatchError, NodeError, PrerequisiteError
from herd.ops.base import OpContext
from herd.ops.params import Param, check_ip, check_name
from herd.ops.undo import node_arg, node_of, undo_handler
from herd.rpc.bootstrap import install_cluster_key, remove_cluster_key
from herd.rpc.services import address
from herd.rpc.ssh import fetch_host_key, fingerprint, parse_host_key

NODE_CERT = "crypto/node.pem"
NODE_KEY = "crypto/node.key"
NODE_CA = "crypto/ca.pem"
#: Files every node must hold; cluster.verify compares their checksums with the master's.
NODE_FILES = (NODE_CA, NODE_CERT, NODE_KEY)

JOIN_PARAMS = (
    Param(
        "primary_ip",
        str,
        check=check_ip,
        doc="address the master reaches the node on (default: the name resolved by DNS)",
    ),
    Param(
        "secondary_ip",
        str,
        check=check_ip,
        doc="replication network address (default: the primary address)",
    ),
    Param("ssh_port", int, default=22, minimum=1, maximum=65535, doc="the node's sshd port"),
    Param(
        "host_key",
        str,
        doc="the node's SSH host key 'type base64' to pin; without it the "
        "key presented at first contact is pinned and its fingerprint logged",
    ),
)


def node_name_param(positional: bool = True) -> Param:
    return Param(
        "name", str, required=True, check=check_name, cli_positional=positional, doc="node name"
    )


def resolve_ip(name: str, given: str | None) -> str:
    if given:
        return given
    try:
        return socket.gethostbyname(name)
    except OSError:
        raise PrerequisiteError(
            f"cannot resolve node name {name!r}: give primary_ip", field="primary_ip"
        ) from None


def check_unique(nodes: list[Node], name: str, ips: dict[str, str], skip: str = "") -> None:
    """Names and addresses identify nodes: refuse a duplicate, naming the field and holder."""
    for node in nodes:
        if node.uuid == skip:
            continue
        if node.name == name:
            raise ConflictError(f"node {name} already exists", field="name", value=name)
        for field, ip in ips.items():
            if ip and ip in (node.primary_ip, node.secondary_ip):
                raise ConflictError(
                    f"{field} {ip} is already used by node {node.name}",
                    field=field,
                    value=ip,
                    node=node.name,
                )


def pin_host_key(ctx: OpContext, name: str, ip: str, port: int, expected: str | None) -> str:
    """Trust on first use unless the operator gave the key; a different key is refused."""
    presented = fetch_host_key(ip, port, timeout=10.0)
    got_fp = fingerprint(parse_host_key(presented)[1])
    if expected:
        want_fp = fingerprint(parse_host_key(expected)[1])
        if want_fp != got_fp:
            raise HostKeyMismatchError(
                f"node {name} ({ip}) presented host key {got_fp}, expected {want_fp}; "
                "refusing to add it",
                node=name,
                expected=want_fp,
                presented=got_fp,
            )
    ctx.log(f"node {name}: pinned host key {got_fp}")
    return presented


def join(
    ctx: OpContext, node: Node, ca: ClusterCA, cluster_key_line: str, expected_host_key: str | None
) -> Node:
    """Do every remote step of adding ``node`` (not yet stored) and fill in its facts."""
    services = ctx.services
    node.host_key = pin_host_key(ctx, node.name, node.primary_ip, node.ssh_port, expected_host_key)
    added = install_cluster_key(address(node), services.bootstrap_key(), cluster_key_line)
    if added:
        ctx.undo(
            f"remove the cluster SSH key from {node.name}",
            "node.remove_cluster_key",
            node=node_arg(node),
            key_line=cluster_key_line,
        )
    ctx.undo(f"close connections to {node.name}", "node.forget_connections", name=node.name)
    info = services.call(node, "ping")
    if info["version"] != herd.__version__:
        raise PrerequisiteError(
            f"node {node.name} runs herd-node {info['version']}, the master {herd.__version__}:"
            " install the same engine version there (the 'node' role does)",
            node=node.name,
        )
    facts = services.call(node, "node_info")
    node.total_memory_mib = int(facts["memory_total_mib"])
    node.total_disk_mib = int(facts["disk_total_mib"])
    node.cpus = int(facts["cpus"])
    install_node_files(ctx, node, ca)
    ctx.log(
        f"node {node.name}: {node.cpus} CPUs, {node.total_memory_mib} MiB memory, "
        f"{node.total_disk_mib} MiB storage"
    )
    return node


def joined(ctx: OpContext, node: Node) -> bool:
    """True once the join is committed: the config holds the node. A join's undo steps
    then have nothing to do (a master that died right after the commit left them)."""
    if ctx.store.find("node", node.uuid) is None:
        return False
    ctx.log(f"node {node.name} is in the config: its join is kept", "warning")
    return True


@undo_handler("node.remove_cluster_key")
def _remove_cluster_key(ctx: OpContext, args: dict[str, Any]) -> None:
    node = node_of(args)
    if not joined(ctx, node):
        remove_cluster_key(address(node), ctx.services.bootstrap_key(), args["key_line"])


@undo_handler("node.forget_connections")
def _forget_connections(ctx: OpContext, args: dict[str, Any]) -> None:
    ctx.services.forget_node(args["name"])


@undo_handler("node.remove_file")
def _remove_file(ctx: OpContext, args: dict[str, Any]) -> None:
    node = node_of(args)
    if not joined(ctx, node):
        ctx.services.call(node, "remove_file", {"path": args["path"]})


def node_files(node: Node, ca: ClusterCA) -> dict[str, tuple[bytes, int]]:
    ips = sorted({node.primary_ip, node.secondary_ip} - {""})
    pair = ca.issue_node_cert(node.name, ips)
    return {
        NODE_CA: (ca.cert_pem, 0o644),
        NODE_CERT: (pair.cert_pem, 0o644),
        NODE_KEY: (pair.key_pem, 0o600),
    }


def install_node_files(ctx: OpContext, node: Node, ca: ClusterCA) -> None:
    for path, (data, mode) in node_files(node, ca).items():
        ctx.undo(
            f"remove {path} from {node.name}", "node.remove_file", node=node_arg(node), path=path
        )
        ctx.services.call(
            node, "write_file", {"path": path, "content": data.decode(), "mode": mode}
        )


def leave(ctx: OpContext, node: Node, cluster_key_line: str) -> list[str]:
    """Best-effort clean-up on a node that leaves: its certificates, then our SSH key.

    A node being removed is often dead, so failures are reported, not raised. The key is
    tried even when the certificates could not be removed: a node that answers but fails
    one removal must not go on letting the cluster's key log in as root.
    """
    problems = []
    steps = (
        ("certificates", lambda: _remove_node_files(ctx, node)),
        ("cluster SSH key", lambda: remove_cluster_key(
            address(node), ctx.services.cluster_key(), cluster_key_line)),
    )  # fmt: skip
    for what, step in steps:
        try:
            step()
        except (NodeError, OSError) as exc:
            problems.append(f"{node.name}: {what}: {exc}")
            ctx.log(f"node {node.name}: {what} not removed: {exc}", "warning")
    ctx.services.forget_node(node.name)
    return problems


def _remove_node_files(ctx: OpContext, node: Node) -> None:
    for path in NODE_FILES:
        ctx.services.call(node, "remove_file", {"path": path}, timeout=15)


def expected_checksums(ca_pem: bytes) -> dict[str, str]:
    return {NODE_CA: hashlib.sha256(ca_pem).hexdigest()}


def add_in_txn(txn: Transaction, node: Node) -> None:
    """Final uniqueness check inside the write transaction: two concurrent adds of the
    same address both passed the early check, only one may commit."""
    check_unique(
        txn.list("node"),
        node.name,
        {"primary_ip": node.primary_ip, "secondary_ip": node.secondary_ip},
    )
    txn.add(node)


def wants_candidate(nodes: list[Node], pool_size: int, requested: Any) -> bool:
    """Master candidates keep a copy of the config; fill the pool up to its size."""
    if requested is not None:
        return bool(requested)
    return sum(1 for n in nodes if n.master_candidate and not n.offline) < pool_size
