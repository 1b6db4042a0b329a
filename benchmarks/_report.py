"""What every benchmark script shares: the printed table, how sure a median is, and the
JSON file of results."""

from __future__ import annotations

import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
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


def write_results(out: Path, results: dict[str, Any]) -> None:
    """``results`` as JSON in ``out``, with the command line and the machine (host, CPU,
    package versions: :func:`hpo.provenance.environment`). The machine matters beyond
    timings: distill-squad's training rounds differently on another CPU generation, so its
    studies, and the hypervolumes compared with them, differ (docs/benchmarks.md)."""
    from hpo.provenance import environment, write_json

    write_json(out, {**results, "command": " ".join(sys.argv), "machine": environment()})
    print(f"written: {out}")
