"""Running OS scripts for real: environment, logs, failures, timeouts, streams."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from herd.errors import NodeError, ValidationError
from herd.node.os.api import load_os
from herd.node.os.runner import LOG_TAIL_LINES, log_path, log_tail, run_script
from tests.engine.node.os.helpers import make_os


def test_scripts_get_exactly_the_given_environment_in_their_directory(tmp_path: Path) -> None:
    d = load_os(
        make_os(tmp_path, "envdump", scripts={"create": 'env > "$OUT"; pwd >> "$OUT"; cat'})
    )
    out = tmp_path / "env.txt"
    os.environ["HERD_TEST_LEAK"] = "1"
    try:
        run_script(d, "create", {"OUT": str(out), "A": "b c"}, tmp_path / "l.log", 10)
    finally:
        del os.environ["HERD_TEST_LEAK"]
    lines = out.read_text().splitlines()
    assert lines[-1] == str(d.path)
    assert {line.split("=", 1)[0] for line in lines[:-1]} <= {"OUT", "A", "PWD", "SHLVL", "_"}
    assert "A=b c" in lines


def test_failure_carries_the_log_tail(tmp_path: Path) -> None:
    body = "i=0; while [ $i -lt 50 ]; do echo line$i; i=$((i+1)); done; echo boom >&2; exit 3"
    d = load_os(make_os(tmp_path, "fails", scripts={"create": body}))
    log = log_path(tmp_path / "root", "web1", "create")
    with pytest.raises(NodeError) as err:
        run_script(d, "create", {"INSTANCE_NAME": "web1"}, log, 10)
    details = err.value.details
    assert details["exit_code"] == 3 and details["log"] == str(log)
    tail = details["log_tail"].splitlines()
    assert tail[-1] == "boom" and tail[-2] == "line49" and len(tail) == LOG_TAIL_LINES
    assert "boom" in str(err.value)
    text = log.read_text()
    assert text.startswith("# ") and "fails create" in text and "line0\n" in text
    assert log.parent == tmp_path / "root" / "os-logs" and log.name.startswith("web1-create-")


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    body = f'sleep 300 & echo $! > "{pidfile}"; echo started; wait'
    d = load_os(make_os(tmp_path, "hangs", scripts={"create": body}))
    with pytest.raises(NodeError) as err:
        run_script(d, "create", {}, tmp_path / "l.log", 0.5)
    assert err.value.details["timeout"] == 0.5 and "started" in err.value.details["log_tail"]
    pid = int(pidfile.read_text())
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the script's child survived the timeout")


def test_unstartable_script_and_bad_arguments(tmp_path: Path) -> None:
    d = make_os(tmp_path, "noshebang")
    (d / "create").write_text("echo no interpreter line\n")
    with pytest.raises(NodeError) as err:
        run_script(load_os(d), "create", {}, tmp_path / "l.log", 10)
    assert "cannot be started" in str(err.value)
    old = load_os(make_os(tmp_path, "old", api="10\n"))
    with pytest.raises(ValidationError) as script:
        run_script(old, "verify", {}, tmp_path / "l.log", 10)
    assert script.value.details["field"] == "script"
    with pytest.raises(ValidationError) as timeout:
        run_script(old, "create", {}, tmp_path / "l.log", 0)
    assert timeout.value.details["field"] == "timeout"


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_streams_reach_the_script_and_come_back(tmp_path: Path, kind: str) -> None:
    """In-memory buffers are pumped through pipes, real files are handed over as is."""
    # dash cannot redirect to descriptors above 9, and EXP_SIZE_FD usually is one.
    body = "bash -c 'echo 7 >&$EXP_SIZE_FD'; tr a-z A-Z"
    d = load_os(make_os(tmp_path, "upper", scripts={"export": body}))
    payload = b"abc" * 500_000
    if kind == "memory":
        src: io.BufferedIOBase = io.BytesIO(payload)
        dst: io.BufferedIOBase = io.BytesIO()
    else:
        (tmp_path / "in").write_bytes(payload)
        src, dst = open(tmp_path / "in", "rb"), open(tmp_path / "out", "wb")  # noqa: SIM115
    with src, dst:
        result = run_script(
            d, "export", {}, tmp_path / "l.log", 30, stdin=src, stdout=dst, size_fd=True
        )
        got = dst.getvalue() if isinstance(dst, io.BytesIO) else None
    if got is None:
        got = (tmp_path / "out").read_bytes()
    assert got == payload.upper()
    assert result.predicted_size == 7


def test_a_script_that_stops_reading_early_does_not_hang(tmp_path: Path) -> None:
    d = load_os(make_os(tmp_path, "head", scripts={"import": "head -c 10 > /dev/null"}))
    run_script(d, "import", {}, tmp_path / "l.log", 30, stdin=io.BytesIO(b"x" * 10_000_000))


def test_log_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "nope.log") == ""


def test_a_broken_destination_fails_the_export(tmp_path: Path) -> None:
    d = load_os(make_os(tmp_path, "cat", scripts={"export": "head -c 100000 /dev/zero"}))

    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(NodeError) as err:
        run_script(d, "export", {}, tmp_path / "l.log", 30, stdout=Full())  # type: ignore[arg-type]
    assert "No space left" in str(err.value)
