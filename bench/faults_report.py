"""Run the fault campaign (tests/faults/) and print what it injected and what survived.

    python3 bench/faults_report.py          # the CI form
    python3 bench/faults_report.py --all    # every crash point of every op, long fuzzing

Each fault test records one line per fault it injected (``tests/faults/record.py``): a
master killed at a crash point, a node process killed, a link cut, a disk filled; the
fuzzer records one line per request it sent. The table counts them: every fault should
be survived with nothing lost, every bad input rejected cleanly, and no 500 seen.
Needs root (lab nodes), like the tests themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_campaign(record: Path, full: bool, pytest_args: list[str]) -> int:
    env = {**os.environ, "HERD_FAULTS_RECORD": str(record)}
    if full:
        env["HERD_FAULTS_ALL"] = "1"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults"]
    return subprocess.run([*argv, *pytest_args], cwd=ROOT, env=env, check=False).returncode


def summarise(lines: list[dict[str, object]]) -> list[tuple[str, str]]:
    faults = [line for line in lines if line.get("kind", "fault") == "fault"]
    inputs = [line for line in lines if line.get("kind") == "input"]
    statuses = Counter(int(str(line.get("status", 0))) for line in inputs)
    families = Counter(str(line["fault"]).split(" at ")[0].split(" in ")[0] for line in faults)
    lost = [str(line["fault"]) for line in faults if not line["survived"]]
    rows = [
        ("faults injected", str(len(faults))),
        ("faults survived with nothing lost", str(len(faults) - len(lost))),
        *((f"  {family}", str(count)) for family, count in sorted(families.items())),
        ("requests fuzzed", str(len(inputs))),
        ("bad inputs rejected cleanly (400 naming the field)", str(statuses[400])),
        ("answers not clean", str(sum(1 for line in inputs if not line["survived"]))),
        ("500s seen", str(statuses[500])),
    ]
    rows.extend((f"  not survived: {name}", "") for name in lost)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="the long form of every test")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "faults.jsonl"
        code = run_campaign(record, args.all, args.pytest_args)
        text = record.read_text() if record.exists() else ""
    lines = [json.loads(line) for line in text.splitlines() if line]
    rows = summarise(lines)
    width = max(len(name) for name, _ in rows)
    print(f"\nfault campaign ({'--all' if args.all else 'CI form'}), pytest exit {code}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return code


if __name__ == "__main__":
    sys.exit(main())
