"""herd.ops.nodejoin on loopback nodes: the checks before a join, the join's node-agent
steps and their undo, and a leaving node's clean-up.

Three steps of a join talk SSH itself, not the node agent: fetching the host key and
authorising / revoking the cluster key. ``FakeSSH`` stands in for exactly those (the lab
runs them for real: tests/engine/ops/test_cluster_lab.py); everything else is the real
agent through the loopback. The helpers here serve test_node.py and test_cluster.py too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from herd.config import Node
from herd.crypto.ca import ClusterCA
from herd.errors import ConflictError, HostKeyMismatchError, NodeError, PrerequisiteError
from herd.ops import nodejoin
from herd.rpc.ssh import NodeAddress
from tests.engine.loopback import OpEnv

CLUSTER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3QtY2x1c3Rlci1rZXktYnl0ZXMtMzI= herd@c1"


def host_key() -> str:
    """A fresh OpenSSH public key line, as a node's sshd presents it."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


@dataclass
class FakeSSH:
    """The SSH-only steps of a join: each node's presented host key and the cluster key
    lines its root account authorises, by node name."""

    presented: dict[str, str] = field(default_factory=dict)
    authorized: dict[str, set[str]] = field(default_factory=dict)

    def fetch(self, ip: str, port: int = 22, timeout: float = 10.0) -> str:
        return self.presented[ip]

    def install(self, node: NodeAddress, login_key: Any, line: str, timeout: float = 15) -> bool:
        keys = self.authorized.setdefault(node.name, set())
        added = line not in keys
        keys.add(line)
        return added

    def remove(self, node: NodeAddress, login_key: Any, line: str, timeout: float = 15) -> bool:
        keys = self.authorized.setdefault(node.name, set())
        there = line in keys
        keys.discard(line)
        return there


@pytest.fixture
def ssh(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> FakeSSH:
    """``env`` with the SSH-only steps faked and a cluster CA and SSH key line stored."""
    return fake_ssh(env, monkeypatch)


def fake_ssh(env: OpEnv, monkeypatch: pytest.MonkeyPatch, *, cluster: bool = True) -> FakeSSH:
    """The SSH-only steps faked; with ``cluster``, also the CA and key line stored."""
    fake = FakeSSH()
    monkeypatch.setattr(nodejoin, "fetch_host_key", fake.fetch)
    monkeypatch.setattr(nodejoin, "install_cluster_key", fake.install)
    monkeypatch.setattr(nodejoin, "remove_cluster_key", fake.remove)
    monkeypatch.setattr(env.nodes, "bootstrap_key", lambda: None)
    monkeypatch.setattr(env.nodes, "cluster_key", lambda: None)
    if cluster:
        trust(env)
    return fake


def trust(env: OpEnv) -> ClusterCA:
    """A cluster CA in the master's crypto dir and in the config (as init leaves them),
    and the cluster's SSH key line."""
    ca = ClusterCA.create("c1")
    env.nodes.crypto_dir.mkdir(mode=0o700, exist_ok=True)
    ca.save(env.nodes.crypto_dir)
    with env.store.transaction() as txn:
        cluster = txn.list("cluster")[0]
        cluster.ca_cert_pem = ca.cert_pem.decode()
        cluster.ssh_public_key = CLUSTER_KEY
        txn.update(cluster)
    return ca


def install_files(env: OpEnv, *names: str) -> None:
    """Give seeded nodes the certificates a join would have installed."""
    ca = ClusterCA.load(env.nodes.crypto_dir)
    for name in names:
        nodejoin.install_node_files(env.context(), env.node(name), ca)


def new_node(env: OpEnv, name: str = "n3", ip: str = "192.0.2.30") -> Node:
    """A host not yet in the cluster, its agent's root made."""
    env.node_dir(name).mkdir(parents=True, exist_ok=True)
    return Node(name=name, primary_ip=ip, secondary_ip=ip, group=env.node("n1").group)


def crypto_files(env: OpEnv, name: str) -> list[str]:
    return [f for f in env.files(name) if f.startswith("crypto/")]


def test_a_given_address_is_used_without_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodejoin.socket, "gethostbyname", pytest.fail)
    assert nodejoin.resolve_ip("n3", "192.0.2.30") == "192.0.2.30"


def test_an_unresolvable_name_asks_for_primary_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(name: str) -> str:
        raise OSError("no such host")

    monkeypatch.setattr(nodejoin.socket, "gethostbyname", no_dns)
    with pytest.raises(PrerequisiteError, match="give primary_ip") as failed:
        nodejoin.resolve_ip("n3", None)
    assert failed.value.details["field"] == "primary_ip"


def test_a_duplicate_name_or_address_names_the_field_and_holder(env: OpEnv) -> None:
    nodes = env.store.list("node")
    with pytest.raises(ConflictError) as by_name:
        nodejoin.check_unique(nodes, "n2", {"primary_ip": "192.0.2.99"})
    assert by_name.value.details["field"] == "name"
    with pytest.raises(ConflictError, match="already used by node n2") as by_ip:
        nodejoin.check_unique(nodes, "n3", {"secondary_ip": "192.0.2.2"})
    assert by_ip.value.details == {"field": "secondary_ip", "value": "192.0.2.2", "node": "n2"}
    nodejoin.check_unique(nodes, "", {"secondary_ip": "192.0.2.2"}, skip=env.node("n2").uuid)


def test_the_candidate_pool_fills_up_to_its_size_unless_told(env: OpEnv) -> None:
    nodes = env.store.list("node")
    assert nodejoin.wants_candidate(nodes, 3, None)
    assert not nodejoin.wants_candidate(nodes, 2, None)
    assert nodejoin.wants_candidate(nodes, 2, True)
    nodes[1].offline = True
    assert nodejoin.wants_candidate(nodes, 2, None)


def test_a_pinned_host_key_must_be_the_presented_one(ssh: FakeSSH, env: OpEnv) -> None:
    ssh.presented["192.0.2.30"] = presented = host_key()
    ctx = env.context()
    assert nodejoin.pin_host_key(ctx, "n3", "192.0.2.30", 22, None) == presented
    assert nodejoin.pin_host_key(ctx, "n3", "192.0.2.30", 22, presented) == presented
    with pytest.raises(HostKeyMismatchError, match="refusing to add it") as failed:
        nodejoin.pin_host_key(ctx, "n3", "192.0.2.30", 22, host_key())
    assert failed.value.details["node"] == "n3"
    assert failed.value.details["expected"] != failed.value.details["presented"]


def test_a_join_installs_the_certificates_and_records_the_facts(ssh: FakeSSH, env: OpEnv) -> None:
    node = new_node(env)
    ssh.presented[node.primary_ip] = host_key()
    ca = ClusterCA.load(env.nodes.crypto_dir)
    nodejoin.join(env.context(), node, ca, CLUSTER_KEY, None)
    assert node.host_key == ssh.presented[node.primary_ip]
    assert node.cpus > 0 and node.total_memory_mib > 0
    assert crypto_files(env, "n3") == sorted(nodejoin.NODE_FILES)
    assert (env.node_dir("n3") / nodejoin.NODE_CA).read_bytes() == ca.cert_pem
    assert (env.node_dir("n3") / nodejoin.NODE_KEY).stat().st_mode & 0o077 == 0
    assert ssh.authorized["n3"] == {CLUSTER_KEY}


@pytest.mark.parametrize("action", ["ping", "node_info", "write_file"])
def test_an_interrupted_join_is_undone_to_nothing(ssh: FakeSSH, env: OpEnv, action: str) -> None:
    node = new_node(env)
    ssh.presented[node.primary_ip] = host_key()
    env.nodes.fail(action, NodeError(f"{action} broke"), node="n3")
    ctx = env.context()
    with pytest.raises(NodeError, match=f"{action} broke"):
        nodejoin.join(ctx, node, ClusterCA.load(env.nodes.crypto_dir), CLUSTER_KEY, None)
    env.nodes.heal()
    assert ctx.run_undo() == []
    assert crypto_files(env, "n3") == []
    assert ssh.authorized["n3"] == set()


def test_a_node_running_another_version_is_refused_and_undone(
    ssh: FakeSSH, env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodejoin, "herd", SimpleNamespace(__version__="0.0.0-master"))
    node = new_node(env)
    ssh.presented[node.primary_ip] = host_key()
    ctx = env.context()
    with pytest.raises(PrerequisiteError, match=r"the master 0\.0\.0-master"):
        nodejoin.join(ctx, node, ClusterCA.load(env.nodes.crypto_dir), CLUSTER_KEY, None)
    assert ctx.run_undo() == []
    assert ssh.authorized["n3"] == set() and crypto_files(env, "n3") == []


def test_a_key_already_authorised_is_left_there_by_the_undo(ssh: FakeSSH, env: OpEnv) -> None:
    node = new_node(env)
    ssh.presented[node.primary_ip] = host_key()
    ssh.authorized["n3"] = {CLUSTER_KEY}
    env.nodes.fail("write_file", node="n3")
    ctx = env.context()
    with pytest.raises(NodeError):
        nodejoin.join(ctx, node, ClusterCA.load(env.nodes.crypto_dir), CLUSTER_KEY, None)
    ctx.run_undo()
    assert ssh.authorized["n3"] == {CLUSTER_KEY}


def test_a_committed_join_is_kept_by_its_leftover_undo(ssh: FakeSSH, env: OpEnv) -> None:
    """A master that died right after the commit runs the join's undo at its restart."""
    node = new_node(env)
    ssh.presented[node.primary_ip] = host_key()
    ctx = env.context()
    nodejoin.join(ctx, node, ClusterCA.load(env.nodes.crypto_dir), CLUSTER_KEY, None)
    with env.store.transaction() as txn:
        nodejoin.add_in_txn(txn, node)
    assert ctx.run_undo() == []
    assert crypto_files(env, "n3") == sorted(nodejoin.NODE_FILES)
    assert ssh.authorized["n3"] == {CLUSTER_KEY}


def test_the_commit_refuses_an_address_taken_meanwhile(env: OpEnv) -> None:
    with pytest.raises(ConflictError) as failed, env.store.transaction() as txn:
        nodejoin.add_in_txn(txn, new_node(env, ip="192.0.2.2"))
    assert failed.value.details["field"] == "primary_ip"
    assert env.store.find("node", "n3") is None


def test_a_leaving_node_loses_its_certificates_and_our_key(ssh: FakeSSH, env: OpEnv) -> None:
    install_files(env, "n2")
    ssh.authorized["n2"] = {CLUSTER_KEY}
    assert nodejoin.leave(env.context(), env.node("n2"), CLUSTER_KEY) == []
    assert crypto_files(env, "n2") == [] and ssh.authorized["n2"] == set()


def test_a_dead_leaving_node_is_a_reported_problem_not_an_error(ssh: FakeSSH, env: OpEnv) -> None:
    env.nodes.offline.add("n2")
    problems = nodejoin.leave(env.context(), env.node("n2"), CLUSTER_KEY)
    assert len(problems) == 1 and problems[0].startswith("n2: ")


def test_a_node_that_fails_a_file_removal_still_loses_our_key(ssh: FakeSSH, env: OpEnv) -> None:
    install_files(env, "n2")
    ssh.authorized["n2"] = {CLUSTER_KEY}
    env.nodes.fail("remove_file", NodeError("read-only file system"), node="n2")
    problems = nodejoin.leave(env.context(), env.node("n2"), CLUSTER_KEY)
    assert problems == ["n2: certificates: node n2: read-only file system"]
    assert ssh.authorized["n2"] == set()


def test_only_the_ca_has_a_checksum_every_node_shares() -> None:
    ca = ClusterCA.create("c1")
    assert list(nodejoin.expected_checksums(ca.cert_pem)) == [nodejoin.NODE_CA]
