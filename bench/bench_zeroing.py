#!/usr/bin/env python3
"""How much smaller a move gets when the instance's free space is zeroed first.

Two lab nodes, one master in this process. A herd-image ``tiny`` instance (ext4 in a
partition) gets ``--deleted-mib`` of random data written into its filesystem and deleted
again with debugfs, as a guest deleting a big file would leave it: free blocks that still
hold data. The instance is then moved n1 -> n2 without zeroing and back with
``zero_free_space``, side by side in one run, for each compression asked for; the script
prints data bytes (non-zero extents the stream carried) and wire bytes of both moves and
their ratio, plus how long each move took. ``--hypervisor kvm`` boots the real helper
image under TCG (lab/build-zeroing-image.py); ``fake`` uses the zerofree stand-in.

Needs root (lab namespaces), e2fsprogs and zerofree.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "lab")]

import herdlab  # noqa: E402

from tests.engine.ops.test_zeroing import (  # noqa: E402
    image_of,
    placeholder_image,
    real_image,
    run,
    start_cluster,
    write_and_delete,
)

MIB = 2**20


def move(running: Any, name: str, target: str, zero: bool, compression: str) -> dict[str, Any]:
    started = time.monotonic()
    result = run(
        running,
        "instance.move",
        name=name,
        target_node=target,
        zero_free_space=zero,
        compression=compression,
    )
    (stats,) = result["transfers"]
    return {**stats, "seconds": time.monotonic() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--disk-mib", type=int, default=512)
    parser.add_argument("--deleted-mib", type=int, default=256)
    parser.add_argument("--hypervisor", choices=("fake", "kvm"), default="fake")
    parser.add_argument("--compression", nargs="+", default=["none", "zstd"])
    args = parser.parse_args()
    reason = herdlab.missing_requirements()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    name = f"bz{os.getpid()}"
    lab = herdlab.up(name, 2, owner_pid=os.getpid())
    old_key = os.environ.get("HERD_BOOTSTRAP_KEY")
    os.environ["HERD_BOOTSTRAP_KEY"] = lab.key_path
    try:
        with tempfile.TemporaryDirectory(prefix="bench-zeroing-") as tmp:
            base = Path(tmp)
            image = real_image() if args.hypervisor == "kvm" else placeholder_image(base / "img")
            running = start_cluster(lab, base, image)
            try:
                bench(running, lab, args)
            finally:
                running.stop()
    finally:
        if old_key is None:
            os.environ.pop("HERD_BOOTSTRAP_KEY", None)
        else:
            os.environ["HERD_BOOTSTRAP_KEY"] = old_key
        herdlab.down(name)
    return 0


def bench(running: Any, lab: Any, args: argparse.Namespace) -> None:
    n1, n2 = (n.name for n in lab.nodes)
    extra = {"nics": [], "hvparams": {"acceleration": "tcg"}} if args.hypervisor == "kvm" else {}
    print(
        f"{args.hypervisor}: {args.disk_mib} MiB disk, {args.deleted_mib} MiB written and "
        "deleted inside its ext4 before each pair of moves"
    )
    header = f"{'compression':<12}{'move':<10}{'data MiB':>10}{'wire MiB':>10}{'seconds':>9}"
    print(header)
    for i, compression in enumerate(args.compression):
        inst = f"bench{i}"
        run(running, "instance.add", name=inst, disk_template="file",
            disks=[f"{args.disk_mib}M"], os="herd-image+tiny", primary_node=n1,
            hypervisor=args.hypervisor, start=False, **extra)  # fmt: skip
        write_and_delete(image_of(lab, running, inst), args.deleted_mib)
        plain = move(running, inst, n2, False, compression)
        zeroed = move(running, inst, n1, True, compression)
        for label, stats in (("plain", plain), ("zeroed", zeroed)):
            print(
                f"{compression:<12}{label:<10}{stats['data_bytes'] / MIB:>10.2f}"
                f"{stats['wire_bytes'] / MIB:>10.2f}{stats['seconds']:>9.1f}"
            )
        print(
            f"{compression:<12}{'ratio':<10}"
            f"{zeroed['data_bytes'] / plain['data_bytes']:>10.3f}"
            f"{zeroed['wire_bytes'] / plain['wire_bytes']:>10.3f}"
            f"{zeroed['seconds'] / plain['seconds']:>9.2f}"
        )
        run(running, "instance.remove", name=inst)


if __name__ == "__main__":
    sys.exit(main())
