"""Fixtures for op tests: a real master over a real Unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.master import RunningMaster, start_master, stop_master


@pytest.fixture
def master(tmp_path: Path) -> Iterator[RunningMaster]:
    running, thread = start_master(tmp_path)
    yield running
    stop_master(running, thread)
