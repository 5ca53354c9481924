"""SSH pool against real lab sshd: pinning, reuse, unreachable nodes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import herdlab
import paramiko
import pytest

from herd.errors import HostKeyMismatchError, NodeError, ValidationError
from herd.rpc.ssh import NodeAddress, SSHPool, fetch_host_key, fingerprint, parse_host_key


def address(node: herdlab.LabNode, host_key: str | None = None) -> NodeAddress:
    return NodeAddress(node.name, node.ip, host_key or node.host_key, node.port)


def cluster_key(lab: herdlab.Lab) -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key_file(lab.key_path)


def test_parse_host_key_rejects_garbage_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        parse_host_key("ssh-ed25519 not-base64!")
    assert err.value.details["field"] == "host_key"


def test_parse_host_key_rejects_a_type_that_contradicts_the_blob() -> None:
    key = paramiko.RSAKey.generate(1024)
    with pytest.raises(ValidationError):
        parse_host_key(f"ssh-ed25519 {key.get_base64()}")


@pytest.mark.lab
def test_fetch_host_key_returns_the_key_to_pin(lab_cluster: herdlab.Lab) -> None:
    node = lab_cluster.nodes[0]
    assert fetch_host_key(node.ip, node.port, timeout=5) == node.host_key


@pytest.mark.lab
def test_connection_is_pooled_across_commands(lab_cluster: herdlab.Lab) -> None:
    node = lab_cluster.nodes[1]
    with SSHPool(cluster_key(lab_cluster)) as pool:
        first = pool.run(address(node), "hostname")
        second = pool.run(address(node), "cat /var/lib/herd-node/none; exit 3")
        assert first.stdout.strip() == node.name.encode()
        assert second.exit_status == 3 and b"No such file" in second.stderr
        assert pool.connects[node.name] == 1


@pytest.mark.lab
def test_another_nodes_key_is_refused_with_both_fingerprints(lab_cluster: herdlab.Lab) -> None:
    node, other = lab_cluster.nodes[0], lab_cluster.nodes[1]
    with SSHPool(cluster_key(lab_cluster), connect_retries=0) as pool:
        with pytest.raises(HostKeyMismatchError) as err:
            pool.run(address(node, other.host_key), "true")
        assert pool.connects[node.name] == 0
    presented = fingerprint(parse_host_key(node.host_key)[1])
    expected = fingerprint(parse_host_key(other.host_key)[1])
    assert err.value.details == {
        "node": node.name,
        "address": node.ip,
        "expected": expected,
        "presented": presented,
    }
    assert node.name in err.value.message and presented in err.value.message


@pytest.mark.lab
def test_a_regenerated_host_key_is_refused(lab_cluster: herdlab.Lab, tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    regenerated = " ".join((tmp_path / "k.pub").read_text().split()[:2])
    node = lab_cluster.nodes[2]
    with (
        SSHPool(cluster_key(lab_cluster), connect_retries=0) as pool,
        pytest.raises(HostKeyMismatchError),
    ):
        pool.transport(address(node, regenerated))


@pytest.mark.lab
def test_unreachable_node_names_node_and_address(lab_cluster: herdlab.Lab) -> None:
    ghost = NodeAddress("ghost", f"10.77.{lab_cluster.index}.250", lab_cluster.nodes[0].host_key)
    with (
        SSHPool(cluster_key(lab_cluster), connect_timeout=1.0, connect_retries=1) as pool,
        pytest.raises(NodeError) as err,
    ):
        pool.run(ghost, "true")
    assert err.value.details["node"] == "ghost"
    assert err.value.details["address"] == ghost.host
    assert "ghost" in err.value.message


@pytest.mark.lab
def test_killed_sshd_gives_node_error(scratch_lab: herdlab.Lab) -> None:
    node = scratch_lab.nodes[0]
    with SSHPool(cluster_key(scratch_lab), connect_timeout=2.0, connect_retries=0) as pool:
        assert pool.run(address(node), "true").exit_status == 0
        node.kill_sshd()
        with pytest.raises(NodeError) as err:
            pool.run(address(node), "true")
    assert err.value.details["node"] == node.name
