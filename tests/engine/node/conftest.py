"""Node-side fixtures: a state root per test whose fake guests never outlive the test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herd.node.actions.registry import NodeContext


def kill_guests(root: Path) -> None:
    for state in (root / "hv" / "fake").glob("*.json"):
        if not state.name.endswith(".guest.json"):
            with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
                os.kill(json.loads(state.read_text())["pid"], signal.SIGKILL)


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Callable[[str], NodeContext]]:
    """Node contexts under ``tmp_path`` (one per simulated node); their guests are killed."""
    roots: list[Path] = []

    def make(name: str = "node") -> NodeContext:
        roots.append(tmp_path / name)
        return NodeContext(tmp_path / name)

    yield make
    for root in roots:
        kill_guests(root)


@pytest.fixture
def ctx(make_ctx: Callable[[str], NodeContext]) -> NodeContext:
    return make_ctx("node")
