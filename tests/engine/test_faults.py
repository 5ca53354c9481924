"""Crash points stay disarmed unless a test enables them when the master starts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd import faults
from herd.errors import HerdError


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    yield
    faults.configure({})


def test_arming_without_the_enable_switch_is_refused() -> None:
    with pytest.raises(HerdError, match=faults.ENABLE_ENV):
        faults.configure({faults.CRASH_AT_ENV: "undo:disk.remove#1"})
    with pytest.raises(HerdError, match=faults.ENABLE_ENV):
        faults.configure({faults.TRACE_ENV: "/tmp/trace"})


def test_the_trace_counts_each_point(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    faults.configure({faults.ENABLE_ENV: "1", faults.TRACE_ENV: str(trace)})
    for name in ("undo:a", "undo:b", "undo:a"):
        faults.point(name)
    assert trace.read_text().split() == ["undo:a#1", "undo:b#1", "undo:a#2"]


def test_the_armed_point_ends_the_process_at_once(tmp_path: Path) -> None:
    code = (
        "from herd import faults\n"
        "faults.configure({'HERD_ENABLE_CRASH_POINTS': '1', 'HERD_CRASH_AT': 'undo:x#2'})\n"
        "faults.point('undo:x'); print('first', flush=True)\n"
        "faults.point('undo:x'); print('second', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == faults.CRASH_EXIT
    assert done.stdout.split() == [b"first"]


def test_a_master_refuses_to_start_with_a_stray_crash_setting(tmp_path: Path) -> None:
    env = {"HERD_CRASH_AT": "undo:x#1", "PATH": "/usr/bin:/bin"}
    argv = ["master", "--state-dir", str(tmp_path / "state")]
    done = subprocess.run(
        [sys.executable, "-m", "herd.cli.main", "--socket", str(tmp_path / "s"), *argv],
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert done.returncode != 0
    assert faults.ENABLE_ENV.encode() in done.stderr
