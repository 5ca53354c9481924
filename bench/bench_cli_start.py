"""Cold start of the ``herd`` CLI against the bare interpreter, side by side in one run.

    python3 bench/bench_cli_start.py [--runs 20]

Scripts call the CLI in loops, so what it costs before it does anything matters. Each
command runs as a fresh process ``--runs`` times, interleaved with the others so machine
load hits all alike; the table gives medians and each one's excess over ``python3 -c
pass``. Target (issue 11): a client command within 60 ms of the bare interpreter.
``herd debug delay 0`` (a job: submit, then one long-poll until it ends) and ``herd
instance list`` (a query) go to one real master started here on a temporary socket, so
they include the master's round trip, as a user's command does. Every command runs with
its bytecode cached, as an installed package has it: with PYTHONDONTWRITEBYTECODE set (as
in the lab and CI) a module edited since its last ``.pyc`` would otherwise be compiled
again in every run, and the table would measure the compiler.
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

TARGET_MS = 60.0


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1000


def bench_env(tmp: Path) -> dict[str, str]:
    """The caller's environment with bytecode written to, and read from, a cache of its own."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env | {"HERD_SOCKET": str(tmp / "master.sock"), "PYTHONPYCACHEPREFIX": str(tmp / "pyc")}


def wait_for(socket_path: Path, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    info = [sys.executable, "-m", "herd.cli.main", "queue", "info"]
    while subprocess.run(info, env=env, capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("the master did not start")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    herd = [sys.executable, "-m", "herd.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        env = bench_env(Path(tmp))
        sock = Path(env["HERD_SOCKET"])
        master = subprocess.Popen(
            [*herd, "master", "--state-dir", str(Path(tmp) / "state"), "--log-level", "ERROR"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(sock, env)
            commands = {
                "python3 -c pass": [sys.executable, "-c", "pass"],
                "herd --help": [*herd, "--help"],
                "herd instance add --help": [*herd, "instance", "add", "--help"],
                "herd debug delay 0": [*herd, "debug", "delay", "0"],
                "herd instance list": [*herd, "instance", "list"],
            }
            for argv in commands.values():
                timed(argv, env)  # fills the bytecode cache; not counted
            samples: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, argv in commands.items():
                    samples[name].append(timed(argv, env))
        finally:
            master.terminate()
            master.wait(30)
    base = statistics.median(samples["python3 -c pass"])
    print(f"{'command':<28} {'median ms':>10} {'over bare':>10}  target {TARGET_MS:g} ms")
    for name, values in samples.items():
        median = statistics.median(values)
        over = median - base
        verdict = "" if name.startswith("python3") else ("met" if over <= TARGET_MS else "MISSED")
        print(f"{name:<28} {median:>10.1f} {over:>10.1f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
