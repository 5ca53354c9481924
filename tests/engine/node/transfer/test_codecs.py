"""Compression by name: every built-in and a custom tool round-trip; bad tools refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herd.errors import TransferError, ValidationError
from herd.node.transfer.codecs import BUILTIN_NAMES, TOOL_DIR_ENV, get_codec

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
