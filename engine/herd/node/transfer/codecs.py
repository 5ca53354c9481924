"""Compression of the transfer stream, chosen by name.

Library codecs (zlib, zstandard, lz4) run in-process: the lab notes measured an in-process
compressor feeding Python's ``ssl`` beating the same tool behind a pipe, and they release
the GIL, so reading, hashing and sending overlap with them.  ``lzop`` and custom tools need
a subprocess; they all speak one protocol, Ganeti's: compress stdin to stdout, ``-d``
decompresses, ``-h`` answers whether the tool works.  No other argument is ever passed and
tool names are restricted to ``[A-Za-z0-9_-]``, so a name that reaches us from the API can
neither smuggle an option nor escape the tool directory.

Both directions are push/pull adapters around a callback so the stream layer does not care
which kind of codec it got: an encoder receives plain bytes through ``write`` and hands
compressed bytes to ``sink``; a decoder pulls compressed chunks from ``source`` (``b""`` at
the end) and returns plain bytes from ``read``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import lz4.frame
import zstandard

from herd.errors import TransferError, ValidationError

TOOL_DIR_ENV = "HERD_COMPRESSION_DIR"
DEFAULT_TOOL_DIR = "/etc/herd/compression"
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: ``-h`` must answer quickly; a tool that hangs on it would hang every transfer start.
TOOL_CHECK_TIMEOUT = 10.0
PIPE_CHUNK = 256 * 1024
#: How much of a tool's stderr ends up in its error message; the rest is read and dropped.
STDERR_TAIL = 4 * 1024
#: After the tool exits, how long its stderr may stay open: a child it left behind can
#: hold the pipe for ever, and the transfer must not wait for that child.
STDERR_DRAIN_TIMEOUT = 10.0

Sink = Callable[[bytes], None]
Source = Callable[[], bytes]


class Encoder(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def close(self) -> None:
        """Flush everything still buffered into the sink; the stream is complete after it."""

    def abort(self) -> None:
        """Give up: stop a tool without waiting for output nobody will send."""


class Decoder(Protocol):
    def read(self) -> bytes:
        """Next piece of plain data; ``b""`` only at the verified end of the stream."""

    def close(self) -> None:
        """Release resources (stop the tool) whether or not the stream was read to the end."""


class _Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Codec:
    """A named compression method; ``tool`` is set for the ones that run a subprocess."""

    name: str
    make_compressor: Callable[[], _Compressor] | None = None
    make_decompressor: Callable[[], _Decompressor] | None = None
    tool: str | None = None

    def encoder(self, sink: Sink) -> Encoder:
        if self.tool is not None:
            return _ToolEncoder(self.tool, sink)
        if self.make_compressor is None:
            return _Passthrough(sink)
        return _LibEncoder(self.make_compressor(), sink)

    def decoder(self, source: Source) -> Decoder:
        if self.tool is not None:
            return _ToolDecoder(self.tool, source)
        if self.make_decompressor is None:
            return _PassthroughDecoder(source)
        return _LibDecoder(self.make_decompressor(), source, self.name)


def _zlib(level: int) -> Codec:
    # wbits 31: a gzip container, so an exported stream can be inspected with gzip tools.
    return Codec(
        "gzip",
        lambda: zlib.compressobj(level, zlib.DEFLATED, 31),
        lambda: zlib.decompressobj(31),
    )


def _zstd(level: int) -> Codec:
    return Codec(
        "zstd",
        lambda: zstandard.ZstdCompressor(level=level).compressobj(),
        lambda: zstandard.ZstdDecompressor().decompressobj(),
    )


class _Lz4Compressor:
    """lz4's frame compressor wants an explicit ``begin()`` that emits the frame header."""

    def __init__(self) -> None:
        self._c = lz4.frame.LZ4FrameCompressor()
        self._header: bytes | None = self._c.begin()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._c.compress(data)
        if self._header is not None:
            out, self._header = self._header + out, None
        return out

    def flush(self) -> bytes:
        tail: bytes = self._c.flush()
        return (self._header or b"") + tail


_BUILTIN: dict[str, Callable[[], Codec]] = {
    "none": lambda: Codec("none"),
    "gzip": lambda: _zlib(6),
    "gzip-fast": lambda: _zlib(1),
    "gzip-slow": lambda: _zlib(9),
    "zstd": lambda: _zstd(3),
    "zstd-fast": lambda: _zstd(1),
    "lz4": lambda: Codec("lz4", _Lz4Compressor, lz4.frame.LZ4FrameDecompressor),
}
#: Built-in names served by an external program found on PATH rather than a tool script.
_PATH_TOOLS = {"lzop": "lzop"}
BUILTIN_NAMES = (*_BUILTIN, *_PATH_TOOLS)


def tool_dir() -> Path:
    return Path(os.environ.get(TOOL_DIR_ENV) or DEFAULT_TOOL_DIR)


def get_codec(name: str) -> Codec:
    """The codec called ``name``, after checking that its tool (if any) is present and works.

    Unknown and broken names are a ValidationError naming the tool: the master learns at
    transfer start, on the node concerned, rather than from a half-written disk.
    """
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise ValidationError(
            "compression", name, f"one of {', '.join(BUILTIN_NAMES)} or a tool name [A-Za-z0-9_-]"
        )
    if name in _BUILTIN:
        codec = _BUILTIN[name]()
        return Codec(name, codec.make_compressor, codec.make_decompressor)
    if name in _PATH_TOOLS:
        found = shutil.which(_PATH_TOOLS[name])
        path = Path(found) if found else None
    else:
        path = tool_dir() / name
    if path is None or not path.is_file() or not os.access(path, os.X_OK):
        where = f"an executable {path}" if path else f"'{name}' installed on PATH"
        raise ValidationError("compression", name, where, f"compression tool {name!r} not found")
    try:
        check = subprocess.run(
            [str(path), "-h"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=TOOL_CHECK_TIMEOUT,
            check=False,
        )
        ok = check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        raise ValidationError(
            "compression", name, "a tool answering -h with exit status 0",
            f"compression tool {name!r} ({path}) failed its -h check",
        )  # fmt: skip
    return Codec(name, tool=str(path))


class _Passthrough:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._sink(bytes(data) if not isinstance(data, bytes) else data)

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


class _PassthroughDecoder:
    def __init__(self, source: Source) -> None:
        self._source = source

    def read(self) -> bytes:
        return self._source()

    def close(self) -> None:
        return None


class _LibEncoder:
    def __init__(self, compressor: _Compressor, sink: Sink) -> None:
        self._c = compressor
        self._sink = sink

    def write(self, data: bytes | bytearray | memoryview) -> None:
        out = self._c.compress(data)  # type: ignore[arg-type]
        if out:
            self._sink(out)

    def close(self) -> None:
        out = self._c.flush()
        if out:
            self._sink(out)

    def abort(self) -> None:
        return None


class _LibDecoder:
    """Pull-side of a library codec; insists that the compressed stream ends properly.

    The ``eof`` check matters: a stream cut exactly between two compressed blocks would
    otherwise decode to a clean-looking prefix.
    """

    def __init__(self, decompressor: _Decompressor, source: Source, name: str) -> None:
        self._d = decompressor
        self._source = source
        self._name = name

    def read(self) -> bytes:
        while True:
            chunk = self._source()
            if not chunk:
                if not getattr(self._d, "eof", True):
                    raise TransferError(f"{self._name} stream truncated", compression=self._name)
                return b""
            if getattr(self._d, "eof", False):
                raise TransferError(f"data after the end of the {self._name} stream")
            try:
                out = self._d.decompress(chunk)
            except (zlib.error, zstandard.ZstdError, RuntimeError) as exc:
                raise TransferError(
                    f"corrupt {self._name} stream: {exc}", compression=self._name
                ) from exc
            if out:
                return out

    def close(self) -> None:
        return None


class _Tool:
    """A compression tool process with a helper thread on one of its pipes.

    The tool reads and writes concurrently, so one side of it must be served from a thread
    or both pipes could fill and deadlock.  A failure in the thread is kept and re-raised
    in the caller's thread, and the tool is killed so the caller's side unblocks.
    stderr is drained all the time by a thread of its own: a tool that logs more than a
    pipe holds would otherwise block on it and stall the whole stream.  Only its last
    ``STDERR_TAIL`` bytes are kept, for the error message.
    """

    def __init__(self, tool: str, args: list[str]) -> None:
        self.name = Path(tool).name
        self.proc = subprocess.Popen(
            [tool, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stderr = bytearray()
        self._drain = threading.Thread(
            target=self._drain_stderr, name=f"codec-{self.name}-stderr", daemon=True
        )
        self._drain.start()

    def _drain_stderr(self) -> None:
        """Runs until stderr ends and then closes it: this thread owns the pipe, since
        closing it elsewhere would block on the read in progress here."""
        stderr = self.proc.stderr
        assert stderr is not None
        with contextlib.suppress(OSError, ValueError), stderr:
            while chunk := stderr.read1(PIPE_CHUNK):  # type: ignore[attr-defined]
                self._stderr += chunk
                del self._stderr[:-STDERR_TAIL]

    def run_thread(self, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the owner's thread
                self.error = exc
                self.proc.kill()

        self._thread = threading.Thread(target=guarded, name=f"codec-{self.name}", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """Wait for the tool and the thread; raise what went wrong in either."""
        if self._thread is not None:
            self._thread.join()
        code = self.proc.wait()
        self._drain.join(timeout=STDERR_DRAIN_TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        # A tool that exits early breaks the pipe we feed it: its exit and its own words
        # are the cause worth reporting, not the BrokenPipeError.
        tool_quit = code != 0 and isinstance(self.error, BrokenPipeError)
        if self.error is not None and not tool_quit:
            if isinstance(self.error, Exception):
                raise self.error
            raise TransferError(f"compression tool {self.name} thread died: {self.error!r}")
        if code != 0:
            raise TransferError(
                f"compression tool {self.name} exited with {code}: "
                f"{self._stderr.decode(errors='replace').strip()}",
                tool=self.name,
                exit_code=code,
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for thread in (self._thread, self._drain):
            if thread is not None:
                thread.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.proc.wait()


class _ToolEncoder:
    def __init__(self, tool: str, sink: Sink) -> None:
        self._tool = _Tool(tool, [])
        stdout = self._tool.proc.stdout
        assert stdout is not None

        def pump() -> None:
            while chunk := stdout.read1(PIPE_CHUNK):  # type: ignore[attr-defined]
                sink(chunk)

        self._tool.run_thread(pump)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        stdin = self._tool.proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
        except (BrokenPipeError, ValueError) as exc:
            self._tool.kill()
            if self._tool.error is not None:
                raise TransferError(f"sending failed: {self._tool.error}") from self._tool.error
            raise TransferError(f"compression tool {self._tool.name} stopped reading") from exc

    def close(self) -> None:
        stdin = self._tool.proc.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError):
            stdin.close()
        self._tool.finish()

    def abort(self) -> None:
        self._tool.kill()


class _ToolDecoder:
    def __init__(self, tool: str, source: Source) -> None:
        self._tool = _Tool(tool, ["-d"])
        stdin = self._tool.proc.stdin
        assert stdin is not None

        def feed(pipe: IO[bytes] = stdin) -> None:
            try:
                while chunk := source():
                    pipe.write(chunk)
            finally:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()

        self._tool.run_thread(feed)
        self._done = False

    def read(self) -> bytes:
        stdout = self._tool.proc.stdout
        assert stdout is not None
        out: bytes = stdout.read1(PIPE_CHUNK)  # type: ignore[attr-defined]
        if not out and not self._done:
            self._done = True
            self._tool.finish()
        return out

    def close(self) -> None:
        if not self._done:
            self._tool.kill()
