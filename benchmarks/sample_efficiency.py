"""Sample efficiency under constraints: feasible hypervolume of hpo's default sampler vs Optuna's.

Every sampler runs the same problems with the same seeds in the same harness: in-process
Optuna ask/tell (in-memory storage), one trial at a time (``--pending 2``: each drawn while
another runs, as with two workers; 3: while two run, as hpo's ask-ahead with two workers).
A trial's parameters are drawn with :func:`hpo.trials.ask` (as hpo draws them), the
objective runs, and the constraint values of the study file
(:meth:`hpo.spec.Constraint.violation`: <= 0 when satisfied) are given the Optuna 5 way,
``trial.set_constraint(name, value)``, before ``study.tell``; every sampler reads them from
the trial. Samplers: ``hpo`` (``hpo.samplers``' ``auto``, seeded from the run's seed),
``hpo-tpe`` (its ``tpe``: what ``auto`` is for trials under 5 s or with early stopping) and
Optuna's ``tpe``, ``nsga2``, ``gp`` and ``random`` with their defaults (``gp-faster``, when
named: ``gp``'s trials, faster; see :data:`SAMPLERS`).

Every trial is simulated to take ``--trial-seconds`` (default 5, the issue's yardstick): its
start and end times in the in-memory storage are that far apart, so ``auto`` chooses as it
would for such trials (``gp-tpe`` from 5 s, ``tpe`` under: :mod:`hpo.samplers._auto`); the
objectives themselves take microseconds.
No trial is stopped early here (final metrics only): a ``curves`` study run by hpo, whose
20 reports its early stopping acts on, gets ``auto``'s TPE.

Problems (both objectives, constraints and reference point from each study document):

* ``bnh``, ``tnk``, ``srn``, ``constr``: classic constrained problems with analytic fronts
  (``objectives/bnh.py``, ``benchmarks/constrained_problems.py``, which cite the sources);
* ``curves``: ``search_spaces/curves.yaml`` (the simulated distill-squad study: maximize
  ``exact``, minimize ``num_params``, ``exact >= 50.5``, ``HasAns_exact >= 5``) on the
  objective's final metrics after its 20 reports, noise-free (``noise: 0``) so that the
  reference front bounds every trial. That front is computed (:func:`curves_front`), not
  known: ``num_params`` depends on ``(n_layers, hidden_size)`` alone, so for each of those
  60 pairs it takes the best feasible ``exact`` over the n_heads of highest capacity, found
  by 64 random draws of the continuous parameters refined by Nelder-Mead.

The score of a run after its first N trials (N in ``--budgets``, prefixes of one run) is
the hypervolume of its feasible trials divided by that of the true front, same reference
point. Sampler time is the time spent drawing a trial's parameters (ask + suggest).

    python benchmarks/sample_efficiency.py            # all problems and samplers, 5 seeds
    python benchmarks/sample_efficiency.py --problems bnh --samplers hpo random \\
        --seeds 0 --trials 10 --budgets 5 10

Prints one table (median and worst seed's hypervolume fraction, sampler ms per trial: mean
and slowest) and where hpo's median is below the best peer's, with the p-value of a rank
test of its seeds against the peer's (below 0.05: behind beyond seed-to-seed variation),
and writes JSON (``--out``). Runs made by separate commands (GP is slow: one process per
problem) are judged together with ``--from``:

    python benchmarks/sample_efficiency.py --from hpo.json gp_bnh.json --out all.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import functools
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import moocore
import numpy as np
import numpy.typing as npt
import optuna
from _report import (  # benchmarks/ is the script's directory
    print_table,
    rank_p_value,
    write_results,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # constrained_problems:TNK ... when imported from elsewhere

import constrained_problems  # noqa: E402

from hpo.objectives import Objective, TrialContext, resolve_objective  # noqa: E402
from hpo.spec import StudySpec, build_spec, load_spec  # noqa: E402
from hpo.trials import ask, trial_seed  # noqa: E402

Points = npt.NDArray[np.float64]


def _hpo_sampler(spec: StudySpec, seed: int, name: str) -> optuna.samplers.BaseSampler:
    from hpo.samplers import create_sampler

    return create_sampler(dataclasses.replace(spec, seed=seed, sampler=name))


def _optuna_gp_faster(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    from hpo.samplers._gp_speedups import FasterGPSampler  # imports torch

    return FasterGPSampler(seed=seed)


HPO_SAMPLERS = {"hpo": "auto", "hpo-tpe": "tpe"}
"""hpo's samplers in this benchmark, by ``run.sampler``; every other one is a peer."""
SAMPLERS: dict[str, Callable[[StudySpec, int], optuna.samplers.BaseSampler]] = {
    **{label: functools.partial(_hpo_sampler, name=name) for label, name in HPO_SAMPLERS.items()},
    "tpe": lambda spec, seed: optuna.samplers.TPESampler(seed=seed),
    "nsga2": lambda spec, seed: optuna.samplers.NSGAIISampler(seed=seed),
    "gp": lambda spec, seed: optuna.samplers.GPSampler(seed=seed),
    "random": lambda spec, seed: optuna.samplers.RandomSampler(seed=seed),
    "gp-faster": _optuna_gp_faster,
}
"""``gp-faster``: Optuna's GP (defaults) through hpo's faster paths
(:mod:`hpo.samplers._gp_speedups`), so the same trials as ``gp`` in a fraction of the time
(with 2 workers and more GP spends most of a turn in Optuna's box decomposition): for GP's
hypervolumes; its sampler times are not Optuna's. Not run unless named."""
PROBLEMS = ("bnh", "tnk", "srn", "constr", "curves")
SCRATCH = Path(tempfile.gettempdir())
CURVES_FRONT = HERE / "results" / "curves_front.json"
"""The computed curves front (a minute or two on a busy machine), reused while the study
document it was computed for is unchanged."""


# -- problems ---------------------------------------------------------------------------------
def load_problem(name: str) -> StudySpec:
    """The study of a problem (``hpo.spec.StudySpec``)."""
    if name in constrained_problems.STUDIES:
        return build_spec(constrained_problems.STUDIES[name], name, "constrained_problems.py")
    if name == "curves":
        return load_spec("curves", [("objective.args.noise", 0)])
    return load_spec(name)


def true_front(name: str, spec: StudySpec) -> Points:
    """The problem's Pareto front, minimized coordinates (see the module docstring)."""
    if name == "bnh":
        from objectives.bnh import pareto_front

        return pareto_front(2000)
    if name == "curves":
        key = json.dumps(spec.raw, sort_keys=True, default=str)
        if CURVES_FRONT.exists() and json.loads(CURVES_FRONT.read_text())["study"] == key:
            return np.array(json.loads(CURVES_FRONT.read_text())["front"])
        front = curves_front(spec)
        CURVES_FRONT.parent.mkdir(parents=True, exist_ok=True)
        CURVES_FRONT.write_text(json.dumps({"study": key, "front": front.tolist()}))
        return front
    cls = resolve_objective(spec.objective)
    return np.asarray(cls.pareto_front())  # type: ignore[attr-defined]


def curves_front(spec: StudySpec) -> Points:
    """Best feasible noise-free (-exact, num_params) per (n_layers, hidden_size)."""
    from scipy.optimize import minimize

    from objectives.curves import capacity, resolve_params

    objective = make_objective(spec)
    dists: dict[str, Any] = {p.name: p.distribution for p in spec.parameters}
    floats = [n for n, d in dists.items() if isinstance(d, optuna.distributions.FloatDistribution)]
    low, high = (np.array([_unit(dists[n], getattr(dists[n], end)) for n in floats])
                 for end in ("low", "high"))
    rng = np.random.default_rng(0)
    points = []
    for n_layers in range(dists["n_layers"].low, dists["n_layers"].high + 1):
        for hidden in dists["hidden_size"].choices:
            fixed = {"n_layers": n_layers, "hidden_size": hidden}
            fixed["n_heads"] = max(
                (h for h in dists["n_heads"].choices if hidden % h == 0),
                key=lambda h, fixed=fixed: capacity(resolve_params({**fixed, "n_heads": h})))

            def loss(u: Points, fixed: dict[str, Any] = fixed) -> float:
                u = np.clip(u, low, high)
                params = {**fixed, **{n: _value(dists[n], x)
                                      for n, x in zip(floats, u, strict=True)}}
                metrics = evaluate(objective, spec, params, 0)
                if metrics is None or any(c.violation(metrics) > 0 for c in spec.constraints):
                    return 0.0
                return -metrics["exact"]

            best = min(rng.uniform(low, high, (64, len(floats))), key=loss)
            result = minimize(loss, best, method="Nelder-Mead", options={"maxfev": 400})
            if result.fun < 0:
                metrics = evaluate(objective, spec, fixed, 0)
                assert metrics is not None
                points.append((result.fun, metrics["num_params"]))
    return constrained_problems.nondominated(np.array(points))


def _unit(dist: Any, value: float) -> float:
    return math.log10(value) if dist.log else value


def _value(dist: Any, unit: float) -> float:
    return float(10**unit) if dist.log else float(unit)


# -- one run ----------------------------------------------------------------------------------
def make_objective(spec: StudySpec) -> Objective:
    return resolve_objective(spec.objective)(**spec.objective_args)


def evaluate(
    objective: Objective, spec: StudySpec, params: dict[str, Any], number: int
) -> dict[str, float] | None:
    """The final metrics of one trial; None if the objective rejects the configuration.
    (None of these objectives writes files: the trial and cache directories are scratch.)"""
    context = TrialContext(spec.name, number, trial_seed(spec.seed, number), 1.0, 0.0,
                           SCRATCH, SCRATCH)
    try:
        return {k: float(v) for k, v in objective.run(params, context, _ignore).items()}
    except ValueError:  # e.g. curves: hidden size not divisible by the number of heads
        return None


def _ignore(step: int, metrics: Any, *, last: bool = False) -> None:
    pass


class SimulatedClock(optuna.storages.InMemoryStorage):
    """In-memory storage whose trials end ``seconds`` after they start (their recorded
    times: what ``auto`` reads; the samplers themselves run in real time)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def set_trial_state_values(
        self, trial_id: int, state: optuna.trial.TrialState, values: Sequence[float] | None = None
    ) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state.is_finished():
            with self._lock:
                trial = copy.copy(self._get_trial(trial_id))
                assert trial.datetime_start is not None
                trial.datetime_complete = trial.datetime_start + timedelta(seconds=self.seconds)
                self._set_trial(trial_id, trial)
        return changed


def run_one(
    spec: StudySpec, sampler_name: str, seed: int, trials: int, trial_seconds: float = 5.0,
    pending: int = 1,
) -> dict[str, Any]:
    """One study: per trial its minimized objective values if feasible (else None) and the
    seconds its parameters took to draw. ``pending``: trials asked and not yet told when
    one is drawn, itself included (1: one at a time; 2: two workers; 3: two workers and
    the next trial asked ahead, as hpo does on Ray with a slow sampler); each is told, in
    turn, once that many are out."""
    spec = dataclasses.replace(spec, seed=seed, trials=trials)
    study = optuna.create_study(directions=spec.directions, storage=SimulatedClock(trial_seconds),
                                sampler=SAMPLERS[sampler_name](spec, seed))
    objective = make_objective(spec)
    feasible: list[list[float] | None] = []
    draw_s: list[float] = []
    out: collections.deque[tuple[optuna.Trial, dict[str, Any]]] = collections.deque()

    def run_and_tell(trial: optuna.Trial, params: dict[str, Any]) -> None:
        metrics = evaluate(objective, spec, params, trial.number)
        if metrics is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            feasible.append(None)
            return
        violations = [c.violation(metrics) for c in spec.constraints]
        for i, value in enumerate(violations):
            trial.set_constraint(str(i), value)
        values = [metrics[g.metric] for g in spec.goals]
        study.tell(trial, values)
        minimized = [g.minimized(v) for g, v in zip(spec.goals, values, strict=True)]
        feasible.append(minimized if all(v <= 0 for v in violations) else None)

    started = time.perf_counter()
    for _ in range(trials):
        tick = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # auto's choice, with the progress
            out.append(ask(study, spec))
        draw_s.append(time.perf_counter() - tick)
        if len(out) == pending:
            run_and_tell(*out.popleft())
    while out:
        run_and_tell(*out.popleft())
    return {"points": feasible, "draw_s": draw_s, "wall_s": time.perf_counter() - started}


def hypervolume(points: Sequence[Sequence[float] | None], ref: Points) -> float:
    """Hypervolume of the feasible points (None: infeasible) up to ``ref``."""
    array = np.array([p for p in points if p is not None], dtype=float).reshape(-1, len(ref))
    array = array[np.all(array < ref, axis=1)]
    return float(moocore.hypervolume(array, ref=ref)) if len(array) else 0.0


def reference(spec: StudySpec) -> Points:
    return np.array([g.minimized(g.ref) for g in spec.goals if g.ref is not None])


# -- the benchmark ----------------------------------------------------------------------------
def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name in args.problems:
        spec = load_problem(name)
        ref = reference(spec)
        tick = time.perf_counter()
        front_hv = hypervolume(list(true_front(name, spec)), ref)
        print(f"{name}: true front hypervolume {front_hv:.6g} ({time.perf_counter() - tick:.1f}"
              " s)", file=sys.stderr, flush=True)
        for sampler in args.samplers:
            for seed in args.seeds:
                run = run_one(spec, sampler, seed, args.trials, args.trial_seconds,
                              args.pending)
                draw_ms = [1000 * s for s in run["draw_s"]]
                rows.append({
                    "problem": name, "sampler": sampler, "seed": seed, "trials": args.trials,
                    "hv_fraction": {
                        str(b): round(hypervolume(run["points"][:b], ref) / front_hv, 4)
                        for b in args.budgets
                    },
                    "feasible": sum(p is not None for p in run["points"]),
                    "sampler_ms_mean": round(statistics.fmean(draw_ms), 2),
                    "sampler_ms_max": round(max(draw_ms), 1),
                    "sampler_ms_last50_mean": round(statistics.fmean(draw_ms[-50:]), 2),
                    "wall_s": round(run["wall_s"], 1),
                })
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], budgets: Sequence[int]) -> list[dict[str, Any]]:
    """Per problem, budget and sampler: median and worst hypervolume fraction over seeds."""
    table = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        for budget in budgets:
            for sampler in dict.fromkeys(r["sampler"] for r in rows):
                mine = [r for r in rows if r["problem"] == problem and r["sampler"] == sampler]
                if not mine:  # not run on this problem (GP on curves)
                    continue
                scores = [r["hv_fraction"][str(budget)] for r in mine]
                table.append({
                    "problem": problem, "budget": budget, "sampler": sampler,
                    "seeds": len(mine),
                    "hv_median": round(statistics.median(scores), 4),
                    "hv_worst": round(min(scores), 4),
                    "sampler_ms_mean": round(
                        statistics.fmean(r["sampler_ms_mean"] for r in mine), 1),
                    "sampler_ms_max": max(r["sampler_ms_max"] for r in mine),
                })
    return table


def targets(
    table: list[dict[str, Any]], runs: list[dict[str, Any]], mine: str = "hpo"
) -> dict[str, Any]:
    """Where ``mine`` has a lower median than the best peer, with the p-value of its seeds
    ranking that far below the peer's (:func:`rank_p_value`; ``beyond_seed_noise``: below
    0.05); its slowest draw and its sampler time per trial (mean over a run, on the problem
    where it is highest), each against the 250 ms (5% of a 5-second trial) the issue
    allows. The slowest draw of a GP sampler is its first GP turn, which imports torch,
    once per study."""

    def scores(sampler: str, problem: str, budget: int) -> list[float]:
        return [r["hv_fraction"][str(budget)] for r in runs
                if (r["sampler"], r["problem"]) == (sampler, problem)]

    rows = [r for r in table if r["sampler"] == mine]
    behind = []
    for row in rows:
        cell = (row["problem"], row["budget"])
        peers = [r for r in table if r["sampler"] not in HPO_SAMPLERS
                 and (r["problem"], r["budget"]) == cell]
        best = max(peers, key=lambda r: r["hv_median"], default=None)
        if best is not None and row["hv_median"] < best["hv_median"]:
            p = rank_p_value(scores(mine, *cell), scores(best["sampler"], *cell))
            behind.append({"problem": row["problem"], "budget": row["budget"],
                           "hpo": row["hv_median"], "best_peer": best["sampler"],
                           "best_peer_hv": best["hv_median"], "p": float(f"{p:.3g}"),
                           "beyond_seed_noise": p < 0.05})
    slowest = [r["sampler_ms_max"] for r in rows]
    per_trial = [r["sampler_ms_mean"] for r in rows]
    return {"matches_best_peer_everywhere": not behind, "behind": behind,
            "behind_beyond_seed_noise": sum(b["beyond_seed_noise"] for b in behind),
            "slowest_draw_ms": max(slowest, default=None),
            "draw_under_250ms": bool(slowest) and max(slowest) < 250,
            "ms_per_trial": max(per_trial, default=None),
            "per_trial_under_250ms": bool(per_trial) and max(per_trial) < 250}


_FILTERS = (("problems", "problem"), ("samplers", "sampler"), ("seeds", "seed"))


def _runs_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs of ``--from``'s files, of the problems, samplers and seeds asked for."""
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    for source in args.sources:
        for run in json.loads(Path(source).read_text())["runs"]:
            if all(not getattr(args, key) or run[field] in getattr(args, key)
                   for key, field in _FILTERS):
                missing = [b for b in args.budgets if str(b) not in run["hv_fraction"]]
                if missing:
                    sys.exit(f"{source}: a run of {run['problem']} has no score at "
                             f"{missing[0]} trials (--budgets)")
                runs[run["problem"], run["sampler"], run["seed"]] = run
    if not runs:
        sys.exit(f"no runs to judge in {', '.join(args.sources)}")
    return list(runs.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", choices=PROBLEMS,
                        help="default: all (with --from: all in the files)")
    parser.add_argument("--samplers", nargs="+", choices=list(SAMPLERS),
                        help="default: all but gp-faster (with --from: all in the files)")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="default: 0 1 2 3 4 (with --from: all in the files)")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--trial-seconds", type=float, default=5.0,
                        help="simulated duration of every trial (default 5)")
    parser.add_argument("--pending", type=int, default=1,
                        help="trials out when one is drawn, itself included: 1 (default) one "
                        "at a time, 2 two workers, 3 two workers and one asked ahead")
    parser.add_argument("--out", help="JSON file (default: benchmarks/results/"
                        "sample_efficiency.json)")
    parser.add_argument("--from", dest="sources", nargs="+", metavar="JSON",
                        help="run nothing: judge the runs of these result files together "
                        "(of the given problems and samplers; a later file's run of the same "
                        "problem, sampler and seed replaces an earlier one's)")
    args = parser.parse_args(argv)
    if max(args.budgets) > args.trials:
        parser.error(f"--budgets go up to --trials ({args.trials})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if args.sources:
        rows = _runs_of(args)
    else:
        args.problems = args.problems or list(PROBLEMS)
        args.samplers = args.samplers or [s for s in SAMPLERS if s != "gp-faster"]
        args.seeds = args.seeds or [0, 1, 2, 3, 4]
        rows = measure(args)
    table = summarize(rows, args.budgets)
    print_table(table)
    samplers = {r["sampler"] for r in rows}
    goals = {mine: targets(table, rows, mine) for mine in HPO_SAMPLERS if mine in samplers}
    for mine, goal in goals.items():
        behind = ", ".join(f"{b['problem']} at {b['budget']} (p={b['p']:.2g})"
                           for b in goal["behind"])
        print(f"\n{mine} matches the best peer everywhere: "
              f"{goal['matches_best_peer_everywhere']}"
              + (f"; behind in {behind}: {goal['behind_beyond_seed_noise']} of them beyond "
                 "seed noise (p < 0.05)" if behind else "")
              + f"; slowest draw {goal['slowest_draw_ms']} ms;"
              f" per trial at most {goal['ms_per_trial']} ms")
    write_results(Path(args.out or HERE / "results" / "sample_efficiency.json"),
                  {"runs": rows, "summary": table, "targets": goals})
    return 0


if __name__ == "__main__":
    sys.exit(main())
