"""Real TLS over loopback: both ends authenticated per transfer, failures cleaned up."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from herd.crypto.tls import client_context, server_context
from herd.errors import AuthenticationError, HerdError, TransferError, ValidationError
from herd.node.transfer import net
from herd.node.transfer.codecs import get_codec
from herd.node.transfer.progress import Progress
from herd.node.transfer.stream import MAGIC

from .conftest import MIB, Creds, mixed, write_image
from .test_stream import full_disk


class Receiver:
    """``net.receive`` in a thread, with its result or error kept for the test."""

    def __init__(self, creds: Creds, dest: Path, codec: str = "none", **kw: Any) -> None:
        self.listener = net.listen("127.0.0.1")
        self.port = self.listener.getsockname()[1]
        self.progress = Progress("receive")
        self.result: Any = None
        self.error: BaseException | None = None
        context = server_context(
            creds.ca_pem, creds.cert_file, creds.key_file, ciphers=kw.pop("ciphers", None)
        )
        kw.setdefault("connect_timeout", 10.0)
        kw.setdefault("stall_timeout", 10.0)

        def run() -> None:
            try:
                self.result = net.receive(
                    self.listener, context, transfer_id=creds.transfer_id, dest_path=dest,
                    capacity=None, codec=get_codec(codec), progress=self.progress, **kw,
                )  # fmt: skip
            except BaseException as exc:  # noqa: BLE001 - inspected by the test
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def wait(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive()


def send(creds: Creds, src: Path, port: int, codec: str = "none", **kw: Any) -> Any:
    context = client_context(
        creds.ca_pem, creds.cert_file, creds.key_file, ciphers=kw.pop("ciphers", None)
    )
    return net.send(
        src, context, transfer_id=kw.pop("transfer_id", creds.transfer_id),
        host="127.0.0.1", port=port,
        codec=get_codec(codec), progress=kw.pop("progress", Progress("send")),
        connect_timeout=5.0, stall_timeout=10.0, **kw,
    )  # fmt: skip


@pytest.fixture
def sparse(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "src.img"
    pieces = {i * 8 * MIB: mixed(256 * 1024, i) for i in range(8)}
    return path, write_image(path, 64 * MIB, pieces)


@pytest.mark.parametrize("codec", ["none", "zstd-fast", "lzop"])
def test_sparse_disk_over_tls_sends_only_data(
    issue: Callable[..., Creds], tmp_path: Path, sparse: tuple[Path, bytes], codec: str
) -> None:
    src, content = sparse
    dest = tmp_path / "dest.img"
    recv = Receiver(issue("mv1", "dst"), dest, codec)
    progress = Progress("send")
    sent = send(issue("mv1", "src"), src, recv.port, codec, progress=progress)
    recv.wait()
    assert recv.error is None
    assert dest.read_bytes() == content
    assert recv.result.digest == sent.digest
    assert sent.data_bytes == 8 * 256 * 1024
    assert sent.wire_bytes <= sent.data_bytes + 4096
    assert recv.progress.wire_bytes == progress.wire_bytes == sent.wire_bytes
    assert recv.progress.bytes == progress.bytes == len(content)


def test_cipher_outside_allow_list_refused() -> None:
    for bad in ("RC4-SHA", "ALL", "AES128-SHA:!aNULL", ["TLS_AES_128_GCM_SHA256", "NULL-SHA"]):
        with pytest.raises(ValidationError) as err:
            server_context("", Path("/nonexistent"), Path("/nonexistent"), ciphers=bad)
        assert err.value.details["field"] == "ciphers"


def test_chosen_cipher_is_used_and_disjoint_choices_fail(
    issue: Callable[..., Creds], tmp_path: Path, sparse: tuple[Path, bytes]
) -> None:
    src, content = sparse
    recv = Receiver(issue("mv2", "dst"), tmp_path / "a", ciphers="TLS_CHACHA20_POLY1305_SHA256")
    send(issue("mv2", "src"), src, recv.port, ciphers=["TLS_CHACHA20_POLY1305_SHA256"])
    recv.wait()
    assert recv.error is None and (tmp_path / "a").read_bytes() == content
    recv = Receiver(
        issue("mv3", "dst"), tmp_path / "b", ciphers="TLS_AES_128_GCM_SHA256", connect_timeout=1.0
    )
    with pytest.raises(HerdError):
        send(issue("mv3", "src"), src, recv.port, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    recv.wait()
    assert isinstance(recv.error, TransferError)
    assert "handshake" in str(recv.error.details["refused"])
    assert not (tmp_path / "b").exists()


def test_sender_with_another_transfers_certificate_is_refused(
    issue: Callable[..., Creds], tmp_path: Path, sparse: tuple[Path, bytes]
) -> None:
    src, _ = sparse
    dest = tmp_path / "dest.img"
    recv = Receiver(issue("mv4", "dst"), dest, connect_timeout=1.5)
    with pytest.raises(HerdError):
        # Dials the right transfer, but holds a certificate the CA issued for another one.
        send(issue("other", "src"), src, recv.port, transfer_id="mv4")
    recv.wait()
    assert isinstance(recv.error, TransferError)
    assert "expected 'mv4'" in recv.error.details["refused"]
    assert not dest.exists()


def test_receiver_with_another_transfers_certificate_is_refused(
    issue: Callable[..., Creds], tmp_path: Path, sparse: tuple[Path, bytes]
) -> None:
    src, _ = sparse
    recv = Receiver(issue("intruder", "dst"), tmp_path / "d", connect_timeout=1.0)
    with pytest.raises(AuthenticationError):
        send(issue("mv5", "src"), src, recv.port)
    recv.wait()


def raw_sender(creds: Creds, port: int) -> ssl.SSLSocket:
    context = client_context(creds.ca_pem, creds.cert_file, creds.key_file)
    sock = socket.create_connection(("127.0.0.1", port))
    return context.wrap_socket(sock, server_hostname=creds.transfer_id)


def partial_stream() -> bytes:
    header = b'{"compression": "none", "size": 1048576}'
    frame = b"X" + (0).to_bytes(8, "big") + (4096).to_bytes(4, "big") + b"a" * 4096
    return MAGIC + len(header).to_bytes(4, "big") + header + len(frame).to_bytes(4, "big") + frame


def test_sender_dying_midway_makes_receiver_remove_the_disk(
    issue: Callable[..., Creds], tmp_path: Path
) -> None:
    dest = tmp_path / "dest.img"
    recv = Receiver(issue("mv6", "dst"), dest)
    tls = raw_sender(issue("mv6", "src"), recv.port)
    tls.sendall(partial_stream())
    tls.close()  # no unwrap(): what a killed process leaves behind
    recv.wait()
    assert isinstance(recv.error, TransferError)
    assert not dest.exists()


def test_a_full_receiver_has_published_why_before_the_sender_fails(
    issue: Callable[..., Creds],
    tmp_path: Path,
    sparse: tuple[Path, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The master reads both ends once the sender fails: the receiver's reason (its disk
    is full) must be there by then, not only after its connection is gone."""
    full_disk(monkeypatch)
    dest = tmp_path / "dest.img"
    recv = Receiver(issue("mv8", "dst"), dest)
    with pytest.raises(HerdError):
        send(issue("mv8", "src"), sparse[0], recv.port)
    assert recv.progress.state == "failed"
    assert recv.progress.error is not None and "no space" in recv.progress.error["message"]
    recv.wait()
    assert not dest.exists()


def test_stalled_sender_times_out_and_disk_is_removed(
    issue: Callable[..., Creds], tmp_path: Path
) -> None:
    dest = tmp_path / "dest.img"
    recv = Receiver(issue("mv7", "dst"), dest, stall_timeout=0.5)
    tls = raw_sender(issue("mv7", "src"), recv.port)
    tls.sendall(partial_stream())
    recv.wait()
    tls.close()
    assert isinstance(recv.error, TransferError) and "stalled" in recv.error.message
    assert not dest.exists()


def test_bandwidth_limit_accounts_for_every_wire_byte(
    issue: Callable[..., Creds], tmp_path: Path
) -> None:
    src = tmp_path / "src.img"
    write_image(src, 4 * MIB, {0: mixed(2 * MIB)})
    recv = Receiver(issue("mv8", "dst"), tmp_path / "d")
    progress = Progress("send")
    rate = 8 * MIB
    sent = send(issue("mv8", "src"), src, recv.port, bandwidth_limit=rate, progress=progress)
    recv.wait()
    assert recv.error is None
    bucket = progress.throttle
    assert bucket is not None and bucket.taken >= sent.data_bytes
    # Everything beyond the initial burst had to be waited for at ``rate``.
    assert bucket.throttled >= (bucket.taken - bucket.burst) / rate - 0.05
    assert progress.snapshot()["throttled_seconds"] == bucket.throttled
