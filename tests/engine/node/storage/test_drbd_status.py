"""Status parsers on captured /proc/drbd (8.4) and drbdsetup status --json (9) samples.

The samples hold one device per state the master acts on (in sync, resyncing,
StandAlone, waiting for the peer, down); both versions must come out in the same shape.
"""

from __future__ import annotations

import pytest

from herd.errors import NodeError
from herd.node.storage.drbd_status import (
    DrbdStatus,
    kernel_version,
    parse_proc_drbd,
    parse_status_json,
)
from tests.engine.node.storage.helpers import data

PROC = parse_proc_drbd(data("proc_drbd_84.txt"))
JSON9 = parse_status_json(data("drbdsetup_status_9.json"))


def test_kernel_version_from_the_first_line() -> None:
    assert kernel_version(data("proc_drbd_84.txt")) == (8, 4, 11)
    assert kernel_version("version: 9.2.8 (api:2/proto:86-122)\n") == (9, 2, 8)
    with pytest.raises(NodeError):
        kernel_version("")


@pytest.mark.parametrize(("status"), [PROC[0], JSON9["herd-conn"]], ids=["8.4", "9"])
def test_connected_and_up_to_date(status: DrbdStatus) -> None:
    assert (status.cstate, status.role, status.peer_role) == ("Connected", "Primary", "Secondary")
    assert (status.disk, status.peer_disk) == ("UpToDate", "UpToDate")
    assert status.connected and not status.degraded and not status.syncing
    assert status.sync_percent is None and status.sync_eta_s is None


@pytest.mark.parametrize(("status"), [PROC[1], JSON9["herd-sync"]], ids=["8.4", "9"])
def test_sync_source_with_progress(status: DrbdStatus) -> None:
    assert status.cstate == "SyncSource"
    assert (status.disk, status.peer_disk) == ("UpToDate", "Inconsistent")
    assert status.connected and status.syncing and status.degraded
    assert status.sync_percent == 23.6
    assert status.sync_eta_s == 14
    assert 27_000 < (status.sync_rate_kib or 0) < 28_000


def test_large_sync_target_in_mib_units() -> None:
    status = PROC[5]
    assert (status.cstate, status.role, status.disk) == ("SyncTarget", "Secondary", "Inconsistent")
    assert (status.sync_percent, status.sync_rate_kib, status.sync_eta_s) == (15.2, 27304, 651)


@pytest.mark.parametrize(("status"), [PROC[2], JSON9["herd-split"]], ids=["8.4", "9"])
def test_standalone_is_disconnected_and_degraded(status: DrbdStatus) -> None:
    assert (status.cstate, status.role, status.peer_role) == ("StandAlone", "Primary", "Unknown")
    assert (status.disk, status.peer_disk) == ("UpToDate", "DUnknown")
    assert not status.connected and status.degraded
    # Neither source says "split brain"; the backend adds it from its handler's marker.
    assert status.split_brain is False


@pytest.mark.parametrize(("status"), [PROC[3], JSON9["herd-wait"]], ids=["8.4", "9"])
def test_waiting_for_the_peer(status: DrbdStatus) -> None:
    assert status.cstate == "WFConnection"
    assert status.configured and not status.connected and status.degraded


def test_unconfigured_minor_and_minors_present() -> None:
    assert sorted(PROC) == [0, 1, 2, 3, 4, 5]
    assert not PROC[4].configured and PROC[4].degraded
    assert [JSON9[name].minor for name in ("herd-conn", "herd-sync", "herd-split")] == [0, 1, 2]


def test_to_dict_carries_the_derived_flags() -> None:
    assert PROC[1].to_dict() == {
        "minor": 1, "cstate": "SyncSource", "role": "Secondary", "peer_role": "Secondary",
        "disk": "UpToDate", "peer_disk": "Inconsistent", "sync_percent": 23.6,
        "sync_rate_kib": 27520, "sync_eta_s": 14, "split_brain": False,
        "configured": True, "connected": True, "syncing": True, "degraded": True,
    }  # fmt: skip


def test_unreadable_json_is_a_node_error() -> None:
    with pytest.raises(NodeError, match="unreadable"):
        parse_status_json("No such resource")
    with pytest.raises(NodeError, match="no list"):
        parse_status_json("{}")
