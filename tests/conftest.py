"""Shared fixtures: the ``lab`` marker and a session-wide three-node lab.

Lab tests need root, network namespaces and sshd; where those are missing they skip
with the reason instead of failing, so the unit suite runs anywhere.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))

import herdlab

LAB_PREFIX = "pt"

# One hypothesis profile for every run, CI or not: properties are judged by what they
# find, never by how fast a loaded 2-core machine generates examples. Tests that want
# fewer or more examples set only max_examples; everything else comes from here.
settings.register_profile(
    "herd",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile("herd")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs root, network namespaces and sshd")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        reason = herdlab.missing_requirements()
        if reason:
            pytest.skip(reason)


def make_lab(suffix: str, nodes: int) -> Iterator[herdlab.Lab]:
    """Bring a lab up for one test run and always take it down again.

    Names carry this process's pid so parallel pytest runs do not collide; labs left by
    killed runs are reaped first.
    """
    reason = herdlab.missing_requirements()
    if reason:
        pytest.skip(reason)
    herdlab.reap_orphans(LAB_PREFIX)
    name = f"{LAB_PREFIX}{os.getpid()}{suffix}"
    try:
        yield herdlab.up(name, nodes, owner_pid=os.getpid())
    finally:
        herdlab.down(name)


@pytest.fixture(scope="session")
def lab_cluster() -> Iterator[herdlab.Lab]:
    """Three lab nodes shared by the session: do not break them, use ``scratch_lab``."""
    yield from make_lab("a", 3)


@pytest.fixture
def scratch_lab() -> Iterator[herdlab.Lab]:
    """Two throw-away nodes for tests that kill sshd or cut links."""
    yield from make_lab("s", 2)
