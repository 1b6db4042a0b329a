"""Early stopping: compute spent and final feasible hypervolume, each scheduler vs none.

Runs the same study (same trial budget, same seeds) once per scheduler and seed through
the full hpo stack, then compares with ``none`` (no early stopping at all: no scheduler,
no infeasibility or degenerate-run rule). Compute is the sum over trials of the last
training step each reported; hypervolume is that of the final feasible Pareto front.
Every arm samples with ``tpe`` (``--set run.sampler=...`` to change it): ``auto`` would
choose ``gp-tpe`` in ``none``'s studies of slow trials and ``tpe`` in the others, and the
comparison would measure the samplers as much as the stopping.
With ``--held-out``, also that front's hypervolume on held-out data (``hpo.held_out_front``:
each front trial's kept model measured again on data no trial trained or was selected
on), which the winner's curse does not inflate: a study that trains every trial to the
end picks its front from more noisy evaluations than one that stops most trials early.

    python benchmarks/early_stopping.py curves --trials 100 --seeds 0 1 2 --backend local
    python benchmarks/early_stopping.py distill-squad --trials 30 --seeds 0 1 --held-out

Prints a table and writes JSON (``--out``). Runs share ``--home`` (storage, MLflow and
caches such as the distill-squad teacher), one study per (scheduler, seed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _report import (  # benchmarks/ is the script's directory
    median_interval,
    print_table,
    write_results,
)

BASELINE = "none"
NO_STOPPING = [("stopping.infeasible", None), ("stopping.degenerate", {})]


def study_name(study: str, scheduler: str, trials: int, seed: int) -> str:
    """The benchmark's study of one scheduler and seed (``stopping_replay.py`` and
    ``rank_agreement.py`` read the ``none`` ones)."""
    return f"es-{study}-{scheduler}-t{trials}-s{seed}"


def run_one(study: str, scheduler: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import hpo
    from hpo.trials import ATTR_STEPS, ATTR_STOPPED

    name = study_name(study, scheduler, args.trials, seed)
    overrides = [("run.backend", args.backend), ("run.sampler", "tpe"),
                 *[tuple(o) for o in args.set]]
    if scheduler == BASELINE:
        overrides += NO_STOPPING
    started = time.perf_counter()
    summary = hpo.run(
        study, study_name=name, trials=args.trials, seed=seed, scheduler=scheduler,
        overrides=overrides, show_progress=False,
    )
    wall = time.perf_counter() - started
    trials = hpo.load(name)[0].get_trials(deepcopy=False)
    held_out = {} if not args.held_out else {  # measured, not recorded with the study
        "hypervolume_held_out": hpo.held_out_front(name, record=False).hypervolume or 0.0}
    return {
        "study": study,
        "scheduler": scheduler,
        "seed": seed,
        "trials": args.trials,
        "compute_steps": sum(t.user_attrs.get(ATTR_STEPS, 0) for t in trials),
        "hypervolume": summary.hypervolume or 0.0,
        **held_out,
        "feasible": summary.feasible,
        "pareto_size": len(summary.front),
        "pruned": summary.pruned,
        "failed": summary.failed,
        "stops": dict(Counter(t.user_attrs[ATTR_STOPPED] for t in trials
                              if ATTR_STOPPED in t.user_attrs)),
        "wall_s": round(wall, 1),
    }


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scheduler: medians over seeds of compute saved and hypervolume kept vs none (with
    the 95% interval of the latter's median and its worst seed), held out too if measured."""
    base = {r["seed"]: r for r in rows if r["scheduler"] == BASELINE}
    table = []
    for scheduler in dict.fromkeys(r["scheduler"] for r in rows):
        mine = [r for r in rows if r["scheduler"] == scheduler and r["seed"] in base]
        saved = [base[r["seed"]]["compute_steps"] / max(1, r["compute_steps"]) for r in mine]
        row: dict[str, Any] = {
            "scheduler": scheduler,
            "seeds": len(mine),
            "compute_saved_x": round(statistics.median(saved), 2) if saved else None,
        }
        for key, label in (("hypervolume", "hypervolume"), ("hypervolume_held_out", "held_out")):
            kept = [r[key] / base[r["seed"]][key]
                    for r in mine if key in r and base[r["seed"]].get(key, 0) > 0]
            if kept or key == "hypervolume":
                row |= {
                    f"{label}_vs_none": round(statistics.median(kept), 4) if kept else None,
                    f"{label}_vs_none_95": [round(v, 4) for v in median_interval(kept)]
                    if kept else None,
                    f"{label}_vs_none_min": round(min(kept), 4) if kept else None,
                }
        row["median_compute_steps"] = statistics.median(r["compute_steps"] for r in mine)
        row["median_wall_s"] = statistics.median(r["wall_s"] for r in mine)
        table.append(row)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="a study name or file, e.g. curves or distill-squad")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--schedulers", nargs="+", default=["none", "moasha", "asha", "median"])
    parser.add_argument("--backend", default="ray", choices=["ray", "local"])
    parser.add_argument("--set", nargs=2, action="append", default=[], metavar=("FIELD", "VALUE"),
                        help="extra study-file override for every run (value as YAML)")
    parser.add_argument("--home", default="storage/benchmarks", help="HPO_HOME of the runs")
    parser.add_argument("--held-out", action="store_true",
                        help="also the final fronts' hypervolume on held-out data (objectives "
                        "that keep models: distill-squad)")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/early_stopping_"
                        "STUDY.json)")
    args = parser.parse_args(argv)
    from hpo.spec import parse_assignment

    args.set = [parse_assignment(f"{field}={value}") for field, value in args.set]
    os.environ["HPO_HOME"] = str(Path(args.home).absolute())
    schedulers = [BASELINE] + [s for s in args.schedulers if s != BASELINE]
    rows = []
    for seed in args.seeds:
        for scheduler in schedulers:
            rows.append(run_one(args.study, scheduler, seed, args))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print_table([{k: v for k, v in r.items() if k != "stops"} for r in rows])
    print()
    table = compare(rows)
    print_table(table)
    print()
    out = args.out or f"benchmarks/results/early_stopping_{Path(args.study).stem}.json"
    write_results(Path(out), {"runs": rows, "summary": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
