"""The ``vm`` marker and a session-wide pair of qemu guests with DRBD and device-mapper.

VM tests need root, qemu and debootstrap; where those are missing they skip with the
reason.  The first run on a machine builds the guest image (a few minutes); later runs
reuse it from the cache and only boot the guests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import vmnodes

VM_PREFIX = "pv"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: needs root, qemu and debootstrap (Debian guests)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("vm") is not None:
        reason = vmnodes.missing_requirements()
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def vm_nodes() -> Iterator[vmnodes.VMLab]:
    """Two booted guests shared by the session; tests that cut links must restore them.

    The name carries this process's pid so parallel runs do not collide; labs left by
    killed runs are reaped first.
    """
    reason = vmnodes.missing_requirements()
    if reason:
        pytest.skip(reason)
    vmnodes.reap_orphans(VM_PREFIX)
    name = f"{VM_PREFIX}{os.getpid()}"
    try:
        yield vmnodes.up(name, 2, owner_pid=os.getpid())
    finally:
        vmnodes.down(name)
