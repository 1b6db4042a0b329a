"""What every benchmark script shares: the printed table, and how sure a median is."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Any


def print_table(rows: list[dict[str, Any]]) -> None:
    """Rows of equal keys as aligned columns, the keys as the header."""
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(str(row[k]).ljust(widths[k]) for k in keys))


def median_interval(values: Sequence[float], resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median over seeds. Closed-loop studies
    vary a lot from seed to seed (curves: 0.85-1.11 of ``none``'s hypervolume), so a
    median alone hides how far the next set of seeds may move it."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]
