"""Finding the data in a disk: what a transfer must send and what it may skip.

Two passes, cheapest first.  ``SEEK_DATA``/``SEEK_HOLE`` asks the filesystem where a
sparse file has blocks at all (a 10 GiB file's map in under a millisecond here); regions it
reports as holes are never read.  Inside data regions (and on block devices, where the
kernel reports everything as data) each block is compared with a zero ``bytes`` object:
that comparison runs at memcmp speed (tens of GB/s) while a ``memoryview`` or ``any()``
comparison would be the bottleneck of the whole pipeline (LAB-NOTES "Gotchas").  Zeroed
free space inside a guest filesystem is therefore skipped too, which is what makes
"zero free space, then export" pay off without a compressor chewing through zeros.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

#: Unit of reading: large enough that per-block Python overhead is noise.
READ_SIZE = 1024 * 1024
#: Unit of zero detection inside a read block: a filesystem's free space is scattered
#: in pieces much smaller than a MiB, and 64 KiB slices still compare at >30 GB/s.
ZERO_GRAIN = 64 * 1024
_ZERO_READ = bytes(READ_SIZE)
_ZERO_GRAIN = bytes(ZERO_GRAIN)


@dataclass(frozen=True)
class Extent:
    offset: int
    data: bytes


def device_size(fd: int) -> int:
    """Size of an open regular file or block device (``st_size`` is 0 for devices)."""
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode):
        return os.lseek(fd, 0, os.SEEK_END)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    raise OSError(f"not a regular file or block device (mode {st.st_mode:o})")


def data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` ranges that may hold data; holes between them read as zeros.

    Filesystems without ``SEEK_DATA`` support (and block devices) answer as if the whole
    range were data, which is correct, only slower; an ``OSError`` other than "no more
    data" means the same.
    """
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                return
            yield pos, size
            return
        if start >= size:
            return
        try:
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        except OSError:
            end = size
        yield start, end
        pos = end


def data_extents(fd: int, size: int, max_extent: int = 4 * READ_SIZE) -> Iterator[Extent]:
    """Non-zero extents of the first ``size`` bytes, in increasing offset order.

    Adjacent non-zero grains are merged up to ``max_extent`` so a fully used disk costs one
    frame per few MiB, not one per 64 KiB.
    """
    pending: list[bytes] = []
    pending_at = pending_end = 0
    for start, end in data_regions(fd, size):
        pos = start
        while pos < end:
            block = os.pread(fd, min(READ_SIZE, end - pos), pos)
            if not block:
                raise OSError(f"short read at {pos} (size {size})")
            if block == (_ZERO_READ if len(block) == READ_SIZE else bytes(len(block))):
                pos += len(block)
                continue
            # No run of a grain's worth of zeros anywhere means no zero grain either: the
            # common case of a full disk costs one substring search instead of 16 slices.
            grains = [(0, block)] if _ZERO_GRAIN not in block else _grains(block)
            for g, grain in grains:
                at = pos + g
                if pending and (pending_end != at or pending_end - pending_at >= max_extent):
                    yield Extent(pending_at, b"".join(pending))
                    pending.clear()
                if not pending:
                    pending_at = at
                pending.append(grain)
                pending_end = at + len(grain)
            pos += len(block)
    if pending:
        yield Extent(pending_at, b"".join(pending))


def _grains(block: bytes) -> list[tuple[int, bytes]]:
    """``(offset, grain)`` of the non-zero grains of ``block``."""
    found = []
    for g in range(0, len(block), ZERO_GRAIN):
        grain = block[g : g + ZERO_GRAIN]
        if grain != (_ZERO_GRAIN if len(grain) == ZERO_GRAIN else bytes(len(grain))):
            found.append((g, grain))
    return found
