"""Job queue speed and size, measured against a real master process in one run.

Prints ``metric: value unit`` lines:

* trivial job round trip (submit a ``debug.delay`` of 0 s, long-poll until the client
  sees success), median and p95 over sequential jobs, against the issue's target
  (<= 50 ms) and as a ratio to Ganeti 3.0's 0.5-0.6 s for the same thing;
* throughput: 1,000 no-op jobs submitted in one request, until the last one succeeded;
* the master's resident memory (VmRSS) idle and with 1,000 jobs queued behind a long one.

Usage: ``python bench/bench_queue.py [--round-trips N] [--jobs N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from herd.client import Client
from herd.errors import MasterUnreachableError

TARGET_ROUND_TRIP_S = 0.050
GANETI_ROUND_TRIP_S = (0.5, 0.6)
NOOP = {"op": "debug.delay", "duration": 0}


def start_master(state_dir: Path, socket_path: Path) -> subprocess.Popen[bytes]:
    """A separate process, as in production, so its RSS is the master's alone."""
    env = {**os.environ, "HERD_SOCKET": str(socket_path)}
    argv = ["master", "--state-dir", str(state_dir), "--log-level", "WARNING"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "herd.cli.main", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(state_dir / "master.log", "ab"),  # noqa: SIM115 - lives as long as the child
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with Client(str(socket_path), timeout=2) as c:
                c.info()
            return proc
        except MasterUnreachableError:
            if proc.poll() is not None:
                raise SystemExit(f"master exited with {proc.returncode}") from None
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("master did not come up")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


def wait_all_final(client: Client, count: int, deadline_s: float) -> None:
    """Poll the cheap counts endpoint until ``count`` jobs have ended."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        counts = client.queue()["counts"]
        if counts["success"] + counts["error"] + counts["canceled"] >= count:
            return
        time.sleep(0.01)
    raise SystemExit(f"jobs not done within {deadline_s} s: {client.queue()['counts']}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="herd-bench-") as tmp:
        state_dir = Path(tmp)
        socket_path = state_dir / "master.sock"
        proc = start_master(state_dir, socket_path)
        try:
            client = Client(str(socket_path))
            client.run([NOOP])  # warm up imports, SQLite pages and the connection
            print(f"master_rss_idle: {rss_kib(proc.pid) / 1024:.1f} MiB")

            times = []
            for _ in range(args.round_trips):
                start = time.perf_counter()
                client.run([NOOP])
                times.append(time.perf_counter() - start)
            median, p95 = statistics.median(times), percentile(times, 0.95)
            print(f"round_trip_median: {median * 1000:.2f} ms")
            print(f"round_trip_p95: {p95 * 1000:.2f} ms")
            print(f"round_trip_target: {TARGET_ROUND_TRIP_S * 1000:.0f} ms")
            verdict = "met" if p95 <= TARGET_ROUND_TRIP_S else "MISSED"
            print(f"round_trip_target_p95: {verdict}")
            low, high = GANETI_ROUND_TRIP_S
            print(f"round_trip_speedup_vs_ganeti_3.0: {low / median:.0f}-{high / median:.0f} x")

            done_before = sum(client.queue()["counts"][s] for s in ("success", "error", "canceled"))
            start = time.perf_counter()
            client.submit_many([{"ops": [NOOP]} for _ in range(args.jobs)])
            submitted = time.perf_counter() - start
            wait_all_final(client, done_before + args.jobs, 60)
            elapsed = time.perf_counter() - start
            print(f"submit_{args.jobs}_jobs: {submitted * 1000:.0f} ms")
            print(f"throughput_{args.jobs}_noop_jobs: {args.jobs / elapsed:.0f} jobs/s")

            client.set_queue(1)
            blocker = client.submit([{"op": "debug.delay", "duration": 3600}])
            while client.job(blocker)["status"] != "running":
                time.sleep(0.01)
            queued = client.submit_many([{"ops": [NOOP]} for _ in range(args.jobs)])
            print(f"master_rss_{args.jobs}_queued: {rss_kib(proc.pid) / 1024:.1f} MiB")
            start = time.perf_counter()
            for job_id in queued:
                client.cancel(job_id)
            rate = len(queued) / (time.perf_counter() - start)
            print(f"cancel_rate: {rate:.0f} jobs/s")
            client.close()
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
