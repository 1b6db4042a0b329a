"""Unit tests of the bundled objectives: simulated QA curves and Binh-Korn (no Ray, no storage)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hpo.objectives import TrialContext
from objectives import bnh
from objectives.bnh import BinhKornObjective, pareto_front
from objectives.curves import CurvesObjective, collapses

SEARCH_SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
PERCENT = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")
GOOD = {"learning_rate": 1.5e-4, "n_layers": 6, "hidden_size": 768, "alpha_ce": 0.6}
COLLAPSING = [
    {"learning_rate": 5e-3},
    {"learning_rate": 1e-4, "qa_dropout": 0.48},
    {"learning_rate": 3e-6, "n_layers": 1, "hidden_size": 128, "n_heads": 2},
]


class Recorder:
    """A reporter that keeps every (step, metrics) it is given, and which one was last."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []
        self.lasts: list[bool] = []

    def __call__(self, step: int, metrics: Mapping[str, float], *, last: bool = False) -> None:
        self.calls.append((step, dict(metrics)))
        self.lasts.append(last)


def context(tmp_path: Path, seed: int = 0) -> TrialContext:
    return TrialContext(study_name="t", number=0, seed=seed, cpus=1, gpus=0, output_dir=tmp_path,
                        cache_dir=tmp_path)


def run_curves(
    tmp_path: Path, params: Mapping[str, Any], seed: int = 0, **args: Any
) -> tuple[dict[str, float], list[tuple[int, dict[str, float]]]]:
    recorder = Recorder()
    final = CurvesObjective(**args).run(params, context(tmp_path, seed), recorder)
    return dict(final), recorder.calls


def test_curves_same_seed_same_curves_other_seed_other_curves(tmp_path: Path) -> None:
    _, first = run_curves(tmp_path, GOOD, seed=3)
    _, again = run_curves(tmp_path, GOOD, seed=3)
    _, other = run_curves(tmp_path, GOOD, seed=4)
    assert first == again
    assert first != other
    assert abs(first[-1][1]["exact"] - other[-1][1]["exact"]) < 5  # noise, not a new model


def test_curves_reports_every_step_with_every_metric(tmp_path: Path) -> None:
    final, calls = run_curves(tmp_path, GOOD, steps=7)
    assert [step for step, _ in calls] == list(range(1, 8))
    for _, metrics in calls:
        assert set(metrics) == set(CurvesObjective.metrics)
        assert all(math.isfinite(value) for value in metrics.values())
        assert all(0 <= metrics[name] <= 100 for name in PERCENT)
        assert metrics["f1"] >= metrics["exact"] - 1e-9
    assert final == calls[-1][1]
    assert calls[-1][1]["train_loss"] < calls[0][1]["train_loss"]
    assert calls[-1][1]["exact"] > calls[0][1]["exact"] + 20


def test_curves_and_bnh_flag_their_last_report(tmp_path: Path) -> None:
    """The report at the end of training says so: no early-stopping rule acts on it."""
    curves, bnh = Recorder(), Recorder()
    CurvesObjective(steps=4).run(GOOD, context(tmp_path), curves)
    BinhKornObjective().run({"x": 1.0, "y": 1.0}, context(tmp_path), bnh)
    assert curves.lasts == [False, False, False, True]
    assert bnh.lasts == [True]


def test_curves_uses_defaults_for_parameters_not_searched(tmp_path: Path) -> None:
    final, _ = run_curves(tmp_path, {"learning_rate": 1e-4})
    assert final["num_params"] == pytest.approx(66.4e6, rel=0.01)  # a DistilBERT-sized 6 x 768


def test_good_config_beats_the_always_no_answer_baseline(tmp_path: Path) -> None:
    for seed in range(5):
        final, _ = run_curves(tmp_path, GOOD, seed=seed)
        assert final["exact"] > 100 * 0.5007 + 5
        assert final["HasAns_exact"] > 30
        assert 60 < final["exact"] < 80


@pytest.mark.parametrize("params", COLLAPSING)
def test_collapsed_runs_fall_into_the_no_answer_cluster_early(
    tmp_path: Path, params: dict[str, Any]
) -> None:
    assert collapses(params)
    final, calls = run_curves(tmp_path, params)
    for metrics in (final, calls[2][1]):  # already collapsed at the third report
        assert metrics["HasAns_exact"] < 1
        assert metrics["NoAns_exact"] > 99
        assert abs(metrics["exact"] - 50.07) < 1
    assert final["exact"] < 50.5  # infeasible under "exact >= 50.5"


def test_collapsed_exact_is_the_share_of_unanswerable_questions(tmp_path: Path) -> None:
    final, _ = run_curves(tmp_path, COLLAPSING[0], noans_fraction=0.3)
    assert final["exact"] == pytest.approx(30, abs=0.5)
    assert final["f1"] == pytest.approx(30, abs=0.5)


def test_collapse_rule_covers_a_minority_of_the_search_space() -> None:
    rng = np.random.default_rng(0)
    draws = [
        {
            "learning_rate": float(10 ** rng.uniform(-6, -2)),
            "n_layers": int(rng.integers(1, 13)),
            "hidden_size": int(rng.choice([128, 256, 384, 512, 768])),
            "qa_dropout": float(rng.uniform(0, 0.5)),
        }
        for _ in range(2000)
    ]
    share = np.mean([collapses(params) for params in draws])
    assert 0.15 < share < 0.3
    assert not collapses(GOOD) and not collapses({})


def test_noans_featurization_bug_never_predicts_no_answer(tmp_path: Path) -> None:
    for params in [GOOD, COLLAPSING[0], {"learning_rate": 1e-6}]:
        _, calls = run_curves(tmp_path, params, noans_featurization_bug=True)
        assert all(metrics["NoAns_exact"] < 1 for _, metrics in calls)
        assert all(metrics["exact"] < 50.5 for _, metrics in calls)
    final, _ = run_curves(tmp_path, GOOD, noans_featurization_bug=True)
    healthy, _ = run_curves(tmp_path, GOOD)
    assert final["HasAns_exact"] == pytest.approx(healthy["HasAns_exact"], abs=5)


def test_hidden_size_not_divisible_by_heads_fails_the_trial(tmp_path: Path) -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="hidden size 256 is not divisible by 12 attention heads"):
        CurvesObjective().run({"hidden_size": 256, "n_heads": 12}, context(tmp_path), recorder)
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"step_seconds": -1.0}, "step_seconds"),
        ({"noise": -0.1}, "noise"),
        ({"noise": math.nan}, "noise"),
        ({"noans_fraction": 0.0}, "noans_fraction"),
        ({"noans_fraction": 1.0}, "noans_fraction"),
        ({"noans_featurization_bug": "yes"}, "noans_featurization_bug"),
    ],
)
def test_bad_fixed_arguments_are_rejected(args: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CurvesObjective(**args)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_layers": 2.5}, "n_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"alpha_ce": 1.5}, "alpha_ce"),
        ({"temperature": "hot"}, "temperature"),
        ({"batch_size": 32}, "batch_size"),
    ],
)
def test_bad_parameters_are_rejected(tmp_path: Path, params: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CurvesObjective().run(params, context(tmp_path), Recorder())


def test_bigger_models_have_more_parameters_and_latency(tmp_path: Path) -> None:
    sizes = [(2, 128, 2), (4, 256, 4), (6, 384, 12), (6, 768, 12), (12, 768, 12)]
    finals = [
        run_curves(tmp_path, {"n_layers": n, "hidden_size": h, "n_heads": a})[0]
        for n, h, a in sizes
    ]
    params = [final["num_params"] for final in finals]
    latencies = [final["latency_ms"] for final in finals]
    assert params == sorted(params) and len(set(params)) == len(params)
    assert latencies == sorted(latencies)
    assert latencies[0] < 5 and 20 < latencies[-1] < 40


def test_curves_is_fast_and_sleeps_when_asked(tmp_path: Path) -> None:
    start = time.perf_counter()
    run_curves(tmp_path, GOOD, steps=500)
    assert time.perf_counter() - start < 0.5  # well under a millisecond per step
    start = time.perf_counter()
    run_curves(tmp_path, GOOD, steps=3, step_seconds=0.02)
    assert time.perf_counter() - start >= 0.06


def test_bnh_values_at_known_points(tmp_path: Path) -> None:
    recorder = Recorder()
    final = BinhKornObjective().run({"x": 0.0, "y": 0.0}, context(tmp_path), recorder)
    assert dict(final) == {"f1": 0.0, "f2": 50.0, "c1": 25.0, "c2": 73.0}
    assert recorder.calls == [(0, dict(final))]
    corner = BinhKornObjective().run({"x": 5, "y": 3}, context(tmp_path), Recorder())
    assert dict(corner) == {"f1": 136.0, "f2": 4.0, "c1": 9.0, "c2": 45.0}


@pytest.mark.parametrize("params", [{"x": 5.5, "y": 1.0}, {"x": 1.0, "y": -0.1}, {"x": 1.0}])
def test_bnh_rejects_points_outside_the_box(tmp_path: Path, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BinhKornObjective().run(params, context(tmp_path), Recorder())


def test_bnh_pareto_front_is_feasible_and_non_dominated() -> None:
    front = pareto_front(300)
    assert front.shape == (300, 2)
    x = np.linspace(0, 5, 300)
    y = np.minimum(x, 3)
    assert np.all((x - 5) ** 2 + y**2 <= 25 + 1e-9) and np.all((x - 8) ** 2 + (y + 3) ** 2 >= 7.7)
    dominated = (front[:, None, :] <= front[None, :, :]).all(-1) & (
        front[:, None, :] < front[None, :, :]
    ).any(-1)
    assert not dominated.any()
    assert np.all(front <= np.array(bnh.REFERENCE_POINT))
    assert pareto_front().shape == (1000, 2)
    # No random feasible point dominates the front.
    rng = np.random.default_rng(0)
    points = [bnh.evaluate(rng.uniform(0, 5), rng.uniform(0, 3)) for _ in range(2000)]
    for p in filter(bnh.is_feasible, points):
        assert not np.any((front[:, 0] > p["f1"] + 1e-9) & (front[:, 1] > p["f2"] + 1e-9))


@pytest.mark.parametrize(
    ("file", "cls"), [("curves.yaml", CurvesObjective), ("bnh.yaml", BinhKornObjective)]
)
def test_study_files_name_only_what_the_objective_knows(file: str, cls: type[Any]) -> None:
    spec = yaml.safe_load((SEARCH_SPACES / file).read_text())
    cls(**spec["objective"]["args"])
    assert set(spec["parameters"]) <= set(cls.parameters)
    for objective in spec["objectives"]:
        assert objective["metric"] in cls.metrics
        assert isinstance(objective["ref"], int | float)
    for constraint in spec["constraints"]:
        assert constraint.split()[0] in cls.metrics
