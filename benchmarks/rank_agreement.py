"""How well a trial's standing at an early report predicts where it ends: the evidence for
where a study's first rung belongs, read from the ``none`` studies of
``benchmarks/early_stopping.py`` (every trial ran to its end there).

For each report k, over the trials that ran to their end, grouped by equal ``--within``
metric (``num_params``: students of one size; without it, one group):

- ``spearman``: the rank correlation between the metric at report k and at the last
  report, within each group of at least 4 trials, averaged weighted by group size (groups
  where all trials tie at report k are left out);
- ``best_kept``: the share of groups (at least 3 trials) whose best trial at the end is
  among the best third at report k, as a rung with reduction factor 3 would keep it.

The standing at report k is on the study's first objective, or on ``--early METRIC``
(``--early-direction minimize`` for a loss), which a trial's stored reports must hold
(every reported metric, in studies created since hpo stores them all).

    python benchmarks/rank_agreement.py distill-squad --trials 100 --seeds 0 --home H

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
from _report import print_table, write_results  # benchmarks/ is the script's directory
from early_stopping import BASELINE, study_name

from hpo.spec import Goal


def finished_curves(
    study: str, seed: int, trials: int
) -> tuple[list[list[dict[str, float]]], Goal]:
    """The reports of every trial of the seed's ``none`` study that ran to its end, and the
    goal they are judged on (the study's first, as stored with it)."""
    import hpo
    from hpo.trials import ATTR_REPORTS

    stored, spec = hpo.load(study_name(study, BASELINE, trials, seed))
    runs = [list(t.user_attrs.get(ATTR_REPORTS) or []) for t in stored.get_trials(deepcopy=False)
            if t.values is not None]
    longest = max(map(len, runs), default=0)
    return [r for r in runs if len(r) == longest], spec.goals[0]


def agreement(runs: list[list[dict[str, float]]], report: int, goal: Goal,
              within: str | None, early: Goal | None = None) -> dict[str, Any]:
    """``spearman`` and ``best_kept`` of ``early``'s metric (default: ``goal``'s) at
    ``report`` (1-based) against ``goal``'s at the end (see the module docstring)."""
    def better(metrics: dict[str, float], judged: Goal) -> float:  # larger is better
        return -judged.minimized(metrics[judged.metric])

    groups: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        key = run[-1][within] if within else 0.0
        groups[key].append((better(run[report - 1], early or goal), better(run[-1], goal)))
    weighted = weight = kept = counted = 0
    for pairs in groups.values():
        then, final = pd.Series([p[0] for p in pairs]), pd.Series([p[1] for p in pairs])
        if len(pairs) >= 4 and then.nunique() > 1 and final.nunique() > 1:
            weighted += len(pairs) * then.corr(final, method="spearman")
            weight += len(pairs)
        if len(pairs) >= 3:
            standing = then.rank(ascending=False, method="max")[int(final.idxmax())]
            kept += int(standing <= math.ceil(len(pairs) / 3))
            counted += 1
    return {"report": report,
            "spearman": round(weighted / weight, 2) if weight else None,
            "trials": weight,
            "best_kept": round(kept / counted, 2) if counted else None,
            "groups": counted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reports", type=int, nargs="+", default=[1, 2, 3, 6, 9])
    parser.add_argument("--within", help="group trials by this final metric (num_params)")
    parser.add_argument("--early", help="the metric to stand on at report k (default: the "
                        "study's first objective)")
    parser.add_argument("--early-direction", choices=["maximize", "minimize"],
                        default="maximize")
    parser.add_argument("--home", default="storage/benchmarks")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/rank_agreement_"
                        "STUDY.json)")
    args = parser.parse_args(argv)
    os.environ["HPO_HOME"] = str(Path(args.home).absolute())
    early = Goal(args.early, args.early_direction) if args.early else None
    rows = []
    for seed in args.seeds:
        runs, goal = finished_curves(args.study, seed, args.trials)
        rows += [{"seed": seed, **agreement(runs, k, goal, args.within, early)}
                 for k in args.reports if runs and k <= len(runs[0])]
    print(f"{(early or goal).metric} at report k against {goal.metric} at the last report"
          + (f", within equal {args.within}" if args.within else ""))
    print_table(rows)
    print()
    out = args.out or f"benchmarks/results/rank_agreement_{Path(args.study).stem}.json"
    write_results(Path(out), {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
