#!/usr/bin/env python3
"""Concurrent creates while a long job holds some nodes: opportunistic vs blocking locks.

On one lab cluster (4 nodes, fake hypervisor, file disks, no OS install) a ``debug.delay``
job holds the locks of 2 nodes for ``--hold`` seconds; meanwhile ``--creates`` clients
each submit one create at once. Blocking creates need every node lock, so they all wait
for the holder (and then for each other); opportunistic creates lock the free nodes and
place there. Both rounds run in the same process, one after the other, and the wall time
from the first submission to the last create finishing is printed with the ratio.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from lab_cluster import create_op, lab_cluster, remove_all

from herd.client import Client


def round_trip(
    client: Client, socket: str, lab: Any, creates: int, hold: float, opportunistic: bool, tag: str
) -> float:
    """Seconds from the first create submitted to the last one done."""
    held = [n.name for n in lab.nodes[-2:]]
    holder = client.submit([{"op": "debug.delay", "duration": hold, "lock_nodes": held}])
    while client.job(holder)["status"] != "running":
        time.sleep(0.01)
    errors: list[str] = []

    def one(i: int) -> None:
        with Client(socket, timeout=600) as c:
            extra = {"opportunistic_tries": 50, "opportunistic_delay": 0.5} if opportunistic else {}
            job_id = c.submit([create_op(f"{tag}{i}", **extra)])
            doc = c.wait(job_id, 600)
            if doc["status"] != "success":
                errors.append(f"{tag}{i}: {doc['error']}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(creates)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    client.wait(holder, 600)
    if errors:
        raise SystemExit("creates failed: " + "; ".join(errors))
    remove_all(client)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=8)
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the holder keeps 2 nodes")
    args = parser.parse_args()
    with lab_cluster(4, "bo") as (client, lab):
        socket = client.socket_path
        blocking = round_trip(client, socket, lab, args.creates, args.hold, False, "blk")
        opportunistic = round_trip(client, socket, lab, args.creates, args.hold, True, "opp")
    print(f"{args.creates} concurrent creates, 2 of 4 nodes held for {args.hold:g} s")
    print(f"blocking locks:      {blocking:6.2f} s")
    print(f"opportunistic+retry: {opportunistic:6.2f} s")
    print(f"opportunistic is {blocking / opportunistic:.1f}x faster")


if __name__ == "__main__":
    main()
