"""NodeClient against real agents on lab nodes over real SSH."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import herdlab
import paramiko
import pytest

from herd.errors import NodeError, NotFoundError, ValidationError
from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool

pytestmark = pytest.mark.lab


def address(node: herdlab.LabNode) -> NodeAddress:
    return NodeAddress(node.name, node.ip, node.host_key, node.port)


def logins(node: herdlab.LabNode) -> int:
    """SSH logins the node's sshd accepted: the server-side count of connections."""
    return (Path(node.dir) / "sshd.log").read_text().count("Accepted publickey")


def agents(node: herdlab.LabNode) -> int:
    """``herd-node --serve`` processes running on the node: the server-side session count."""
    pids = node.exec("ip", "netns", "pids", node.netns).stdout.split()
    count = 0
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        count += b"herd-node\0--serve" in cmdline
    return count


@pytest.fixture
def client(lab_cluster: herdlab.Lab) -> Iterator[NodeClient]:
    key = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    with SSHPool(key, connect_timeout=5.0) as pool, NodeClient(pool, max_sessions=3) as c:
        yield c


def test_many_calls_share_one_connection_and_one_session(
    lab_cluster: herdlab.Lab, client: NodeClient
) -> None:
    node = lab_cluster.nodes[0]
    before = logins(node)
    for i in range(30):
        client.call(address(node), "write_file", {"path": f"seq/{i}", "content": str(i)})
    assert client.call(address(node), "ping")["hostname"] == node.name
    assert client.pool.connects[node.name] == 1
    assert client.sessions_opened[node.name] == 1
    assert logins(node) - before == 1
    assert agents(node) == 1
    assert sorted(p.name for p in (node.state_dir / "seq").iterdir()) == sorted(
        str(i) for i in range(30)
    )


def test_agent_errors_arrive_as_their_own_class(
    lab_cluster: herdlab.Lab, client: NodeClient
) -> None:
    node = address(lab_cluster.nodes[1])
    with pytest.raises(NotFoundError) as missing:
        client.call(node, "read_file", {"path": "does/not/exist"})
    assert missing.value.details["node"] == node.name
    with pytest.raises(ValidationError) as bad:
        client.call(node, "write_file", {"path": "../../etc/passwd", "content": "x"})
    assert bad.value.details["field"] == "path"
    with pytest.raises(ValidationError) as typed:
        client.call(node, "write_file", {"path": "f", "content": "x", "mode": "0644"})
    assert typed.value.details["field"] == "mode"
    with pytest.raises(NotFoundError):
        client.call(node, "no_such_action")
    assert client.call(node, "ping")["hostname"] == node.name
    assert client.sessions_opened[node.name] == 1


def test_a_node_error_from_the_agent_names_the_node_in_its_message(
    lab_cluster: herdlab.Lab, client: NodeClient
) -> None:
    """The agent does not know its cluster name; people read the message, not details."""
    node = address(lab_cluster.nodes[1])
    too_big = {"template": "file", "uuid": "rpc-nospace", "index": 0, "size_mib": 2**26,
               "params": {"path": "rpc-nospace.img", "preallocate": True}}  # fmt: skip
    with pytest.raises(NodeError) as err:
        client.call(node, "disk_create", {"disk": too_big})
    assert err.value.message.startswith(f"node {node.name}: no space for a 67108864 MiB disk")
    assert err.value.details["node"] == node.name
    assert client.call(node, "disk_info", {"disk": too_big})["exists"] is False


def test_parallel_threads_to_same_and_different_nodes(
    lab_cluster: herdlab.Lab, client: NodeClient
) -> None:
    nodes = lab_cluster.nodes
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(15):
                node = nodes[(t + i) % len(nodes)]
                path = f"par/{t}-{i}"
                client.call(address(node), "write_file", {"path": path, "content": f"{t}:{i}"})
                got = client.call(address(node), "read_file", {"path": path})
                assert got["content"] == f"{t}:{i}"
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for node in nodes:
        assert client.pool.connects[node.name] == 1
        assert 1 <= client.sessions_opened[node.name] <= client.max_sessions
        assert agents(node) == client.sessions_opened[node.name]


def test_call_many_reports_each_node(lab_cluster: herdlab.Lab, client: NodeClient) -> None:
    # A port nobody listens on, on a real lab node: refused at once, so the real nodes keep
    # the normal connect timeout however slowly a loaded machine starts their agents.
    first = lab_cluster.nodes[0]
    ghost = NodeAddress("ghost", first.ip, first.host_key, port=1)
    client.pool.connect_retries = 0
    results = client.call_many([*map(address, lab_cluster.nodes), ghost], "node_info")
    for node in lab_cluster.nodes:
        info = results[node.name].result
        assert results[node.name].ok and info is not None
        assert info["hostname"] == node.name and info["storage_dir"] == "/var/lib/herd-node"
        assert info["memory_total_mib"] > 0 and info["disk_total_mib"] > 0
    assert isinstance(results["ghost"].error, NodeError)
    assert results["ghost"].error.details["node"] == "ghost"


def test_dead_agent_session_is_replaced_for_the_next_call(scratch_lab: herdlab.Lab) -> None:
    node = scratch_lab.nodes[0]
    key = paramiko.Ed25519Key.from_private_key_file(scratch_lab.key_path)
    with SSHPool(key) as pool, NodeClient(pool) as client:
        client.call(address(node), "ping")
        node.exec("pkill", "-KILL", "-f", "herd-node --serve")
        try:
            client.call(address(node), "ping")
        except NodeError as exc:  # the kill may land before or after the client notices
            assert exc.details["node"] == node.name
        assert client.call(address(node), "ping")["hostname"] == node.name
        assert client.sessions_opened[node.name] == 2
        assert pool.connects[node.name] == 1


def test_killed_sshd_gives_node_error_naming_the_node(scratch_lab: herdlab.Lab) -> None:
    node = scratch_lab.nodes[0]
    key = paramiko.Ed25519Key.from_private_key_file(scratch_lab.key_path)
    with SSHPool(key, connect_timeout=2.0, connect_retries=0) as pool, NodeClient(pool) as client:
        client.call(address(node), "ping")
        node.kill_sshd()
        for _ in range(2):
            with pytest.raises(NodeError) as err:
                client.call(address(node), "ping")
            assert err.value.details["node"] == node.name
            assert node.name in err.value.message


def test_cut_link_times_out_then_recovers(scratch_lab: herdlab.Lab) -> None:
    node = scratch_lab.nodes[1]
    key = paramiko.Ed25519Key.from_private_key_file(scratch_lab.key_path)
    with SSHPool(key) as pool, NodeClient(pool) as client:
        client.call(address(node), "ping")
        node.link_down()
        try:
            with pytest.raises(NodeError, match="timeout"):
                client.call(address(node), "ping", timeout=1.0)
        finally:
            node.link_up()
        assert client.call(address(node), "ping")["hostname"] == node.name
        assert client.sessions_opened[node.name] == 2


def test_missing_agent_command_is_reported_with_its_stderr(lab_cluster: herdlab.Lab) -> None:
    node = lab_cluster.nodes[2]
    key = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    with (
        SSHPool(key) as pool,
        NodeClient(pool, command="no-such-herd-node --serve") as client,
        pytest.raises(NodeError, match="not found") as err,
    ):
        client.call(address(node), "ping")
    assert err.value.details["node"] == node.name
