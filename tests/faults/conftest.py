"""The ``injected`` fixture: a test names its fault, teardown records whether it survived.

Recording at teardown, from the test's own outcome, means a fault counts as survived only
once every assertion after it passed; a test that skips (missing kernel feature) records
nothing, since nothing was injected.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.record import record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call phase's report on the item, where ``injected`` looks at teardown."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.fixture
def injected(request: pytest.FixtureRequest) -> Iterator[Callable[[str], None]]:
    """Call it with the fault's name just before injecting it (once per test)."""
    names: list[str] = []
    yield names.append
    report = request.node.stash.get(_CALL_REPORT, None)
    if report is None or report.skipped:
        return
    for name in names:
        record(name, survived=report.passed)


@pytest.fixture
def lab_masters(
    scratch_lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Any]]:
    """A two-node cluster on a scratch lab with its master stopped, for the crash tests."""
    from tests.faults.test_crash_points import two_node_cluster

    monkeypatch.setenv("HERD_BOOTSTRAP_KEY", scratch_lab.key_path)
    masters = two_node_cluster(tmp_path, scratch_lab)
    yield masters, scratch_lab
    masters.stop_all()
