"""The fake hypervisor's stand-in for the zeroing helper image (``herd.helper=zero``).

Under kvm the helper is a real guest (lab/build-zeroing-image.py) that mounts each
filesystem on the instance's disks, writes a zero-filled file until the disk is full,
deletes it and powers off. A fake "guest" is a process on the node, and a node must
never mount an instance's filesystem (a crafted one can attack the host kernel), so this
helper reaches the same end state without mounting: ``zerofree`` (Debian package
``zerofree``) writes zeros into every block the ext2/3/4 allocation bitmaps call free.
It opens a partition inside a whole-disk image through e2fsprogs' ``PATH?offset=N``
syntax, so neither root, a loop device nor a copy is needed. Filesystems other than
ext2/3/4 are left alone and named in the log, as the real helper does with what it
cannot mount.

Like the real helper it runs as the instance's process and "powers off" by exiting, so
the engine's wait-for-shutdown, timeout and forced stop are exercised unchanged. Its
stdout is the instance log; the markers match the real helper's serial console.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence

EXT_MAGIC = b"\x53\xef"
#: The ext superblock starts 1024 bytes into the filesystem; its magic 56 bytes later.
EXT_MAGIC_OFFSET = 1024 + 56
#: MBR extended-partition containers: no filesystem of their own.
CONTAINER_TYPES = {"5", "f", "85"}


def filesystem_offsets(path: str) -> list[int]:
    """Byte offsets where a filesystem may start: each partition, or the whole disk."""
    proc = subprocess.run(["sfdisk", "-J", path], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return [0]
    table = json.loads(proc.stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return [
        int(part["start"]) * sector
        for part in table.get("partitions", [])
        if str(part.get("type", "")).lower() not in CONTAINER_TYPES
    ]


def is_ext(path: str, offset: int) -> bool:
    with open(path, "rb") as f:
        f.seek(offset + EXT_MAGIC_OFFSET)
        return f.read(2) == EXT_MAGIC


def zero_disk(path: str) -> bool:
    """Zero the free space of every ext filesystem on ``path``; False if one failed."""
    ok = True
    for offset in filesystem_offsets(path):
        where = f"{path}?offset={offset}"
        if not is_ext(path, offset):
            print(f"HERD-ZERO-SKIP {where} (no ext2/3/4 filesystem)", flush=True)
            continue
        proc = subprocess.run(["zerofree", where], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            print(f"HERD-ZERO-FS {where}", flush=True)
        else:
            ok = False
            print(f"HERD-ZERO-FAILED {where}: {proc.stderr.strip()}", flush=True)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the instance this helper runs as")
    parser.add_argument("disks", nargs="*", help="the instance's writable disks")
    args = parser.parse_args(argv)
    print(f"HERD-ZERO-START {args.name}", flush=True)
    ok = all([zero_disk(path) for path in args.disks])
    print("HERD-ZERO-DONE" if ok else "HERD-ZERO-INCOMPLETE", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
