"""What every benchmark script shares: the printed table, how sure a median is, whether one
sampler's seeds rank below another's, and the JSON file of results."""

from __future__ import annotations

import math
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


def rank_p_value(mine: Sequence[float], theirs: Sequence[float]) -> float:
    """One-sided p-value of the exact rank-sum (Mann-Whitney) test, ties at mid-rank: the
    chance that, were ``mine`` and ``theirs`` one set of runs split at random, ``mine``
    would rank as low as it does or lower. Small (below 0.05) when ``mine`` is behind by
    more than seed-to-seed variation explains; 1/252 is the smallest for 5 seeds each."""
    pooled = sorted([*mine, *theirs])
    doubled_rank: dict[float, int] = {}  # twice the mid-rank: an integer
    for value in pooled:
        first = pooled.index(value) + 1
        doubled_rank[value] = first + first + pooled.count(value) - 1
    ranks = [doubled_rank[v] for v in [*mine, *theirs]]
    observed = sum(doubled_rank[v] for v in mine)
    # ways[k][s]: subsets of k runs whose doubled ranks sum to s
    ways = [[0] * (sum(ranks) + 1) for _ in range(len(mine) + 1)]
    ways[0][0] = 1
    for rank in ranks:
        for k in range(len(mine), 0, -1):
            for total in range(len(ways[k]) - 1, rank - 1, -1):
                ways[k][total] += ways[k - 1][total - rank]
    return sum(ways[len(mine)][: observed + 1]) / math.comb(len(ranks), len(mine))


def write_results(out: Path, results: dict[str, Any]) -> None:
    """``results`` as JSON in ``out``, with the command line and the machine (host, CPU,
    package versions: :func:`hpo.provenance.environment`). The machine matters beyond
    timings: distill-squad's training rounds differently on another CPU generation, so its
    studies, and the hypervolumes compared with them, differ (docs/benchmarks.md)."""
    from hpo.provenance import environment, write_json

    write_json(out, {**results, "command": " ".join(sys.argv), "machine": environment()})
    print(f"written: {out}")
