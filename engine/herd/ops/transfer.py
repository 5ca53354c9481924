"""Driving disk streams from the master: credentials, start, watch, verify, abort.

Data flows node to node over TLS; the master only hands each end a throw-away
certificate for this one transfer, polls both ends' status files and writes progress
(bytes, rate, ETA) into the job log. Both ends publish the digest of what they streamed;
the master compares them, so a disk is never accepted on one side's word alone.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from herd.config.model import Cluster, Node
from herd.crypto.ca import ClusterCA
from herd.crypto.tls import parse_ciphers
from herd.errors import TransferError, ValidationError
from herd.ops.base import OpContext
from herd.ops.common import BUILTIN_COMPRESSION
from herd.ops.params import Param
from herd.ops.undo import node_arg, node_of, undo_handler

POLL_SECONDS = 0.5
PROGRESS_SECONDS = 3.0

COMPRESSION = Param(
    "compression",
    str,
    default="none",
    doc="compression on the wire: none, gzip, gzip-fast, gzip-slow, lzop, zstd, "
    "zstd-fast, lz4 or a custom tool listed in the cluster's "
    "compression_tools",
)
CIPHERS = Param(
    "ciphers",
    list,
    item_type=str,
    doc="TLS cipher suites for this move (intra-cluster only, and only when the "
    "cluster allows cipher bypassing)",
)
BANDWIDTH = Param("bandwidth_limit", int, minimum=1, doc="bytes per second on the wire")
STALL_TIMEOUT = Param(
    "stall_timeout",
    float,
    minimum=1,
    doc="seconds a stream may go without progress before both ends give up "
    "(default: the node's, 60 s); a cut link or a stalled peer ends the copy this soon",
)


def new_transfer_id() -> str:
    return "xfer-" + secrets.token_hex(8)


def check_compression(cluster: Cluster, name: str) -> None:
    """Built-in codecs always; custom tools only when the cluster lists them."""
    if name in BUILTIN_COMPRESSION or name in cluster.compression_tools:
        return
    allowed = ", ".join([*BUILTIN_COMPRESSION, *cluster.compression_tools])
    raise ValidationError("compression", name, f"one of {allowed}")


def check_ciphers(cluster: Cluster, ciphers: list[str] | None, cross_cluster: bool) -> None:
    """The seeds' rule: strong defaults always; a chosen list only within a cluster whose
    operator allowed bypassing, and then only from the allow-list."""
    if ciphers is None:
        return
    if cross_cluster:
        raise ValidationError(
            "ciphers",
            ciphers,
            "nothing: moves between clusters always use the strong default suites",
        )
    if not cluster.allow_cipher_bypassing:
        raise ValidationError(
            "ciphers", ciphers, "nothing, unless the cluster setting allow_cipher_bypassing is on"
        )
    parse_ciphers(ciphers)


@dataclass
class Endpoint:
    """One end of a transfer on a node of *this* cluster."""

    node: Node
    path: str


def credentials(ca: ClusterCA, transfer_id: str) -> dict[str, str]:
    pair = ca.issue_transfer_cert(transfer_id)
    return {
        "cert_pem": pair.cert_pem.decode(),
        "key_pem": pair.key_pem.decode(),
        "ca_pem": ca.cert_pem.decode(),
    }


def undo_transfer(ctx: OpContext, what: str, node: Node, transfer_id: str, role: str) -> None:
    """Before starting a transfer end: the step that stops its worker (and port)."""
    ctx.undo(what, "transfer.abort", node=node_arg(node), transfer_id=transfer_id, role=role)


@undo_handler("transfer.abort")
def _abort(ctx: OpContext, args: dict[str, Any]) -> None:
    ctx.services.call(
        node_of(args), "transfer_abort", {"transfer_id": args["transfer_id"], "role": args["role"]}
    )


def stall_arg(stall_timeout: float | None) -> dict[str, float]:
    """The node's own default applies unless the op chose one."""
    return {} if stall_timeout is None else {"stall_timeout": stall_timeout}


def start_receiver(
    ctx: OpContext,
    ca: ClusterCA,
    transfer_id: str,
    dest: Endpoint,
    size_mib: int,
    compression: str,
    ciphers: list[str] | None,
    peer_ca_pem: str | None = None,
    stall_timeout: float | None = None,
) -> int:
    """Start the receiving end; its abort is registered first. Returns the port."""
    what = f"abort receiving {transfer_id} on {dest.node.name}"
    undo_transfer(ctx, what, dest.node, transfer_id, "receive")
    answer = ctx.services.call(
        dest.node,
        "transfer_receive_start",
        {
            "transfer_id": transfer_id,
            "dest_path": dest.path,
            "size_mib": size_mib,
            "compression": compression,
            "ciphers": ciphers,
            "peer_ca_pem": peer_ca_pem,
            "bind_ip": dest.node.secondary_ip,
            **stall_arg(stall_timeout),
            **credentials(ca, transfer_id),
        },
    )
    return int(answer["port"])


def start_sender(
    ctx: OpContext,
    ca: ClusterCA,
    transfer_id: str,
    source: Endpoint,
    dest_ip: str,
    port: int,
    compression: str,
    ciphers: list[str] | None,
    bandwidth_limit: int | None,
    peer_ca_pem: str | None = None,
    stall_timeout: float | None = None,
) -> None:
    what = f"abort sending {transfer_id} from {source.node.name}"
    undo_transfer(ctx, what, source.node, transfer_id, "send")
    ctx.services.call(
        source.node,
        "transfer_send_start",
        {
            "transfer_id": transfer_id,
            "source_path": source.path,
            "dest_ip": dest_ip,
            "port": port,
            "compression": compression,
            "ciphers": ciphers,
            "bandwidth_limit": bandwidth_limit,
            "peer_ca_pem": peer_ca_pem,
            **stall_arg(stall_timeout),
            **credentials(ca, transfer_id),
        },
    )


def status(ctx: OpContext, end: Endpoint, transfer_id: str, role: str) -> dict[str, Any]:
    """The end's status, with the name of its node for errors about it."""
    answer = ctx.services.call(
        end.node, "transfer_status", {"transfer_id": transfer_id, "role": role}
    )
    return {**answer, "node": end.node.name}


def end_failed(label: str, st: dict[str, Any], *also: dict[str, Any]) -> TransferError:
    """A failed end as an error a person can act on: which end, on which node, and the
    end's own reason (not its serialized error document).

    ``also`` are other ends that failed with it, whose reasons are added: when one end
    gives up (a full disk), the other only sees the connection drop, and the first end
    seen failing may be the one that knows least.
    """
    err = st.get("error")
    return TransferError(
        f"{label}: " + "; ".join(_end_reason(end) for end in (st, *also)),
        role=st.get("role"),
        node=st.get("node"),
        cause=err,
    )


def _end_reason(st: dict[str, Any]) -> str:
    err = st.get("error")
    why = err.get("message") if isinstance(err, dict) else err
    role = st.get("role") or "transfer"
    where = f" on {st['node']}" if st.get("node") else ""
    return f"the {role} end{where} failed: {why or 'no reason given'}"


def watch(
    ctx: OpContext, label: str, poll: Callable[[], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Poll the ends until all are done; progress into the job log, errors raised.

    ``poll`` returns the status of every end this side can see, sender first.
    """
    last = 0.0
    while True:
        ctx.check_cancel()
        states = poll()
        failed = [st for st in states if st.get("state") == "failed"]
        if failed:
            raise end_failed(label, *failed)
        if all(st.get("state") == "done" for st in states):
            return states
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            last = now
            report(ctx, label, states[0])
        time.sleep(POLL_SECONDS)


def report(ctx: OpContext, label: str, st: dict[str, Any], final: bool = False) -> None:
    done, size = st.get("bytes") or 0, st.get("size") or 0
    if not size:
        return
    rate = st.get("rate") or 0.0
    pct = 100.0 * done / size if size else 100.0
    eta = st.get("eta")
    text = (
        f"{label}: {done / 2**20:.0f}/{size / 2**20:.0f} MiB ({pct:.0f}%), "
        f"{rate / 1e6:.1f} MB/s, {st.get('wire_bytes') or 0:,} bytes on the wire"
        + ("" if final or eta is None else f", ETA {eta:.0f} s")
    )
    ctx.progress(
        text,
        bytes=done,
        size=size,
        percent=round(pct, 1),
        rate=rate,
        eta=eta,
        wire_bytes=st.get("wire_bytes"),
        data_bytes=st.get("data_bytes"),
    )


def check_digests(label: str, sent: dict[str, Any], received: dict[str, Any]) -> None:
    if not sent.get("digest") or sent.get("digest") != received.get("digest"):
        raise TransferError(
            f"{label}: the receiver's checksum does not match what was sent",
            sent=sent.get("digest"),
            received=received.get("digest"),
        )


def copy_disk(
    ctx: OpContext,
    ca: ClusterCA,
    source: Endpoint,
    dest: Endpoint,
    size_mib: int,
    compression: str,
    ciphers: list[str] | None,
    bandwidth_limit: int | None,
    label: str,
    stall_timeout: float | None = None,
) -> dict[str, Any]:
    """One disk from a node of this cluster to another node of this cluster."""
    tid = new_transfer_id()
    port = start_receiver(
        ctx, ca, tid, dest, size_mib, compression, ciphers, stall_timeout=stall_timeout
    )
    start_sender(
        ctx,
        ca,
        tid,
        source,
        dest.node.secondary_ip,
        port,
        compression,
        ciphers,
        bandwidth_limit,
        stall_timeout=stall_timeout,
    )
    sent, received = watch(
        ctx, label, lambda: [status(ctx, source, tid, "send"), status(ctx, dest, tid, "receive")]
    )
    check_digests(label, sent, received)
    report(ctx, label, received, final=True)
    return {
        "transfer_id": tid,
        "bytes": received.get("bytes"),
        "wire_bytes": sent.get("wire_bytes"),
        "data_bytes": sent.get("data_bytes"),
    }
