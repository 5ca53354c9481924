"""The real master the module tests drive, shared so each test file does not start its own
the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.harness import ThreadMaster, start_thread_master


@pytest.fixture
def master(tmp_path: Path) -> Iterator[ThreadMaster]:
    """A master in a thread on ``tmp_path``, without a cluster: enough for the job queue."""
    running = start_thread_master(tmp_path)
    yield running
    running.stop()
