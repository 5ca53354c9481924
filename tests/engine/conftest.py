"""Fixtures starting real masters for the job, API, master and CLI tests (see harness)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.harness import ThreadMaster, add_nodes, poll, start_thread_master


@pytest.fixture
def master_factory(tmp_path: Path) -> Iterator[Callable[..., ThreadMaster]]:
    """Start masters on ``tmp_path`` (again after a stop, to test restarts)."""
    running: list[ThreadMaster] = []

    def start(nodes: tuple[str, ...] = (), max_running: int | None = None) -> ThreadMaster:
        if nodes:
            add_nodes(tmp_path / "state", nodes)
        tm = start_thread_master(tmp_path, max_running)
        running.append(tm)
        return tm

    yield start
    for tm in running:
        if tm.thread.is_alive():
            tm.stop()


@pytest.fixture
def herd_master(master_factory: Callable[..., ThreadMaster]) -> ThreadMaster:
    """One master with two nodes, n1 and n2, and the default queue limits."""
    return master_factory(nodes=("n1", "n2"))


@pytest.fixture(name="poll")
def poll_fixture() -> Callable[..., Any]:
    """``poll(what, check)``: wait for a condition with a deadline instead of sleeping."""
    return poll
