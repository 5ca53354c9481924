"""Driving a node-to-node copy from the master, against scripted node answers: the
stall timeout an op chose reaches both ends, and a failed end is reported by node and
reason (the lab runs in tests/faults/test_node_faults.py and test_move_lab.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from herd.config.model import Node
from herd.errors import TransferError
from herd.locking import LockManager
from herd.ops import transfer
from herd.ops.base import OpContext
from herd.ops.transfer import Endpoint, copy_disk

SOURCE, DEST = Node(name="src", primary_ip="192.0.2.1"), Node(name="dst", primary_ip="192.0.2.2")
STALLED = {"type": "TransferError", "message": "stalled: no data from the peer for 3 s",
           "details": {"stall_timeout": 3.0}}  # fmt: skip


class Nodes:
    """Both ends start; the receiver then reports ``receiver_state``, the sender
    ``sender_state`` (running by default)."""

    def __init__(
        self, receiver_state: dict[str, Any], sender_state: dict[str, Any] | None = None
    ) -> None:
        self.receiver_state = receiver_state
        self.sender_state = sender_state or {"state": "running"}
        self.starts: dict[str, dict[str, Any]] = {}

    def call(self, node: Node, action: str, args: dict[str, Any], timeout: Any = None) -> Any:
        if action.endswith("_start"):
            self.starts[action] = args
            return {"changed": True, "port": 4242}
        if action == "transfer_status" and args["role"] == "receive":
            return {"role": "receive", **self.receiver_state}
        return {"role": args.get("role"), **self.sender_state}


def copy(nodes: Nodes, **extra: Any) -> dict[str, Any]:
    ctx = OpContext(
        store=None,  # type: ignore[arg-type]
        locks=LockManager(),
        owner="job-1",
        log_fn=lambda message, kind, data: None,
        cancel=threading.Event(),
        services=nodes,
    )
    ends = Endpoint(SOURCE, "/src"), Endpoint(DEST, "/dst")
    return copy_disk(ctx, None, *ends, 8, "none", None, None, "disk 0 of web", **extra)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "credentials", lambda ca, tid: {})


def test_a_failed_end_is_named_by_node_and_reason() -> None:
    with pytest.raises(TransferError) as info:
        copy(Nodes({"state": "failed", "error": STALLED}))
    assert info.value.message == (
        "disk 0 of web: the receive end on dst failed: stalled: no data from the peer for 3 s"
    )
    assert info.value.details["node"] == "dst"
    assert info.value.details["cause"] == STALLED


def test_when_both_ends_failed_both_reasons_are_given() -> None:
    """The sender sees only the dropped connection; the reason is the receiver's."""
    full = {"type": "TransferError", "message": "no space left on the device of /dst",
            "details": {}}  # fmt: skip
    dropped = {"type": "TransferError", "message": "sending failed: EOF", "details": {}}
    with pytest.raises(TransferError) as info:
        copy(Nodes({"state": "failed", "error": full}, {"state": "failed", "error": dropped}))
    assert info.value.message == (
        "disk 0 of web: the send end on src failed: sending failed: EOF; "
        "the receive end on dst failed: no space left on the device of /dst"
    )
    assert info.value.details["node"] == "src"


def test_the_chosen_stall_timeout_reaches_both_ends() -> None:
    nodes = Nodes({"state": "failed", "error": STALLED})
    with pytest.raises(TransferError):
        copy(nodes, stall_timeout=3.0)
    assert {a: args["stall_timeout"] for a, args in nodes.starts.items()} == {
        "transfer_receive_start": 3.0,
        "transfer_send_start": 3.0,
    }


def test_without_one_the_nodes_keep_their_default() -> None:
    nodes = Nodes({"state": "failed", "error": STALLED})
    with pytest.raises(TransferError):
        copy(nodes)
    assert all("stall_timeout" not in args for args in nodes.starts.values())
