"""Transfer actions: real background workers on one machine, and between two lab nodes."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import herdlab
import paramiko
import pytest

from herd.crypto.ca import ClusterCA
from herd.errors import ConflictError, NotFoundError, ValidationError
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch
from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool

MIB = 1024 * 1024
load_all()


@pytest.fixture(scope="module")
def ca() -> ClusterCA:
    return ClusterCA.create("test.example")


def creds(ca: ClusterCA, transfer_id: str) -> dict[str, str]:
    pair = ca.issue_transfer_cert(transfer_id)
    return {
        "cert_pem": pair.cert_pem.decode(),
        "key_pem": pair.key_pem.decode(),
        "ca_pem": ca.cert_pem.decode(),
    }


def sparse_image(path: Path, size: int, data_every: int, piece: int) -> bytes:
    with open(path, "wb") as f:
        f.truncate(size)
        for i, offset in enumerate(range(0, size, data_every)):
            f.seek(offset)
            f.write(os.urandom(piece // 2) + bytes([i % 251 + 1]) * (piece - piece // 2))
    return path.read_bytes()


Call = Callable[..., dict[str, Any]]


def wait_state(call: Call, transfer_id: str, states: tuple[str, ...], **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = call("transfer_status", transfer_id=transfer_id, **kw)
        if status["state"] in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"transfer {transfer_id} never reached {states}: {status}")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Call]:
    ctx = NodeContext(tmp_path / "node")

    def call(name: str, **args: Any) -> dict[str, Any]:
        return dispatch(ctx, name, args)

    yield call
    for request in (tmp_path / "node").glob("transfers/*/*/request.json"):
        call("transfer_abort", transfer_id=json.loads(request.read_text())["transfer_id"])


def start_pair(
    call: Call, ca: ClusterCA, tid: str, src: Path, dest: Path, **send_args: Any
) -> dict[str, Any]:
    started = call(
        "transfer_receive_start", transfer_id=tid, dest_path=str(dest), size_mib=64,
        bind_ip="127.0.0.1", compression=send_args.get("compression", "none"), **creds(ca, tid),
    )  # fmt: skip
    call(
        "transfer_send_start", transfer_id=tid, source_path=str(src), dest_ip="127.0.0.1",
        port=started["port"], **creds(ca, tid), **send_args,
    )  # fmt: skip
    return started


def test_transfer_through_actions_and_replays(node: Call, ca: ClusterCA, tmp_path: Path) -> None:
    src, dest = tmp_path / "src.img", tmp_path / "dest.img"
    content = sparse_image(src, 64 * MIB, 16 * MIB, 256 * 1024)
    keys = creds(ca, "t1")
    recv_args = {
        "transfer_id": "t1", "dest_path": str(dest), "size_mib": 64, "bind_ip": "127.0.0.1",
        "compression": "zstd-fast", **keys,
    }  # fmt: skip
    first = node("transfer_receive_start", **recv_args)
    assert first["changed"] is True
    assert node("transfer_receive_start", **recv_args) == {"changed": False, "port": first["port"]}
    with pytest.raises(ConflictError):
        node("transfer_receive_start", **{**recv_args, "size_mib": 128})
    send_args = {
        "transfer_id": "t1", "source_path": str(src), "dest_ip": "127.0.0.1",
        "port": first["port"], "compression": "zstd-fast", **keys,
    }  # fmt: skip
    assert node("transfer_send_start", **send_args)["changed"] is True
    assert node("transfer_send_start", **send_args)["changed"] is False
    for role in ("receive", "send"):
        status = wait_state(node, "t1", ("done", "failed"), role=role)
        assert status["state"] == "done", status
        assert status["bytes"] == 64 * MIB and status["data_bytes"] == 4 * 256 * 1024
        assert status["wire_bytes"] < 4 * 256 * 1024
    assert dest.read_bytes() == content
    both = node("transfer_status", transfer_id="t1")
    assert both["role"] == "receive" and both["state"] == "done"
    assert node("transfer_abort", transfer_id="t1") == {"changed": False}
    assert dest.read_bytes() == content
    # The private key is gone once the worker holds it.
    assert not list((tmp_path / "node").glob("transfers/t1/*/key.pem"))


def test_killed_sender_makes_receiver_clean_up(node: Call, ca: ClusterCA, tmp_path: Path) -> None:
    src, dest = tmp_path / "src.img", tmp_path / "dest.img"
    sparse_image(src, 64 * MIB, 8 * MIB, MIB)
    start_pair(node, ca, "t2", src, dest, bandwidth_limit=512 * 1024)
    deadline = time.monotonic() + 20
    while node("transfer_status", transfer_id="t2", role="receive")["data_bytes"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert dest.exists()
    pid = json.loads((tmp_path / "node/transfers/t2/send/process.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    status = wait_state(node, "t2", ("failed", "done"), role="receive")
    assert status["state"] == "failed"
    assert status["error"]["type"] == "TransferError"
    assert not dest.exists()
    sender = node("transfer_status", transfer_id="t2", role="send")
    assert sender["state"] == "failed" and "without reporting" in sender["error"]["message"]
    assert sender["throttled_seconds"] is None or sender["throttled_seconds"] >= 0


def test_abort_kills_both_ends_and_removes_new_disk(
    node: Call, ca: ClusterCA, tmp_path: Path
) -> None:
    src, dest = tmp_path / "src.img", tmp_path / "dest.img"
    sparse_image(src, 64 * MIB, 8 * MIB, MIB)
    start_pair(node, ca, "t3", src, dest, bandwidth_limit=512 * 1024)
    wait_state(node, "t3", ("running",), role="receive")
    assert node("transfer_abort", transfer_id="t3") == {"changed": True}
    for role in ("receive", "send"):
        status = node("transfer_status", transfer_id="t3", role=role)
        assert status["state"] == "failed" and "aborted" in status["error"]["message"]
    assert not dest.exists()
    assert node("transfer_abort", transfer_id="t3") == {"changed": False}
    assert node("transfer_abort", transfer_id="never") == {"changed": False}
    with pytest.raises(NotFoundError):
        node("transfer_status", transfer_id="never")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ciphers", "RC4-SHA"),
        ("ciphers", ["TLS_AES_128_GCM_SHA256", "ALL"]),
        ("compression", "no-such-tool"),
        ("compression", "../../bin/sh"),
        ("transfer_id", "bad/id"),
        ("bind_ip", "localhost"),
        ("size_mib", 0),
    ],
)
def test_receive_start_refuses_bad_input(
    node: Call, ca: ClusterCA, tmp_path: Path, field: str, value: Any
) -> None:
    args = {
        "transfer_id": "t4", "dest_path": str(tmp_path / "d"), "size_mib": 1,
        "bind_ip": "127.0.0.1", **creds(ca, "t4"), field: value,
    }  # fmt: skip
    with pytest.raises(ValidationError) as err:
        node("transfer_receive_start", **args)
    assert err.value.details["field"] == field
    assert not (tmp_path / "node" / "transfers" / "t4").exists()


def test_credentials_of_another_transfer_are_refused(
    node: Call, ca: ClusterCA, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError) as err:
        node(
            "transfer_send_start", transfer_id="t5", source_path=str(tmp_path),
            dest_ip="127.0.0.1", port=1, **creds(ca, "t6"),
        )  # fmt: skip
    assert err.value.details["field"] == "cert_pem"


@pytest.mark.lab
def test_sparse_gib_between_lab_nodes_sends_only_data(
    lab_cluster: herdlab.Lab, ca: ClusterCA
) -> None:
    """The data flows node to node over the lab network; the master only makes calls."""
    src_node, dst_node = lab_cluster.nodes[0], lab_cluster.nodes[1]
    data = 4 * MIB
    content = sparse_image(src_node.state_dir / "xfer-src.img", 1024 * MIB, 256 * MIB, MIB)
    dest = dst_node.state_dir / "xfer-dest.img"
    dest.unlink(missing_ok=True)
    key = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    src_addr = NodeAddress(src_node.name, src_node.ip, src_node.host_key, src_node.port)
    dst_addr = NodeAddress(dst_node.name, dst_node.ip, dst_node.host_key, dst_node.port)
    with SSHPool(key, connect_timeout=5.0) as pool, NodeClient(pool) as client:
        keys = creds(ca, "labmove")
        port = client.call(
            dst_addr, "transfer_receive_start",
            {"transfer_id": "labmove", "dest_path": "/var/lib/herd-node/xfer-dest.img",
             "size_mib": 1024, "bind_ip": dst_node.ip, "compression": "lz4", **keys},
        )["port"]  # fmt: skip
        client.call(
            src_addr, "transfer_send_start",
            {"transfer_id": "labmove", "source_path": "/var/lib/herd-node/xfer-src.img",
             "dest_ip": dst_node.ip, "port": port, "compression": "lz4", **keys},
        )  # fmt: skip
        statuses = {}
        for addr in (dst_addr, src_addr):
            statuses[addr.name] = wait_state(
                lambda name, at=addr, **a: client.call(at, name, a), "labmove", ("done", "failed")
            )
        try:
            for status in statuses.values():
                assert status["state"] == "done", status["error"]
                assert status["data_bytes"] == data
                assert status["wire_bytes"] < data + 64 * 1024
            assert statuses[dst_node.name]["digest"] == statuses[src_node.name]["digest"]
            assert dest.read_bytes() == content
            assert dest.stat().st_blocks * 512 < 32 * MIB
        finally:
            for addr in (src_addr, dst_addr):
                client.call(addr, "transfer_abort", {"transfer_id": "labmove"})
            dest.unlink(missing_ok=True)
            (src_node.state_dir / "xfer-src.img").unlink()
