"""Installing the cluster key on a real lab node: the key runs herd-node and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import herdlab
import paramiko
import pytest

from herd.crypto.sshkeys import generate_ssh_key
from herd.errors import NodeError
from herd.rpc.bootstrap import install_cluster_key, remove_cluster_key
from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool

pytestmark = pytest.mark.lab


def address(node: herdlab.LabNode) -> NodeAddress:
    return NodeAddress(node.name, node.ip, node.host_key, node.port)


def authorized(node: herdlab.LabNode) -> list[str]:
    path = Path(node.dir) / "home" / ".ssh" / "authorized_keys"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def cluster_key(
    lab_cluster: herdlab.Lab, tmp_path: Path
) -> Iterator[tuple[herdlab.LabNode, paramiko.PKey, str]]:
    """A fresh cluster-like key installed on the last lab node, withdrawn afterwards."""
    node = lab_cluster.nodes[-1]
    line = generate_ssh_key(tmp_path / "cluster-key", comment="test-cluster")
    bootstrap = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    assert install_cluster_key(address(node), bootstrap, line)
    try:
        yield node, paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "cluster-key")), line
    finally:
        remove_cluster_key(address(node), bootstrap, line)


def test_installed_line_is_restricted_to_herd_node(
    lab_cluster: herdlab.Lab, cluster_key: tuple[herdlab.LabNode, paramiko.PKey, str]
) -> None:
    node, _, line = cluster_key
    bootstrap = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    mine = [entry for entry in authorized(node) if line in entry]
    assert mine == [f'restrict,command="herd-node --serve" {line}']
    assert not install_cluster_key(address(node), bootstrap, line)
    assert [entry for entry in authorized(node) if line in entry] == mine


def test_the_cluster_key_reaches_herd_node_but_no_shell(
    cluster_key: tuple[herdlab.LabNode, paramiko.PKey, str],
) -> None:
    node, key, _ = cluster_key
    marker = Path(node.dir) / "data" / "shell-ran"
    with SSHPool(key, connect_timeout=5.0) as pool:
        with NodeClient(pool) as client:
            assert client.call(address(node), "ping")["hostname"] == node.name
        # Whatever command is asked for, sshd runs the forced herd-node instead.
        result = pool.run(address(node), f"touch {marker}; echo shell")
        assert b"shell" not in result.stdout
        assert b"herd-node" in result.stdout
        assert not marker.exists()
        # restrict: no port forwarding through the node either.
        with pytest.raises(paramiko.ChannelException):
            pool.transport(address(node)).open_channel(
                "direct-tcpip", (node.ip, node.port), ("127.0.0.1", 0), timeout=10
            )


def test_the_cluster_key_can_withdraw_itself(
    lab_cluster: herdlab.Lab, cluster_key: tuple[herdlab.LabNode, paramiko.PKey, str]
) -> None:
    """Node removal runs with the cluster key, whose only command is herd-node."""
    node, key, line = cluster_key
    assert remove_cluster_key(address(node), key, line)
    assert not [entry for entry in authorized(node) if line in entry]
    with pytest.raises(NodeError), SSHPool(key, connect_timeout=5.0, connect_retries=0) as pool:
        pool.run(address(node), "true")


def test_an_unrestricted_line_from_before_is_restricted_on_install(
    lab_cluster: herdlab.Lab, tmp_path: Path
) -> None:
    node = lab_cluster.nodes[-1]
    line = generate_ssh_key(tmp_path / "old-key", comment="old-cluster")
    path = Path(node.dir) / "home" / ".ssh" / "authorized_keys"
    path.parent.mkdir(exist_ok=True)
    before = path.read_text() if path.exists() else ""
    path.write_text(before + line + "\n")
    bootstrap = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    try:
        assert not install_cluster_key(address(node), bootstrap, line)
        assert [entry for entry in authorized(node) if line in entry] == [
            f'restrict,command="herd-node --serve" {line}'
        ]
    finally:
        remove_cluster_key(address(node), bootstrap, line)
    assert path.read_text() == before
