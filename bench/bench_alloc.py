#!/usr/bin/env python3
"""Cost of one placement: the built-in allocator vs. Ganeti's ``hail`` over the protocol.

Builds the same loaded cluster for both (N nodes in one group, half of them carrying
DRBD instances), places one DRBD instance with each allocator side by side, and prints
medians and the ratio. ``hail`` runs only if ganeti-htools is installed.
"""

from __future__ import annotations

import argparse

from timing import median_ms

from herd.alloc import allocate, iallocator
from herd.alloc.model import GroupState, InstanceRequest, NodeState, Snapshot

HAIL = "hail"


def build(nodes: int) -> Snapshot:
    group = GroupState("default", "00000000-0000-4000-8000-000000000000")
    states = {
        f"node{i:03d}": NodeState(
            f"node{i:03d}", "default", 65536, 60000 - 97 * i, {"lvm": 10**6}, {"lvm": 10**6}, 16
        )
        for i in range(nodes)
    }
    snap = Snapshot("bench", states, {"default": group})
    names = sorted(states)
    for i in range(nodes // 2):
        spec = InstanceRequest(f"inst{i:03d}", 1024, 1, (10240,), "drbd")
        snap = snap.place(spec, names[i], names[(i + 1) % nodes])
    return snap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    snap = build(args.nodes)
    spec = InstanceRequest("new", 2048, 2, (20480,), "drbd")
    builtin = median_ms(lambda: allocate(snap, spec), args.rounds)
    print(f"{args.nodes} nodes, {len(snap.instances)} instances")
    print(f"builtin: {builtin:8.2f} ms  -> {allocate(snap, spec).nodes}")
    if HAIL in iallocator.installed():
        hail = median_ms(lambda: allocate(snap, spec, allocator=HAIL), args.rounds)
        print(f"hail:    {hail:8.2f} ms  -> {allocate(snap, spec, allocator=HAIL).nodes}")
        print(f"hail / builtin = {hail / builtin:.1f}x")
    else:
        print("hail not installed (apt-get install ganeti-htools): no comparison")


if __name__ == "__main__":
    main()
