"""What the bench scripts share: a median of repeated calls, the figure they compare side
by side (a median, not a mean, so one stall on a loaded machine does not move it)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], rounds: int) -> float:
    """Median milliseconds of ``rounds`` calls of ``fn``."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)
