"""The stream over a mutually authenticated TLS connection, node to node.

Disk data never rides the master's SSH channels: paramiko tops out at a few hundred MB/s
and hung on a rekey at a channel close (LAB-NOTES), so the receiver listens on its own
port and the sender connects to it directly.  Both present the certificate the cluster CA
issued for this transfer only: the sender checks the receiver's through
``server_hostname=transfer_id``, the receiver the sender's through ``require_peer``.

Ending a TLS stream cleanly matters here: Python's default ``suppress_ragged_eofs``
turned a cut connection into a quiet EOF that lost the last 16 KiB in a lab probe.  The
receiver therefore reads with ``suppress_ragged_eofs=False``, answers with an
acknowledgement carrying its own digest only after the disk is flushed, and both ends
``unwrap()``; the sender reports success only on that acknowledgement.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import time
from typing import Any

from herd.crypto.tls import require_peer
from herd.errors import AuthenticationError, HerdError, TransferError
from herd.node.transfer.codecs import Codec
from herd.node.transfer.progress import Progress, TokenBucket
from herd.node.transfer.stream import DiskWriter, Result, error_dict, receive_stream, send_stream

DEFAULT_CONNECT_TIMEOUT = 60.0
DEFAULT_STALL_TIMEOUT = 60.0
_U32 = struct.Struct(">I")
MAX_ACK = 64 * 1024


def listen(bind_ip: str, port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind_ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind_ip, port))
    sock.listen(4)
    return sock


def _reader(sock: ssl.SSLSocket, stall_timeout: float) -> Any:
    def read_exact(n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = sock.recv_into(view[got:], n - got)
            except TimeoutError as exc:
                raise TransferError(
                    f"stalled: no data from the peer for {stall_timeout:g} s",
                    stall_timeout=stall_timeout,
                ) from exc
            except ssl.SSLEOFError as exc:
                raise TransferError("the peer closed the connection without TLS close") from exc
            if k == 0:
                raise TransferError("the peer ended the connection mid-stream")
            got += k
        return bytes(buf)

    return read_exact


def _send_ack(sock: ssl.SSLSocket, ack: dict[str, Any]) -> None:
    body = json.dumps(ack).encode()
    sock.sendall(_U32.pack(len(body)) + body)


def _read_ack(sock: ssl.SSLSocket, stall_timeout: float) -> dict[str, Any]:
    read_exact = _reader(sock, stall_timeout)
    (length,) = _U32.unpack(read_exact(_U32.size))
    if length > MAX_ACK:
        raise TransferError(f"acknowledgement of {length} bytes refused")
    ack = json.loads(read_exact(length))
    if not isinstance(ack, dict):
        raise TransferError("malformed acknowledgement from the receiver")
    return ack


def _accept(
    listener: socket.socket,
    context: ssl.SSLContext,
    transfer_id: str,
    connect_timeout: float,
    stall_timeout: float,
    progress: Progress,
) -> ssl.SSLSocket:
    """The first connection that authenticates as this transfer's sender.

    Others (a port scanner, a peer with another transfer's certificate) are dropped and
    noted, and waiting goes on: a stray connection must not be able to cancel a move.
    """
    deadline = time.monotonic() + connect_timeout
    refused: str | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        listener.settimeout(remaining)
        try:
            conn, addr = listener.accept()
        except TimeoutError:
            break
        conn.settimeout(stall_timeout)
        try:
            tls = context.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            refused = f"{addr[0]}: TLS handshake failed: {exc}"
        else:
            try:
                require_peer(tls, transfer_id)
                return tls
            except AuthenticationError as exc:
                tls.close()
                refused = f"{addr[0]}: {exc.message}"
        progress.extra["refused"] = refused
        progress.publish()
    raise TransferError(
        f"no sender of transfer {transfer_id} connected within {connect_timeout:g} s"
        + (f" (refused {refused})" if refused else ""),
        transfer_id=transfer_id,
        refused=refused,
    )


def receive(
    listener: socket.socket,
    context: ssl.SSLContext,
    *,
    transfer_id: str,
    dest_path: str | os.PathLike[str],
    capacity: int | None,
    codec: Codec,
    progress: Progress,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
) -> Result:
    """Accept the sender, write and verify the disk, acknowledge; undo the disk on failure."""
    try:
        tls = _accept(listener, context, transfer_id, connect_timeout, stall_timeout, progress)
    finally:
        listener.close()
    try:
        writer = DiskWriter(dest_path, capacity)
        try:
            result = receive_stream(_reader(tls, stall_timeout), writer, codec, progress)
        except BaseException as exc:
            writer.discard()
            # Published before the connection drops: the sender then fails too, and the
            # master, seeing that, must find this end's reason (a full disk) already here.
            progress.finish("failed", error=error_dict(exc))
            _best_effort_ack(tls, {"ok": False, "error": error_dict(exc)})
            raise
        _send_ack(tls, {"ok": True, **result.to_dict()})
        tls.unwrap()
        return result
    except (OSError, ssl.SSLError) as exc:
        raise TransferError(f"receiving transfer {transfer_id} failed: {exc}") from exc
    finally:
        tls.close()


def send(
    source_path: str | os.PathLike[str],
    context: ssl.SSLContext,
    *,
    transfer_id: str,
    host: str,
    port: int,
    codec: Codec,
    progress: Progress,
    bandwidth_limit: float | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
) -> Result:
    """Connect to the receiver, stream the disk, and succeed only on its acknowledgement."""
    where = f"{host}:{port}"
    limiter = TokenBucket(bandwidth_limit) if bandwidth_limit else None
    progress.throttle = limiter
    try:
        conn = socket.create_connection((host, port), timeout=connect_timeout)
    except OSError as exc:
        raise TransferError(f"cannot connect to receiver {where}: {exc}", target=where) from exc
    try:
        conn.settimeout(stall_timeout)
        with context.wrap_socket(conn, server_hostname=transfer_id) as tls:
            try:
                result = send_stream(source_path, tls.sendall, codec, progress, limiter)
            except TimeoutError as exc:
                raise TransferError(
                    f"stalled: receiver {where} took nothing for {stall_timeout:g} s"
                ) from exc
            ack = _read_ack(tls, stall_timeout)
            if not ack.get("ok"):
                err = ack.get("error") or {}
                raise TransferError(
                    f"receiver {where} refused the stream: {err.get('message', 'no reason')}",
                    target=where,
                    receiver_error=err,
                )
            if ack.get("digest") != result.digest:
                raise TransferError(
                    "receiver acknowledged a different digest",
                    sent=result.digest,
                    received=ack.get("digest"),
                )
            tls.unwrap()
        return result
    except ssl.SSLCertVerificationError as exc:
        raise AuthenticationError(
            f"receiver {where} is not the endpoint of transfer {transfer_id}: {exc}",
            target=where,
        ) from exc
    except HerdError:
        raise
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TransferError(f"sending to {where} failed: {exc}", target=where) from exc
    finally:
        conn.close()


def _best_effort_ack(tls: ssl.SSLSocket, ack: dict[str, Any]) -> None:
    """Tell a sender waiting for the verdict why it failed; it may already be gone."""
    try:
        tls.settimeout(2.0)
        _send_ack(tls, ack)
    except (OSError, ssl.SSLError):
        pass
