"""The transfer stream format, its checksum, and the two ends that speak it.

One format serves node-to-node moves (over TLS, see ``net``) and backups (written to a
file): ``export_disk``/``import_disk`` are the same sender and receiver on a file.

Layout, outermost first:

1. Header, uncompressed: ``MAGIC``, a big-endian u32 length, then JSON
   ``{"compression", "size"}``.  The receiver refuses a codec it was not told to expect or
   a disk larger than its destination before it writes a byte.
2. Chunks: u32 length + compressed bytes; a zero-length chunk ends the stream.  Delimiting
   the compressed stream ourselves lets every codec, including a custom tool that knows
   nothing of our framing, end exactly where the acknowledgement begins.
3. Inside the decompressed stream, frames: ``b"X"`` + u64 offset + u32 length + data for
   every data extent, in strictly increasing non-overlapping order; finally ``b"E"`` + u64
   size + the 32-byte content digest.

The content digest is SHA-256 over, for each extent, ``u64 offset, u64 length, data``, then
``b"END"`` + u64 size.  It costs one pass over the *data* only: a 100 GiB disk holding
2 GiB hashes 2 GiB plus 16 bytes per extent.  It still pins down the whole disk: the
receiver starts from a zeroed destination (a new sparse file, a truncated file or a device
whose gaps it zeroes) and puts every byte it hashes at the offset it hashed it with, so
the destination equals "zeros of ``size`` bytes overlaid with exactly these records".
Records are fixed-width-prefixed, hence the encoding of an extent list is injective: a
flipped, lost, duplicated, reordered or moved byte or extent, or a different size, gives a
different input and (SHA-256 being collision resistant) a different digest; a truncated
stream lacks the end frame.  The digest is computed independently by both ends and
published in their status, so the master can also compare them out of band.  Against a
deliberate forger it is TLS that protects the stream; an exported file is as trustworthy
as the place it is stored in.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import queue
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.errors import HerdError, TransferError
from herd.node.transfer.codecs import Codec, get_codec
from herd.node.transfer.extents import Extent, data_extents, device_size
from herd.node.transfer.progress import Progress, TokenBucket
from herd.redact import scrub_error

MAGIC = b"HERDXF\x00\x01"
CHUNK = 256 * 1024
MAX_HEADER = 64 * 1024
#: An extent frame longer than this is refused: it would make the receiver buffer
#: arbitrary amounts of memory on the word of the sender.
MAX_EXTENT = 64 * 1024 * 1024
_U32 = struct.Struct(">I")
_EXTENT = struct.Struct(">cQI")
_END = struct.Struct(">cQ32s")
_RECORD = struct.Struct(">QQ")
_BLKZEROOUT = 0x127F
#: Read-ahead depth of the sender: blocks queued between the disk and the network.
PREFETCH = 8

#: Where a stream goes; what it returns is ignored (``file.write`` returns a count,
#: ``socket.sendall`` returns None).
Write = Callable[[bytes], object]
ReadExact = Callable[[int], bytes]


class ContentHash:
    """The content digest defined in the module docstring, fed identically by both ends."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def extent(self, offset: int, data: bytes) -> None:
        self._h.update(_RECORD.pack(offset, len(data)))
        self._h.update(data)

    def finish(self, size: int) -> bytes:
        self._h.update(b"END" + struct.pack(">Q", size))
        return self._h.digest()


@dataclass(frozen=True)
class Result:
    size: int
    data_bytes: int
    wire_bytes: int
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "data_bytes": self.data_bytes,
            "wire_bytes": self.wire_bytes,
            "digest": self.digest,
        }


def _prefetch(items: Iterator[Extent], depth: int) -> Iterator[Extent]:
    """Run ``items`` in a thread so disk reads overlap compression and sending.

    ``pread`` and the comparisons release the GIL, so on two cores this is a real overlap.
    An exception in the reader is re-raised in the consumer; a consumer that stops early
    lets the reader finish its current block and exit.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(("item", item))
            q.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=run, name="transfer-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.1)


class _ChunkWriter:
    """Sink for the encoder: batches compressed output into length-prefixed chunks."""

    def __init__(self, write: Write, progress: Progress, limiter: TokenBucket | None) -> None:
        self._write = write
        self._progress = progress
        self._limiter = limiter
        self._buf = bytearray()

    def __call__(self, data: bytes) -> None:
        if len(data) >= CHUNK:
            self.flush()
            self._send(data)
            return
        self._buf += data
        if len(self._buf) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._send(bytes(self._buf))
            self._buf.clear()

    def end(self) -> None:
        self.flush()
        self._write(_U32.pack(0))
        self._progress.advance(wire=_U32.size)

    def _send(self, data: bytes) -> None:
        if self._limiter is not None:
            self._limiter.take(len(data) + _U32.size)
        self._write(_U32.pack(len(data)))
        self._write(data)
        self._progress.advance(wire=len(data) + _U32.size)


def send_stream(
    source_path: str | os.PathLike[str],
    write: Write,
    codec: Codec,
    progress: Progress,
    limiter: TokenBucket | None = None,
) -> Result:
    """Stream the disk at ``source_path`` through ``write``; the source is only read."""
    fd = os.open(source_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = device_size(fd)
        progress.size = size
        header = json.dumps({"compression": codec.name, "size": size}).encode()
        write(MAGIC + _U32.pack(len(header)) + header)
        progress.advance(wire=len(MAGIC) + _U32.size + len(header))
        chunks = _ChunkWriter(write, progress, limiter)
        encoder = codec.encoder(chunks)
        digest = ContentHash()
        try:
            for ext in _prefetch(data_extents(fd, size), PREFETCH):
                digest.extent(ext.offset, ext.data)
                encoder.write(_EXTENT.pack(b"X", ext.offset, len(ext.data)))
                encoder.write(ext.data)
                progress.advance(position=ext.offset + len(ext.data), data=len(ext.data))
            final = digest.finish(size)
            encoder.write(_END.pack(b"E", size, final))
        except BaseException:
            encoder.abort()
            raise
        encoder.close()
        chunks.end()
    finally:
        os.close(fd)
    progress.advance(position=size)
    return Result(size, progress.data_bytes, progress.wire_bytes, final.hex())


class _Decoded:
    """Exact reads over the decoder's variable-sized pieces, copying each byte once.

    A full-piece slice of ``bytes`` is the piece itself, so an extent that arrives as one
    piece (the usual case without compression) is passed on without any copy.
    """

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._cur = b""
        self._off = 0

    def _fill(self) -> bool:
        while self._off == len(self._cur):
            piece = self._read()
            if not piece:
                return False
            self._cur, self._off = bytes(piece), 0
        return True

    def exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        need = n
        while need:
            if not self._fill():
                raise TransferError("stream ended before its end frame", missing=need)
            take = min(need, len(self._cur) - self._off)
            parts.append(self._cur[self._off : self._off + take])
            self._off += take
            need -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def at_end(self) -> bool:
        return not self._fill()


class DiskWriter:
    """Writes extents to the destination and knows how to undo a failed import.

    Regular files are rewritten from an empty (sparse) state, so skipped regions are holes
    that read as zeros.  A block device cannot be truncated: gaps between extents are
    zeroed explicitly (``BLKZEROOUT``, or plain zero writes where the ioctl is refused).
    On failure a file we created is deleted, a pre-existing file is zeroed (no partial
    disk left that looks usable), and a device is left alone: removing it is storage's job.
    """

    def __init__(self, path: str | os.PathLike[str], capacity: int | None) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()
        flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT if self.created else 0)
        self.fd = os.open(self.path, flags, 0o600)
        mode = os.fstat(self.fd).st_mode
        self.device = stat.S_ISBLK(mode)
        if not (self.device or stat.S_ISREG(mode)):
            os.close(self.fd)
            raise TransferError(f"destination {path} is not a file or block device")
        self.capacity = device_size(self.fd) if self.device else capacity
        self.original_size = 0 if self.device else os.fstat(self.fd).st_size
        self.zeroed_to = 0
        self.size = 0

    def begin(self, size: int) -> None:
        if self.capacity is not None and size > self.capacity:
            raise TransferError(
                f"stream of {size} bytes does not fit destination {self.path} "
                f"({self.capacity} bytes)",
                size=size,
                capacity=self.capacity,
            )
        self.size = size
        if not self.device:
            os.ftruncate(self.fd, 0)

    def write(self, offset: int, data: bytes) -> None:
        with self._space_checked():
            if self.device:
                self._zero(self.zeroed_to, offset)
            written = os.pwrite(self.fd, data, offset)
            while written < len(data):
                written += os.pwrite(self.fd, data[written:], offset + written)
        self.zeroed_to = offset + len(data)

    def finish(self) -> None:
        with self._space_checked():
            if self.device:
                self._zero(self.zeroed_to, self.size)
            else:
                os.ftruncate(self.fd, max(self.size, self.capacity or 0))
            os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.created:
            self.path.unlink(missing_ok=True)
        elif not self.device:
            with open(self.path, "r+b") as f:
                f.truncate(0)
                f.truncate(self.original_size)

    @contextlib.contextmanager
    def _space_checked(self) -> Iterator[None]:
        """A full destination as an error that says so and names it: the bare OSError
        reaches the job as "[Errno 28]" and reads like a bug, not like a full disk."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise TransferError(
                f"no space left on the device of {self.path}: {exc.strerror}",
                path=str(self.path),
            ) from exc

    def _zero(self, start: int, end: int) -> None:
        if end <= start:
            return
        try:
            fcntl.ioctl(self.fd, _BLKZEROOUT, struct.pack("QQ", start, end - start))
            return
        except OSError:
            pass
        zeros = bytes(min(4 * 1024 * 1024, end - start))
        pos = start
        while pos < end:
            pos += os.pwrite(self.fd, zeros[: end - pos], pos)


def _chunk_source(read_exact: ReadExact, progress: Progress) -> Callable[[], bytes]:
    done = False

    def source() -> bytes:
        nonlocal done
        if done:
            return b""
        (length,) = _U32.unpack(read_exact(_U32.size))
        progress.advance(wire=length + _U32.size)
        if length == 0:
            done = True
            return b""
        if length > MAX_EXTENT:
            raise TransferError(f"wire chunk of {length} bytes refused", length=length)
        return read_exact(length)

    return source


def read_header(read_exact: ReadExact) -> tuple[dict[str, Any], int]:
    """The stream header and how many bytes it took on the wire."""
    magic = read_exact(len(MAGIC))
    if magic != MAGIC:
        raise TransferError("not a herd transfer stream (bad magic)", magic=magic.hex())
    (length,) = _U32.unpack(read_exact(_U32.size))
    if length > MAX_HEADER:
        raise TransferError(f"stream header of {length} bytes refused")
    try:
        header = json.loads(read_exact(length))
    except ValueError as exc:
        raise TransferError("stream header is not JSON") from exc
    if not isinstance(header, dict) or not isinstance(header.get("size"), int):
        raise TransferError("stream header lacks a size", header=str(header)[:200])
    return header, len(MAGIC) + _U32.size + length


def receive_stream(
    read_exact: ReadExact,
    writer: DiskWriter,
    codec: Codec,
    progress: Progress,
) -> Result:
    """Apply one stream to ``writer`` and verify it; the caller discards on any error."""
    header, header_bytes = read_header(read_exact)
    progress.advance(wire=header_bytes)
    if header.get("compression") != codec.name:
        raise TransferError(
            f"stream is compressed with {header.get('compression')!r}, expected {codec.name!r}",
            stream=str(header.get("compression")),
            expected=codec.name,
        )
    size = header["size"]
    progress.size = size
    writer.begin(size)
    decoder = codec.decoder(_chunk_source(read_exact, progress))
    digest = ContentHash()
    try:
        frames = _Decoded(decoder.read)
        next_free = 0
        while True:
            kind = frames.exact(1)
            if kind == b"X":
                _, offset, length = _EXTENT.unpack(kind + frames.exact(_EXTENT.size - 1))
                if offset < next_free or offset + length > size or length > MAX_EXTENT:
                    raise TransferError(
                        f"extent {offset}+{length} out of order or beyond size {size}",
                        offset=offset,
                        length=length,
                    )
                data = frames.exact(length)
                digest.extent(offset, data)
                writer.write(offset, data)
                next_free = offset + length
                progress.advance(position=next_free, data=length)
            elif kind == b"E":
                _, end_size, sent = _END.unpack(kind + frames.exact(_END.size - 1))
                break
            else:
                raise TransferError(f"unknown frame type {kind!r}", frame=kind.hex())
        final = digest.finish(size)
        if end_size != size or sent != final:
            raise TransferError(
                "checksum mismatch: the received disk differs from the sent one",
                sent=sent.hex(),
                received=final.hex(),
                size=size,
                end_size=end_size,
            )
        if not frames.at_end():
            raise TransferError("data after the end frame")
    finally:
        decoder.close()
    writer.finish()
    progress.advance(position=size)
    return Result(size, progress.data_bytes, progress.wire_bytes, final.hex())


def export_disk(
    source_path: str | os.PathLike[str],
    stream_path: str | os.PathLike[str],
    compression: str = "none",
    progress: Progress | None = None,
) -> Result:
    """Write the transfer stream of a disk to a file (a backup); removed again on failure."""
    progress = progress or Progress("export")
    out = Path(stream_path)
    try:
        with open(out, "xb") as f:
            result = send_stream(source_path, f.write, get_codec(compression), progress)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        out.unlink(missing_ok=True)
        _finish_failed(progress, exc)
        raise
    progress.finish("done", digest=result.digest)
    return result


def import_disk(
    stream_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    compression: str = "none",
    capacity: int | None = None,
    progress: Progress | None = None,
) -> Result:
    """Restore a disk from an exported stream file, verifying its digest."""
    progress = progress or Progress("import")
    codec = get_codec(compression)
    writer = DiskWriter(dest_path, capacity)
    try:
        with open(stream_path, "rb") as f:

            def read_exact(n: int) -> bytes:
                data = f.read(n)
                if len(data) != n:
                    raise TransferError(f"stream file {stream_path} is truncated")
                return data

            result = receive_stream(read_exact, writer, codec, progress)
            if f.read(1):
                raise TransferError(f"stream file {stream_path} has data after its end")
    except BaseException as exc:
        writer.discard()
        _finish_failed(progress, exc)
        raise
    progress.finish("done", digest=result.digest)
    return result


def error_dict(exc: BaseException, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """``exc`` as a status file, the peer and the worker's log get it, scrubbed as
    everything else is (see :mod:`herd.redact`): all of them end up in node and job logs,
    and a TLS or I/O error may quote a key or a secret argument."""
    error = exc if isinstance(exc, HerdError) else TransferError(f"{type(exc).__name__}: {exc}")
    return scrub_error(error, frozenset(), secrets).to_dict()


def _finish_failed(progress: Progress, exc: BaseException) -> None:
    progress.finish("failed", error=error_dict(exc))
