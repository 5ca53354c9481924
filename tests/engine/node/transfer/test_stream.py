"""The stream format: export/import round trips, the digest's definition, tamper refusal."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.errors import TransferError
from herd.node.transfer import stream
from herd.node.transfer.codecs import BUILTIN_NAMES
from herd.node.transfer.progress import Progress
from herd.node.transfer.stream import MAGIC, export_disk, import_disk

from .conftest import MIB, mixed, write_image


def expected_digest(content: bytes, extents: list[tuple[int, int]]) -> str:
    """The documented digest, computed independently of the implementation."""
    h = hashlib.sha256()
    for offset, length in extents:
        h.update(struct.pack(">QQ", offset, length) + content[offset : offset + length])
    h.update(b"END" + struct.pack(">Q", len(content)))
    return h.hexdigest()


def parse_plain(stream: bytes) -> tuple[dict[str, object], list[tuple[int, int]], bytes]:
    """Header, extent list and end digest of an uncompressed stream, read by hand."""
    assert stream.startswith(MAGIC)
    pos = len(MAGIC)
    (hlen,) = struct.unpack_from(">I", stream, pos)
    header = json.loads(stream[pos + 4 : pos + 4 + hlen])
    pos += 4 + hlen
    payload = bytearray()
    while True:
        (n,) = struct.unpack_from(">I", stream, pos)
        pos += 4
        if n == 0:
            break
        payload += stream[pos : pos + n]
        pos += n
    assert pos == len(stream)
    extents, i = [], 0
    while payload[i : i + 1] == b"X":
        _, off, length = struct.unpack_from(">cQI", payload, i)
        extents.append((off, length))
        i += 13 + length
    kind, size, digest = struct.unpack_from(">cQ32s", payload, i)
    assert kind == b"E" and size == header["size"] and i + 41 == len(payload)
    return header, extents, digest


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "src.img"
    content = write_image(
        path, 32 * MIB, {0: mixed(200_000), 5 * MIB: b"\x01" * 3000, 30 * MIB: mixed(MIB, 2)}
    )
    return path, content


def test_plain_stream_layout_and_digest_definition(
    tmp_path: Path, image: tuple[Path, bytes]
) -> None:
    src, content = image
    result = export_disk(src, tmp_path / "s", "none")
    header, extents, digest = parse_plain((tmp_path / "s").read_bytes())
    assert header == {"compression": "none", "size": 32 * MIB}
    assert digest.hex() == result.digest == expected_digest(content, extents)
    assert result.data_bytes == sum(n for _, n in extents) < 2 * MIB


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_export_import_round_trip(tmp_path: Path, image: tuple[Path, bytes], name: str) -> None:
    src, content = image
    sent = export_disk(src, tmp_path / "s", name)
    dest = tmp_path / "dest.img"
    got = import_disk(tmp_path / "s", dest, name)
    assert dest.read_bytes() == content
    assert got.digest == sent.digest and got.size == len(content)
    assert dest.stat().st_blocks * 512 < 4 * MIB  # holes stayed holes
    assert src.read_bytes() == content


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        export_disk(tmp_path / "missing", tmp_path / "s", "none")
    assert not (tmp_path / "s").exists()


def test_flipped_data_byte_fails_the_checksum_and_dest_is_removed(
    tmp_path: Path, image: tuple[Path, bytes]
) -> None:
    src, content = image
    export_disk(src, tmp_path / "s", "none")
    blob = bytearray((tmp_path / "s").read_bytes())
    blob[blob.index(content[30 * MIB : 30 * MIB + 64])] ^= 1
    (tmp_path / "bad").write_bytes(blob)
    progress = Progress("import")
    with pytest.raises(TransferError, match="checksum mismatch"):
        import_disk(tmp_path / "bad", tmp_path / "d", "none", progress=progress)
    assert not (tmp_path / "d").exists()
    assert progress.state == "failed"
    assert progress.error is not None and progress.error["type"] == "TransferError"


@settings(max_examples=25)
@given(
    where=st.floats(min_value=0.0, max_value=0.999),
    compression=st.sampled_from(["none", "gzip-fast", "zstd-fast", "lz4"]),
)
def test_a_flipped_byte_anywhere_never_yields_a_wrong_disk(
    tmp_path: Path, image: tuple[Path, bytes], where: float, compression: str
) -> None:
    """Refused with the destination removed, or (a flip in a field the codec ignores,
    such as gzip's mtime) accepted with exactly the right content: never silently wrong."""
    src, content = image
    stream = tmp_path / f"s.{compression}"
    if not stream.exists():
        export_disk(src, stream, compression)
    blob = bytearray(stream.read_bytes())
    blob[int(where * len(blob))] ^= 0x40
    bad = tmp_path / "bad"
    bad.write_bytes(blob)
    dest = tmp_path / "dest.img"
    dest.unlink(missing_ok=True)
    try:
        import_disk(bad, dest, compression)
    except TransferError:
        assert not dest.exists()
    else:
        assert dest.read_bytes() == content


def test_truncated_stream_refused_and_existing_file_zeroed(
    tmp_path: Path, image: tuple[Path, bytes]
) -> None:
    src, _ = image
    export_disk(src, tmp_path / "s", "none")
    blob = (tmp_path / "s").read_bytes()
    (tmp_path / "cut").write_bytes(blob[: len(blob) // 2])
    dest = tmp_path / "existing.img"
    dest.write_bytes(b"old" * 1000)
    with pytest.raises(TransferError, match="truncated"):
        import_disk(tmp_path / "cut", dest, "none")
    assert dest.read_bytes() == bytes(3000)


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write to a destination fails as on a full filesystem."""

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(stream.os, "pwrite", pwrite)


def test_a_full_destination_says_no_space_and_leaves_no_file(
    tmp_path: Path, image: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _ = image
    export_disk(src, tmp_path / "s", "none")
    full_disk(monkeypatch)
    with pytest.raises(TransferError) as err:
        import_disk(tmp_path / "s", tmp_path / "d", "none")
    assert err.value.message.startswith(f"no space left on the device of {tmp_path / 'd'}")
    assert not (tmp_path / "d").exists()


def test_disk_larger_than_destination_refused_before_writing(
    tmp_path: Path, image: tuple[Path, bytes]
) -> None:
    src, _ = image
    export_disk(src, tmp_path / "s", "none")
    with pytest.raises(TransferError, match="does not fit"):
        import_disk(tmp_path / "s", tmp_path / "d", "none", capacity=16 * MIB)
    assert not (tmp_path / "d").exists()


def test_wrong_compression_refused(tmp_path: Path, image: tuple[Path, bytes]) -> None:
    src, _ = image
    export_disk(src, tmp_path / "s", "zstd")
    with pytest.raises(TransferError, match="compressed with 'zstd'"):
        import_disk(tmp_path / "s", tmp_path / "d", "lz4")
    assert not (tmp_path / "d").exists()


def test_destination_grows_to_capacity(tmp_path: Path, image: tuple[Path, bytes]) -> None:
    src, content = image
    export_disk(src, tmp_path / "s", "lz4")
    import_disk(tmp_path / "s", tmp_path / "d", "lz4", capacity=40 * MIB)
    assert (tmp_path / "d").read_bytes() == content + bytes(8 * MIB)


def test_an_error_as_published_carries_no_key_material() -> None:
    """Ends publish a failure before the worker does (a receiver, before its connection
    drops): that copy, and the one sent to the peer, are scrubbed the same way."""
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    error = stream.error_dict(OSError(f"write failed near {pem}"), ["argument-secret-1"])
    assert error["message"] == (
        "OSError: write failed near -----BEGIN PRIVATE KEY-----<redacted>-----END PRIVATE KEY-----"
    )
    herd_error = TransferError("peer sent argument-secret-1", stderr="argument-secret-1 again")
    assert stream.error_dict(herd_error, ["argument-secret-1"]) == {
        "type": "TransferError",
        "message": "peer sent <redacted>",
        "details": {"stderr": "<redacted> again"},
    }
