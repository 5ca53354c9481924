"""Lock manager throughput, uncontended and under contention, measured side by side.

Every job takes locks at least once per opcode, so the cost of one acquire/release pair
bounds how many small jobs per second the master can run. A bare ``threading.Lock`` pair
is measured in the same run as the yardstick, so the printed ratios mean the same thing
on any machine. Output lines are ``metric: value unit``.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Callable

from herd.locking import ALL, LockManager

NAMES = [f"node{i:02d}" for i in range(16)]


def rate(duration: float, body: Callable[[], int]) -> float:
    """Run ``body`` (which returns how many operations it did) repeatedly for ``duration``."""
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < duration:
        done += body()
    return done / elapsed


def bare_lock(duration: float) -> float:
    lock = threading.Lock()

    def body() -> int:
        for _ in range(1000):
            lock.acquire()
            lock.release()
        return 1000

    return rate(duration, body)


def uncontended(lm: LockManager, duration: float, names: list[str] | object) -> float:
    def body() -> int:
        for _ in range(200):
            lm.acquire("job-1", "node", names)
            lm.release("job-1", "node")
        return 200

    return rate(duration, body)


def contended(lm: LockManager, duration: float, threads: int, exclusive_share: float) -> float:
    """``threads`` workers, each taking 1-3 random names (shared or exclusive) at a time."""
    counts = [0] * threads
    stop = threading.Event()

    def worker(index: int) -> None:
        rng = random.Random(index)
        owner = f"job-{index}"
        while not stop.is_set():
            names = rng.sample(NAMES, rng.randint(1, 3))
            lm.acquire(owner, "node", names, shared=rng.random() >= exclusive_share)
            lm.release(owner, "node")
            counts[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(duration)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=1.5, help="seconds per measurement")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    lm = LockManager()
    lm.register("node", NAMES)
    base = bare_lock(args.duration)
    one = uncontended(lm, args.duration, ["node00"])
    every = uncontended(lm, args.duration, ALL)
    mixed = contended(lm, args.duration, args.threads, exclusive_share=0.25)
    writers = contended(lm, args.duration, args.threads, exclusive_share=1.0)
    assert all(not row["holders"] and not row["pending"] for row in lm.info())

    print(f"threading_lock_pairs: {base:.0f} ops/s")
    print(f"uncontended_single: {one:.0f} ops/s")
    print(f"uncontended_all_16: {every:.0f} ops/s")
    print(f"contended_{args.threads}x16_mixed_25pct_exclusive: {mixed:.0f} ops/s")
    print(f"contended_{args.threads}x16_all_exclusive: {writers:.0f} ops/s")
    print(f"ratio_single_vs_threading_lock: {one / base:.4f} x")
    print(f"ratio_contended_mixed_vs_uncontended: {mixed / one:.3f} x")
    print(f"ratio_contended_exclusive_vs_mixed: {writers / mixed:.3f} x")


if __name__ == "__main__":
    main()
