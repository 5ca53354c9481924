"""DRBD status from ``/proc/drbd`` (8.4) and ``drbdsetup status --json`` (9), in one shape.

The master decides failovers and migrations from this, so both versions are mapped onto
one vocabulary, the 8.4 connection states (``Connected``, ``WFConnection``,
``StandAlone``, ``SyncSource`` …): DRBD 9 splits that into a connection state and a
per-volume replication state, and a caller should not have to know which kernel a node
runs to ask "is this disk replicated and in sync?".

``split_brain`` cannot be read from either source (DRBD just drops to StandAlone); the
parsers leave it False and the backend sets it from the marker its split-brain handler
writes.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from herd.errors import NodeError

UNCONFIGURED = "Unconfigured"
#: Connection states in which the peer is reachable and replicating.
CONNECTED_STATES = frozenset(
    {
        "Connected", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT",
        "WFSyncUUID", "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT",
        "VerifyS", "VerifyT", "Ahead", "Behind",
    }
)  # fmt: skip
SYNCING_STATES = frozenset({"SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT"})
#: drbd-utils prints this as the ETA when it has no rate to estimate from.
_NO_ETA = 987654321


@dataclass(frozen=True)
class DrbdStatus:
    """One DRBD device as seen from this node; rates in KiB/s, ETA in seconds."""

    minor: int | None
    cstate: str
    role: str = "Unknown"
    peer_role: str = "Unknown"
    disk: str = "Diskless"
    peer_disk: str = "DUnknown"
    sync_percent: float | None = None
    sync_rate_kib: int | None = None
    sync_eta_s: int | None = None
    split_brain: bool = False

    @property
    def configured(self) -> bool:
        return self.cstate != UNCONFIGURED

    @property
    def connected(self) -> bool:
        return self.cstate in CONNECTED_STATES

    @property
    def syncing(self) -> bool:
        return self.cstate in SYNCING_STATES

    @property
    def degraded(self) -> bool:
        """Not two UpToDate copies: losing this node or its peer now would lose data."""
        return not (self.connected and self.disk == "UpToDate" and self.peer_disk == "UpToDate")

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "configured": self.configured,
            "connected": self.connected,
            "syncing": self.syncing,
            "degraded": self.degraded,
        }


def unconfigured(minor: int | None) -> DrbdStatus:
    return DrbdStatus(minor=minor, cstate=UNCONFIGURED)


_VERSION = re.compile(r"^version:\s*(\d+)\.(\d+)(?:\.(\d+))?", re.MULTILINE)
_DEVICE = re.compile(r"^\s*(\d+):\s+cs:(\S+)(.*)$")
_FIELD = re.compile(r"\b(ro|ds):(\S+)/(\S+)")
_SYNCED = re.compile(r"(?:sync'ed|verified):\s*([\d.]+)%")
_FINISH = re.compile(r"finish:\s*(\d+):(\d+):(\d+)\s+speed:\s*([\d,]+)")


def kernel_version(proc_text: str) -> tuple[int, int, int]:
    """The module version from the first line of /proc/drbd, e.g. (8, 4, 11)."""
    match = _VERSION.search(proc_text)
    if match is None:
        raise NodeError(f"no DRBD version in /proc/drbd: {proc_text[:80]!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def parse_proc_drbd(text: str) -> dict[int, DrbdStatus]:
    """Every minor listed in a DRBD 8.4 ``/proc/drbd``, keyed by minor.

    A device block is its ``N: cs:…`` line followed by indented counter, progress and
    finish lines; the progress lines appear only while a resync or verify runs.
    """
    devices: dict[int, DrbdStatus] = {}
    current: dict[str, Any] | None = None

    def flush() -> None:
        if current is not None:
            devices[current["minor"]] = DrbdStatus(**current)

    for line in text.splitlines():
        head = _DEVICE.match(line)
        if head:
            flush()
            current = {"minor": int(head[1]), "cstate": head[2]}
            for name, mine, peer in _FIELD.findall(head[3]):
                keys = ("role", "peer_role") if name == "ro" else ("disk", "peer_disk")
                current.update(zip(keys, (mine, peer), strict=True))
            continue
        if current is None:
            continue
        synced = _SYNCED.search(line)
        if synced:
            current["sync_percent"] = float(synced[1])
        finish = _FINISH.search(line)
        if finish:
            hours, minutes, seconds = (int(finish[i]) for i in (1, 2, 3))
            current["sync_eta_s"] = hours * 3600 + minutes * 60 + seconds
            current["sync_rate_kib"] = int(finish[4].replace(",", ""))
    flush()
    return devices


def parse_status_json(text: str) -> dict[str, DrbdStatus]:
    """Resources from DRBD 9 ``drbdsetup status --json``, keyed by resource name.

    Herd resources have one volume and one peer; a resource with more reports its first
    volume and first connection, which is what a two-node disk is made of.
    """
    try:
        resources = json.loads(text)
    except ValueError as exc:
        raise NodeError(f"unreadable drbdsetup status output: {text[:200]!r}") from exc
    if not isinstance(resources, list):
        raise NodeError(f"drbdsetup status --json gave no list: {text[:200]!r}")
    return {res["name"]: _status_9(res) for res in resources}


def _status_9(res: dict[str, Any]) -> DrbdStatus:
    devices = res.get("devices") or [{}]
    device = devices[0]
    connections = res.get("connections") or []
    fields: dict[str, Any] = {
        "minor": device.get("minor"),
        "role": res.get("role", "Unknown"),
        "disk": device.get("disk-state", "Diskless"),
        "cstate": "StandAlone",
    }
    if connections:
        conn = connections[0]
        peer_devices = conn.get("peer_devices") or [{}]
        peer = peer_devices[0]
        fields["peer_role"] = conn.get("peer-role", "Unknown")
        fields["peer_disk"] = peer.get("peer-disk-state", "DUnknown")
        fields["cstate"] = _cstate_9(conn.get("connection-state", ""), peer)
        if "percent-resync-done" in peer:
            fields["sync_percent"] = round(float(peer["percent-resync-done"]), 1)
        if "db1/dt1 [MiB/s]" in peer:
            fields["sync_rate_kib"] = int(float(peer["db1/dt1 [MiB/s]"]) * 1024)
        eta = peer.get("estimated-seconds-to-finish")
        if eta is not None and int(eta) != _NO_ETA:
            fields["sync_eta_s"] = int(eta)
    return DrbdStatus(**fields)


def _cstate_9(connection_state: str, peer: dict[str, Any]) -> str:
    """The 8.4 name for a DRBD 9 connection + replication state pair."""
    if connection_state == "Connected":
        replication = peer.get("replication-state", "Established")
        return "Connected" if replication in ("Established", "Off") else replication
    if connection_state == "Connecting":
        return "WFConnection"
    return connection_state or "StandAlone"
