"""Placement: where instances go, N+1 aware, built in or through a Ganeti iallocator."""

from herd.alloc.builtin import (
    EvacuationPlan,
    Move,
    N1Failure,
    Placement,
    check_n1,
    evacuate,
    relocate,
)
from herd.alloc.entry import allocate
from herd.alloc.model import (
    GroupState,
    InstanceRequest,
    NodeState,
    PlacedInstance,
    SecondaryRef,
    Snapshot,
    snapshot,
)

__all__ = [
    "EvacuationPlan",
    "GroupState",
    "InstanceRequest",
    "Move",
    "N1Failure",
    "NodeState",
    "PlacedInstance",
    "Placement",
    "SecondaryRef",
    "Snapshot",
    "allocate",
    "check_n1",
    "evacuate",
    "relocate",
    "snapshot",
]
