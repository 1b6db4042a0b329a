"""benchmarks/sample_efficiency.py: the problems' known fronts and the benchmark's output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import constrained_problems  # noqa: E402
import sample_efficiency as bench  # noqa: E402
from _report import rank_p_value  # noqa: E402

from hpo.provenance import cpu  # noqa: E402
from hpo.spec import StudySpec  # noqa: E402
from objectives.bnh import BOUNDS, pareto_front  # noqa: E402

CLASSIC = ("bnh", "tnk", "srn", "constr")
TOLERANCE = 1e-9
"""Pareto-optimal points lie on constraint boundaries: allow rounding there."""


def pareto_params(problem: str, n: int = 300) -> list[dict[str, float]]:
    """Pareto-optimal decision vectors of a classic problem, from its own definition."""
    if problem == "bnh":  # x = y in [0, 3], then y = 3 for x in [3, 5] (Binh and Korn)
        x = np.linspace(0.0, BOUNDS["x"][1], n)
        return [{"x": float(a), "y": float(min(a, 3.0))} for a in x]
    cls = bench.resolve_objective(bench.load_problem(problem).objective)
    x1, x2 = cls.pareto_set(n)  # type: ignore[attr-defined]
    return [{"x1": float(a), "x2": float(b)} for a, b in zip(x1, x2, strict=True)]


@pytest.mark.parametrize("problem", CLASSIC)
def test_known_optimal_points_are_feasible_and_score_one(problem: str) -> None:
    spec = bench.load_problem(problem)
    objective, ref = bench.make_objective(spec), bench.reference(spec)
    front_hv = bench.hypervolume(list(bench.true_front(problem, spec)), ref)
    points = []
    for params in pareto_params(problem):
        metrics = bench.evaluate(objective, spec, params, 0)
        assert metrics is not None
        assert all(c.violation(metrics) <= TOLERANCE for c in spec.constraints), (params, metrics)
        points.append([g.minimized(metrics[g.metric]) for g in spec.goals])
    # 300 optimal points cover the front up to the gaps between them
    assert bench.hypervolume(points, ref) / front_hv == pytest.approx(1.0, abs=0.01)
    assert bench.hypervolume(points, ref) <= front_hv * (1 + 1e-6)
    worse = np.array(points) + 0.05 * (np.max(points, axis=0) - np.min(points, axis=0))
    assert bench.hypervolume(list(worse), ref) / front_hv < 0.97


def test_true_fronts_are_not_beaten_by_a_random_sample() -> None:
    rng = np.random.default_rng(0)
    for problem in ("tnk", "srn", "constr"):
        spec = bench.load_problem(problem)
        ref = bench.reference(spec)
        low, high = ([getattr(p.distribution, end) for p in spec.parameters]
                     for end in ("low", "high"))
        x1, x2 = rng.uniform(low, high, (20_000, 2)).T
        cls = getattr(constrained_problems, spec.objective.split(":")[1])
        m = cls.evaluate(x1, x2)
        ok = np.all([[c.violation({k: v[i] for k, v in m.items()}) <= 0
                      for c in spec.constraints] for i in range(len(x1))], axis=1)
        sample = np.column_stack((m["f1"], m["f2"]))[ok]
        front = bench.true_front(problem, spec)
        both = bench.hypervolume(list(np.vstack((front, sample))), ref)
        assert both / bench.hypervolume(list(front), ref) < 1 + 1e-4, problem


def test_bnh_front_is_the_objective_s_own() -> None:
    spec = bench.load_problem("bnh")
    assert np.array_equal(bench.true_front("bnh", spec), pareto_front(2000))


def test_tiny_run_writes_the_table_as_json(tmp_path: Path) -> None:
    out = tmp_path / "se.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sample_efficiency.py"), "--problems",
         "bnh", "--samplers", "hpo", "random", "--seeds", "0", "1", "--trials", "12",
         "--budgets", "6", "12", "--out", str(out)],
        check=True, cwd=tmp_path, timeout=300, capture_output=True,
    )
    result = json.loads(out.read_text())
    assert {(r["sampler"], r["seed"]) for r in result["runs"]} == {
        ("hpo", 0), ("hpo", 1), ("random", 0), ("random", 1)}
    for run in result["runs"]:
        six, twelve = run["hv_fraction"]["6"], run["hv_fraction"]["12"]
        assert 0 <= six <= twelve <= 1  # budgets are prefixes of one run
        assert 0 <= run["sampler_ms_mean"] <= run["sampler_ms_max"]
    assert [(r["budget"], r["sampler"]) for r in result["summary"]] == [
        (6, "hpo"), (6, "random"), (12, "hpo"), (12, "random")]
    for row in result["summary"]:
        assert row["seeds"] == 2 and row["hv_worst"] <= row["hv_median"]
    assert set(result["targets"]) == {"hpo"}  # hpo-tpe did not run
    assert set(result["targets"]["hpo"]) >= {
        "matches_best_peer_everywhere", "draw_under_250ms", "per_trial_under_250ms"}
    # the machine, CPU included: a result is only comparable with one from the same kind
    assert result["machine"]["cpu"] == cpu() and "--problems bnh" in result["command"]


@pytest.mark.parametrize("pending", [1, 3])
def test_pending_trials_are_drawn_while_that_many_run(
    pending: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_at_draw: list[int] = []
    draw = bench.ask

    def ask(study: optuna.Study, spec: StudySpec) -> tuple[optuna.Trial, dict[str, Any]]:
        running_at_draw.append(len(study.get_trials(states=(TrialState.RUNNING,))))
        return draw(study, spec)

    monkeypatch.setattr(bench, "ask", ask)
    run = bench.run_one(bench.load_problem("bnh"), "random", 0, 8, pending=pending)
    assert running_at_draw == [min(n, pending - 1) for n in range(8)]
    assert len(run["points"]) == 8  # every trial told, the last ones after the loop


def test_gp_faster_draws_optuna_s_gp_trials() -> None:
    """The label that makes GP's 7.2 runs affordable must not change what GP draws."""
    spec = bench.load_problem("bnh")
    runs = [bench.run_one(spec, name, 3, 13, pending=2) for name in ("gp", "gp-faster")]
    assert runs[0]["points"] == runs[1]["points"]


def test_targets_name_where_hpo_is_behind_and_whether_beyond_seed_noise() -> None:
    scores = {"hpo-tpe": [0.7, 0.8, 0.85], "gp": [0.88, 0.9, 0.95], "random": [0.5] * 3,
              "hpo": [0.96, 0.97, 0.98]}
    ms = {"hpo-tpe": (30, 2), "gp": (900, 700), "random": (1, 1), "hpo": (1500, 120)}
    runs = [{"problem": "p", "sampler": sampler, "seed": seed,
             "hv_fraction": {"50": hv, "100": 0.95 if sampler != "hpo" else 0.99},
             "sampler_ms_max": ms[sampler][0], "sampler_ms_mean": ms[sampler][1]}
            for sampler, values in scores.items() for seed, hv in enumerate(values)]
    runs.append({**runs[0], "problem": "q", "hv_fraction": {"50": 0.9, "100": 0.9}})  # not p's
    table = [row for row in bench.summarize(runs, [50, 100]) if row["problem"] == "p"]
    tpe = bench.targets(table, runs, "hpo-tpe")  # hpo's other sampler is not its peer
    # every hpo-tpe seed below every gp seed: p = 1 / C(6, 3), the least 3 seeds each allow
    assert tpe["behind"] == [{"problem": "p", "budget": 50, "hpo": 0.8, "best_peer": "gp",
                              "best_peer_hv": 0.9, "p": 0.05, "beyond_seed_noise": False}]
    assert not tpe["matches_best_peer_everywhere"] and tpe["behind_beyond_seed_noise"] == 0
    assert tpe["slowest_draw_ms"] == 30 and tpe["draw_under_250ms"]
    auto = bench.targets(table, runs)
    assert auto["matches_best_peer_everywhere"] and not auto["draw_under_250ms"]
    # its first GP turn imports torch; per trial it stays inside the budget
    assert auto["ms_per_trial"] == 120 and auto["per_trial_under_250ms"]
    assert not bench.targets([{**table[-1], "sampler_ms_mean": 300}], runs)[
        "per_trial_under_250ms"]


@pytest.mark.parametrize(("mine", "theirs", "expected"), [
    ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 1 / 252),  # all below: 1 of C(10, 5) splits
    ([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], 1.0),
    ([1, 1, 1], [1, 1, 1], 1.0),  # all tied: no evidence either way
    ([1, 3, 5, 7, 9], [2, 4, 6, 8, 10], 87 / 252),
    ([0.5, 0.5, 0.7], [0.7, 0.9], 2 / 10),  # ties at mid-rank, by enumerating the splits
])
def test_rank_p_value_is_the_exact_rank_sum_test(
    mine: list[float], theirs: list[float], expected: float
) -> None:
    assert rank_p_value(mine, theirs) == pytest.approx(expected)
