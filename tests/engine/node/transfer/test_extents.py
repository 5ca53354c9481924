"""Zero detection: holes are never read, zero blocks inside data are skipped too."""

from __future__ import annotations

import os
from pathlib import Path

from herd.node.transfer.extents import ZERO_GRAIN, data_extents, data_regions, device_size

from .conftest import MIB, write_image


def extents(path: Path) -> list[tuple[int, bytes]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [(e.offset, e.data) for e in data_extents(fd, device_size(fd))]
    finally:
        os.close(fd)


def rebuild(size: int, found: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(size)
    for offset, data in found:
        out[offset : offset + len(data)] = data
    return bytes(out)


def test_sparse_file_holes_are_skipped_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    content = write_image(path, 64 * MIB, {0: b"a" * 100, 40 * MIB: b"b" * MIB})
    fd = os.open(path, os.O_RDONLY)
    try:
        regions = list(data_regions(fd, 64 * MIB))
    finally:
        os.close(fd)
    assert sum(end - start for start, end in regions) < 4 * MIB
    found = extents(path)
    assert rebuild(64 * MIB, found) == content
    # Only the data crosses, at most one zero-detection grain more per data region.
    assert MIB + 100 <= sum(len(d) for _, d in found) <= MIB + ZERO_GRAIN


def test_written_zeros_inside_data_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    piece = b"x" * 100 + bytes(3 * MIB) + b"y" * ZERO_GRAIN + bytes(ZERO_GRAIN) + b"z"
    content = write_image(path, 8 * MIB, {MIB: piece})
    found = extents(path)
    assert rebuild(8 * MIB, found) == content
    offsets = [o for o, _ in found]
    assert offsets == sorted(offsets)
    # x, y and z occupy at most four grains; the 3 MiB of written zeros are not sent.
    assert sum(len(d) for _, d in found) <= 4 * ZERO_GRAIN


def test_non_sparse_all_zero_file_sends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    path.write_bytes(bytes(5 * MIB + 123))
    assert extents(path) == []


def test_unaligned_tail_and_adjacent_grains_merge(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    data = os.urandom(3 * MIB + 7)
    content = write_image(path, 3 * MIB + 7, {0: data})
    found = extents(path)
    assert rebuild(len(content), found) == content
    assert len(found) == 1
