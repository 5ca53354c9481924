"""Op fixtures: a ready op context on loopback nodes (see tests/engine/loopback.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engine.loopback import OpEnv, build_env


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., OpEnv]]:
    """``make_env(nodes=("n1", "n2", "n3"))``: an ``OpEnv`` with those loopback nodes;
    closed (queue stopped, fake guests killed) after the test."""
    made: list[OpEnv] = []

    def make(nodes: tuple[str, ...] = ("n1", "n2")) -> OpEnv:
        env = build_env(tmp_path / f"env{len(made)}", nodes)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


@pytest.fixture
def env(make_env: Callable[..., OpEnv]) -> OpEnv:
    """Cluster c1 (fake hypervisor, file storage) with nodes n1 (master) and n2."""
    return make_env()
