"""Compression by name: every built-in and a custom tool round-trip; bad tools refused."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from herd.errors import TransferError, ValidationError
from herd.node.transfer import codecs
from herd.node.transfer.codecs import BUILTIN_NAMES, STDERR_TAIL, TOOL_DIR_ENV, get_codec

from .conftest import mixed

GOOD_TOOL = """#!/bin/sh
# test tool: gzip behind the Ganeti tool protocol, logging the arguments it was given
echo "$@" >> "$(dirname "$0")/calls.log"
case "$1" in
  -h) exit 0 ;;
  -d) exec gzip -dc ;;
  "") exec gzip -1c ;;
  *) exit 64 ;;
esac
"""


@pytest.fixture
def tool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "compression"
    d.mkdir()
    monkeypatch.setenv(TOOL_DIR_ENV, str(d))
    return d


def install(tool_dir: Path, name: str, script: str) -> Path:
    path = tool_dir / name
    path.write_text(script)
    path.chmod(0o755)
    return path


def round_trip(name: str, data: bytes) -> tuple[bytes, int]:
    codec = get_codec(name)
    wire: list[bytes] = []
    enc = codec.encoder(wire.append)
    for i in range(0, len(data), 100_000):
        enc.write(data[i : i + 100_000])
    enc.close()
    pieces = iter(wire)
    dec = codec.decoder(lambda: next(pieces, b""))
    out = bytearray()
    while piece := dec.read():
        out += piece
    dec.close()
    return bytes(out), sum(map(len, wire))


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_round_trip(name: str) -> None:
    data = mixed(1_000_000)
    out, wire = round_trip(name, data)
    assert out == data
    if name != "none":
        assert wire < len(data)


def test_custom_tool_round_trip_gets_no_other_arguments(tool_dir: Path) -> None:
    install(tool_dir, "my_gz-1", GOOD_TOOL)
    data = mixed(500_000)
    out, wire = round_trip("my_gz-1", data)
    assert out == data and wire < len(data)
    assert (tool_dir / "calls.log").read_text().splitlines() == ["-h", "", "-d"]


def test_missing_tool_is_refused_by_name(tool_dir: Path) -> None:
    with pytest.raises(ValidationError) as err:
        get_codec("nosuchtool")
    assert err.value.details["field"] == "compression"
    assert "nosuchtool" in err.value.message


def test_tool_failing_help_is_refused(tool_dir: Path) -> None:
    install(tool_dir, "broken", "#!/bin/sh\nexit 3\n")
    with pytest.raises(ValidationError) as err:
        get_codec("broken")
    assert "broken" in err.value.message and "-h" in err.value.message


@pytest.mark.parametrize("name", ["../bin/sh", "gzip -9", "a;b", "", "x" * 65])
def test_unsafe_names_are_refused(tool_dir: Path, name: str) -> None:
    with pytest.raises(ValidationError) as err:
        get_codec(name)
    assert err.value.details["value"] == name


def test_tool_that_fails_while_decompressing_is_an_error(tool_dir: Path) -> None:
    install(tool_dir, "liar", GOOD_TOOL.replace("exec gzip -dc", "cat >/dev/null; exit 5"))
    codec = get_codec("liar")
    pieces = iter([b"whatever"])
    dec = codec.decoder(lambda: next(pieces, b""))
    with pytest.raises(TransferError) as err:
        while dec.read():
            pass
    assert err.value.details["exit_code"] == 5


@pytest.mark.parametrize("name", ["gzip", "zstd", "lz4"])
def test_truncated_library_stream_is_detected(name: str) -> None:
    codec = get_codec(name)
    wire: list[bytes] = []
    enc = codec.encoder(wire.append)
    enc.write(os.urandom(300_000))
    enc.close()
    blob = b"".join(wire)
    pieces = iter([blob[: len(blob) - 10]])
    dec = codec.decoder(lambda: next(pieces, b""))
    with pytest.raises(TransferError):
        while dec.read():
            pass


#: A tool that logs 2 MiB to stderr before it touches its data, in both directions.
CHATTY_TOOL = GOOD_TOOL.replace(
    'case "$1" in',
    'head -c 2097152 /dev/zero | tr "\\\\0" x >&2\n[ "$1" = -d ] && [ -n "$FAIL" ] && {\n'
    '  echo "last words" >&2; exit 7; }\ncase "$1" in',
)


def within(seconds: float, work: Callable[[], Any]) -> Any:
    """Run ``work`` in a thread; a deadlock fails the test instead of hanging the run."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the pipeline deadlocked"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_tool_writing_megabytes_to_stderr_does_not_stall_the_stream(tool_dir: Path) -> None:
    install(tool_dir, "chatty", CHATTY_TOOL)
    data = mixed(3_000_000)
    out, _ = within(120, lambda: round_trip("chatty", data))
    assert out == data


def test_stderr_tail_is_kept_for_the_error(tool_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tool_dir, "chatty", CHATTY_TOOL)
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(TransferError) as err:
        within(120, lambda: round_trip("chatty", mixed(200_000)))
    assert err.value.details["exit_code"] == 7
    assert err.value.message.endswith("last words")
    assert len(err.value.message) < STDERR_TAIL + 200


#: A tool that leaves a child behind holding its stderr open (and records the child's pid).
FORKING_TOOL = GOOD_TOOL.replace(
    'case "$1" in',
    'sleep 600 </dev/null >/dev/null &\necho $! >> "$(dirname "$0")/children"\ncase "$1" in',
)


def test_a_child_holding_stderr_open_does_not_hang_the_stream(
    tool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tool_dir, "forking", FORKING_TOOL)
    monkeypatch.setattr(codecs, "STDERR_DRAIN_TIMEOUT", 0.5)
    data = mixed(200_000)
    try:
        out, _ = within(120, lambda: round_trip("forking", data))
    finally:
        for pid in (tool_dir / "children").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert out == data
