"""hpo.samplers: what ``auto`` builds for single-, multi-objective and conditional studies."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest
import yaml

from hpo.samplers import (
    ATTR_SAMPLER_ERROR,
    SAMPLERS,
    create_sampler,
    good_trials,
    is_slow,
    tpe_options,
)
from hpo.spec import StudySpec, build_spec, load_spec
from hpo.trials import ask

ROOT = Path(__file__).resolve().parents[1]


def single_objective_bnh() -> StudySpec:
    document = yaml.safe_load((ROOT / "search_spaces" / "bnh.yaml").read_text())
    document["objectives"] = document["objectives"][:1]
    return build_spec(document, "bnh1", "bnh1.yaml")


def test_good_set_is_the_best_15_percent_rounded_up() -> None:
    assert [good_trials(n) for n in (1, 10, 20, 100, 200)] == [1, 2, 3, 15, 30]


def test_multi_objective_auto_is_tuned_tpe_and_single_objective_keeps_defaults() -> None:
    multi = tpe_options(load_spec("bnh"))
    assert multi == {"multivariate": True, "group": False, "constant_liar": True,
                     "n_startup_trials": 10, "gamma": good_trials, "n_ei_candidates": 12}
    assert tpe_options(single_objective_bnh()) == {
        "multivariate": True, "group": False, "constant_liar": True, "n_startup_trials": 10}


def test_conditional_spaces_are_grouped() -> None:
    distill = tpe_options(load_spec("distill-squad"))
    assert distill["group"] is True
    assert distill["n_startup_trials"] == 20  # run.startup_trials: every student kind tried


def test_auto_runs_a_constrained_study_without_optuna_warnings() -> None:
    spec = dataclasses.replace(load_spec("bnh"), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = create_sampler(spec)
        study = optuna.create_study(directions=spec.directions, sampler=sampler)
        for _ in range(14):  # 10 random start-up trials, then TPE with the good set
            trial, params = ask(study, spec)
            x, y = params["x"], params["y"]
            trial.set_constraint("0", (x - 5) ** 2 + y**2 - 25)
            study.tell(trial, [4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2])
    assert sampler.sampler._chosen is sampler.sampler._tpe  # type: ignore[attr-defined]
    assert len(study.trials) == 14
    assert len({tuple(t.params.values()) for t in study.trials}) == 14


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_named_samplers_are_still_optuna_s(name: str) -> None:
    spec = dataclasses.replace(load_spec("bnh"), sampler=name)
    assert isinstance(create_sampler(spec).sampler, {
        "tpe": optuna.samplers.TPESampler, "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler}[name])


def test_single_objective_tpe_is_optuna_s_own() -> None:
    # Multi-objective TPE ranks stopped trials itself (hpo.samplers._pruned).
    assert type(create_sampler(single_objective_bnh()).sampler) is optuna.samplers.TPESampler
    tpe = create_sampler(dataclasses.replace(load_spec("bnh"), sampler="tpe")).sampler
    assert type(tpe).__name__ == "PrunedAwareTPESampler"


@pytest.mark.parametrize(("sampler", "slow"), [
    ("tpe", False), ("nsga2", False), ("random", False), ("gp", True), ("gp-tpe", True)])
def test_gp_samplers_are_slow_the_others_not(sampler: str, slow: bool) -> None:
    """Slow: on Ray the driver asks for the next trial ahead of a free worker."""
    assert is_slow(create_sampler(load_spec("bnh", [("run.sampler", sampler)]))) is slow


def test_gp_tpe_gives_gp_every_other_turn_then_three_in_four() -> None:
    spec = dataclasses.replace(load_spec("bnh"), sampler="gp-tpe", seed=1)
    sampler = create_sampler(spec).sampler
    proposed_by: dict[int, str] = {}

    def record(name: str, inner: optuna.samplers.BaseSampler) -> None:
        sample_relative = inner.sample_relative

        def recording(study: Any, trial: Any, space: Any) -> dict[str, Any]:
            proposed_by[trial.number] = name
            return sample_relative(study, trial, space)

        inner.sample_relative = recording  # type: ignore[method-assign]

    record("gp", sampler._gp)  # type: ignore[attr-defined]
    record("tpe", sampler._tpe)  # type: ignore[attr-defined]
    study = optuna.create_study(directions=spec.directions, sampler=sampler)
    for _ in range(15):
        trial, params = ask(study, spec)
        x, y = params["x"], params["y"]
        trial.set_constraint("0", (x - 5) ** 2 + y**2 - 25)
        trial.set_constraint("1", 7.7 - (x - 8) ** 2 - (y + 3) ** 2)
        study.tell(trial, [4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2])
    # 10 random start-up trials (TPE's), then GP and TPE by turns
    assert [n for n, name in sorted(proposed_by.items()) if name == "gp"] == [10, 12, 14]
    assert [n for n, name in sorted(proposed_by.items()) if name == "tpe"][-2:] == [11, 13]
    assert len({tuple(t.params.values()) for t in study.trials}) == 15
    # from trial 50 on, GP three of every four (the turns above, without running 60 trials)
    turn, gp = sampler._turn, sampler._gp  # type: ignore[attr-defined]
    turns = "".join("G" if turn(SimpleNamespace(number=n)) is gp else "t" for n in range(8, 62))
    assert turns == "tt" + "Gt" * 20 + "GGGt" * 3


@pytest.mark.parametrize(("name", "trials", "is_gp_turn", "gp_turns"), [
    ("gp-tpe", 40, lambda number: number % 2 == 0, 15),  # 13 fail without the imputation
    ("gp", 20, lambda number: True, 10),  # 8 fail without the imputation
])
def test_hpo_s_gp_does_not_propose_again_where_trials_failed(
    name: str, trials: int, is_gp_turn: Callable[[int], bool], gp_turns: int
) -> None:
    """Optuna's GP ignores FAILED trials: left alone, it proposes again and again the
    combinations it knows least about, here those that always fail (curves' hidden sizes
    that its head counts do not divide)."""
    spec = dataclasses.replace(load_spec("curves"), sampler=name, seed=1)
    study = optuna.create_study(directions=spec.directions, sampler=create_sampler(spec))
    for _ in range(trials):
        trial, params = ask(study, spec)
        if params["hidden_size"] % params["n_heads"]:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        exact = 80 - 8 * abs(math.log10(params["learning_rate"]) + 3.5) - 10 * params["dropout"]
        size = params["n_layers"] * params["hidden_size"] ** 2 * 12
        trial.set_constraint("0", 50.5 - exact)
        trial.set_constraint("1", 5 - exact / 2)
        study.tell(trial, [exact, size])
    turns = [t for t in study.trials if t.number >= 10 and is_gp_turn(t.number)]
    failed = [t.number for t in turns if t.state == optuna.trial.TrialState.FAIL]
    assert len(turns) == gp_turns and len(failed) <= 2, failed


def test_gp_tpe_leaves_out_failed_trials_of_another_branch() -> None:
    """GP models the parameters every COMPLETE trial has: a failed trial in another branch
    of a conditional space lacks one, and imputing it made GP's turn raise KeyError."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from hpo.samplers._gp_tpe import GPTPESampler

    sampler = GPTPESampler(optuna.samplers.TPESampler(seed=0), seed=0, startup_trials=10)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    x, width = FloatDistribution(0, 1), FloatDistribution(0, 1)
    branch = CategoricalDistribution(["wide", "narrow"])
    for i in range(13):
        params = {"x": i / 13, "branch": "wide", "width": (i * 7 % 13) / 13}
        study.add_trial(optuna.trial.create_trial(
            params=params, values=[params["x"], 1 - params["width"]],
            distributions={"x": x, "branch": branch, "width": width}))
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.5, "branch": "narrow"}, distributions={"x": x, "branch": branch},
        state=optuna.trial.TrialState.FAIL))
    trial = study.ask()  # trial 14: GP's turn
    assert sampler._turn(study.trials[-1]) is sampler._gp
    assert 0 <= trial.suggest_float("x", 0, 1) <= 1
    proposed = study._storage.get_trial(trial._trial_id).system_attrs
    assert any(key.startswith("gp:relative_params") for key in proposed)  # GP's, not TPE's


def test_gp_tpe_s_acquisition_settings_are_optuna_s_attributes() -> None:
    """They are private to Optuna's GPSampler: setting a renamed one would change nothing."""
    from hpo.samplers._gp_tpe import GP_SEARCH

    defaults = optuna.samplers.GPSampler()
    assert all(isinstance(getattr(defaults, name), int) for name in GP_SEARCH)
    sampler = create_sampler(dataclasses.replace(load_spec("bnh"), sampler="gp-tpe")).sampler
    assert {name: getattr(sampler._gp, name) for name in GP_SEARCH} == GP_SEARCH  # type: ignore[attr-defined]


def test_two_objective_boxes_are_optuna_s_in_the_same_order() -> None:
    """hpo's GP decomposes two-objective fronts itself (Optuna's Python loop took half of a
    GP turn with trials running); the boxes must be Optuna's exactly, or the acquisition
    function changes. Fronts with ties and duplicates, dense fronts, single points."""
    from hpo.samplers._gp_speedups import OPTUNA_BOX_BOUNDS, two_objective_box_bounds

    rng = np.random.default_rng(0)
    cases = [np.array([[1.0, 2.0]]), np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 3.0]])]
    for i in range(300):
        n = int(rng.integers(1, 120))
        if i % 3 == 0:
            cases.append(rng.integers(0, 8, size=(n, 2)).astype(float))  # ties, duplicates
        elif i % 3 == 1:
            x = rng.uniform(size=n)  # nearly every point on the front
            cases.append(np.c_[x, 1 - x + 0.01 * rng.normal(size=n)])
        else:
            cases.append(rng.normal(size=(n, 2)))
    for points in cases:
        ref = points.max(axis=0) + 0.5
        lower, upper = two_objective_box_bounds(points, ref)
        expected_lower, expected_upper = OPTUNA_BOX_BOUNDS(points, ref)
        assert np.array_equal(lower, expected_lower) and np.array_equal(upper, expected_upper)
    three = rng.normal(size=(20, 3))  # more objectives: Optuna's own
    for mine, optunas in zip(two_objective_box_bounds(three, three.max(axis=0) + 1),
                             OPTUNA_BOX_BOUNDS(three, three.max(axis=0) + 1), strict=True):
        assert np.array_equal(mine, optunas)


def _bnh_proposal(
    sampler: optuna.samplers.BaseSampler, running: list[tuple[float, float]]
) -> tuple[float, float]:
    """What ``sampler`` proposes on a constrained two-objective problem (bnh's objectives
    and first constraint) after 12 finished random trials, with ``running`` ones."""
    from optuna.distributions import FloatDistribution

    space = {"x": FloatDistribution(0, 5), "y": FloatDistribution(0, 3)}
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for x, y in np.random.default_rng(1).uniform((0, 0), (5, 3), size=(12, 2)):
        study.add_trial(optuna.trial.create_trial(
            params={"x": x, "y": y}, distributions=space,
            values=[4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2],
            constraints={"0": (x - 5) ** 2 + y**2 - 25}))
    for x, y in running:
        study.add_trial(optuna.trial.create_trial(
            params={"x": x, "y": y}, distributions=space, state=optuna.trial.TrialState.RUNNING))
    trial = study.ask()
    return trial.suggest_float("x", 0, 5), trial.suggest_float("y", 0, 3)


@pytest.mark.parametrize("running", [[], [(1.0, 1.0), (4.0, 2.5)]])
def test_faster_gp_proposes_what_optuna_s_gp_does(running: list[tuple[float, float]]) -> None:
    """hpo's GP turns take two faster paths through Optuna's (hpo.samplers._gp_speedups):
    the proposals must be Optuna's, with trials running (batch acquisition: one box
    decomposition per QMC sample) and without; and Optuna's GPSampler gets its own
    internals back after the turn."""
    import optuna._gp.acqf as optuna_acqf
    import optuna.samplers._gp.sampler as optuna_gp_sampler

    from hpo.samplers._gp_speedups import OPTUNA_BOX_BOUNDS, OPTUNA_TORCH, FasterGPSampler

    faster = _bnh_proposal(FasterGPSampler(seed=3), running)
    assert optuna_acqf.get_non_dominated_box_bounds is OPTUNA_BOX_BOUNDS
    assert optuna_gp_sampler.torch is OPTUNA_TORCH
    assert faster == _bnh_proposal(optuna.samplers.GPSampler(seed=3), running)


def test_hpo_s_gp_believes_running_trials_predicted_feasible() -> None:
    """With trials running, hpo's GP takes each to end at its models' predicted means
    (hpo.samplers._gp): one predicted to meet the constraint joins the front, so the next
    proposal goes elsewhere, not on top of it; one predicted to violate it changes
    nothing. Without a running trial it proposes what Optuna's GP does."""
    from hpo.samplers._gp import HpoGPSampler

    alone = _bnh_proposal(HpoGPSampler(seed=3), [])
    assert alone == _bnh_proposal(optuna.samplers.GPSampler(seed=3), [])
    infeasible = (0.0, 3.0)  # (x - 5)^2 + y^2 - 25 = 9 > 0, far from every finished trial's
    assert _bnh_proposal(HpoGPSampler(seed=3), [infeasible]) == alone
    beside = _bnh_proposal(HpoGPSampler(seed=3), [alone])
    assert math.dist(beside, alone) > 0.25


class _Raises(optuna.samplers.RandomSampler):
    """Random sampling that raises where a sampler bug would: in its model (relative
    sampling) on trial 11, in one parameter (independent sampling) on trial 12, before
    trial 13 with a storage URL in its message."""

    def before_trial(self, study: Any, trial: Any) -> None:
        if trial.number == 13:
            raise RuntimeError("lost postgresql://hpo:s3cret@db/hpo")

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return optuna.search_space.intersection_search_space(study.get_trials(deepcopy=False))

    def sample_relative(self, study: Any, trial: Any, space: Any) -> dict[str, Any]:
        if trial.number == 11:
            raise np.linalg.LinAlgError("Matrix is not\npositive definite")
        return {}

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        if trial.number == 12 and name == "y":
            raise KeyError(name)
        return super().sample_independent(study, trial, name, dist)


def test_a_sampler_error_draws_that_trial_at_random_and_the_study_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(SAMPLERS, "random", lambda seed, spec: _Raises(seed=seed))
    spec = dataclasses.replace(load_spec("bnh"), sampler="random", seed=4)
    study = optuna.create_study(directions=spec.directions, sampler=create_sampler(spec))
    for _ in range(14):
        trial, params = ask(study, spec)
        study.tell(trial, [params["x"], params["y"]])
    errors = {t.number: t.user_attrs[ATTR_SAMPLER_ERROR]
              for t in study.trials if ATTR_SAMPLER_ERROR in t.user_attrs}
    assert errors == {11: "LinAlgError: Matrix is not positive definite", 12: "KeyError: 'y'",
                      13: "RuntimeError: lost postgresql://hpo:***@db/hpo"}
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 14
    assert all(0 <= t.params["x"] <= 5 and 0 <= t.params["y"] <= 3 for t in study.trials)
    # drawn afresh: not a replay of the start-up trials, which the sampler's seed drew
    assert len({tuple(t.params.values()) for t in study.trials}) == 14
    assert capsys.readouterr().err.splitlines() == [
        "warning: trial 11: sampler 'random' raised LinAlgError: Matrix is not positive "
        "definite; the rest of its parameters are drawn at random",
        "warning: trial 12: sampler 'random' raised KeyError: 'y'; the rest of its parameters "
        "are drawn at random",
        "warning: trial 13: sampler 'random' raised RuntimeError: lost "
        "postgresql://hpo:***@db/hpo; the rest of its parameters are drawn at random"]


def test_a_study_whose_sampler_raises_finishes_every_trial(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through hpo.run (local backend, real SQLite and MLflow): before, the error ended the
    study with exit 1 and left the trial RUNNING."""
    import hpo

    monkeypatch.setitem(SAMPLERS, "random", lambda seed, spec: _Raises(seed=seed))
    summary = hpo.run("bnh", trials=14, sampler="random", backend="local",
                      show_progress=False)
    assert summary.finished == 14 and summary.complete == 14
    study, _ = hpo.load("bnh")
    assert [t.number for t in study.trials if ATTR_SAMPLER_ERROR in t.user_attrs] == [
        11, 12, 13]


def _bnh_study_with_trials(seconds: float, reports: int = 1) -> tuple[optuna.Study, StudySpec]:
    """bnh's 10 start-up trials, each COMPLETE after ``seconds`` with ``reports`` reports."""
    from datetime import timedelta

    spec = dataclasses.replace(load_spec("bnh"), seed=2)
    study = optuna.create_study(directions=spec.directions)
    dists = {p.name: p.distribution for p in spec.parameters}
    for i in range(10):
        x, y = 5 * ((i * 7) % 10) / 10, 3 * ((i * 3) % 10) / 10
        trial = optuna.trial.create_trial(
            params={"x": x, "y": y}, distributions=dists,
            values=[4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2],
            constraints={"0": (x - 5) ** 2 + y**2 - 25, "1": 7.7 - (x - 8) ** 2 - (y + 3) ** 2},
            user_attrs={"reports": [{}] * reports})
        assert trial.datetime_complete is not None
        trial.datetime_start = trial.datetime_complete - timedelta(seconds=seconds)
        study.add_trial(trial)
    return study, spec


def test_auto_chooses_gp_tpe_once_the_trials_prove_slow_and_keeps_the_choice(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hpo.samplers._auto import CHOICE_ATTR
    from hpo.samplers._gp_tpe import GPTPESampler

    study, spec = _bnh_study_with_trials(seconds=12.0)
    study.sampler = create_sampler(spec)
    assert not is_slow(study.sampler)  # TPE until it chooses
    ask(study, spec)  # trial 10: the first after the start-up trials, GP's turn
    assert is_slow(study.sampler)  # on Ray, the driver now asks ahead
    assert study._storage.get_study_system_attrs(study._study_id)[CHOICE_ATTR] == {
        "sampler": "gp-tpe", "reason": "trials take 12 s (median), at least 5 s", "trial": 10}
    assert capsys.readouterr().out == (
        "sampler auto: gp-tpe from trial 10 (trials take 12 s (median), at least 5 s)\n")
    assert isinstance(study.sampler.sampler._chosen, GPTPESampler)  # type: ignore[attr-defined]
    assert any(k.startswith("gp:") for k in study.trials[10].system_attrs)  # GP proposed it
    # a resume (or another driver): the stored choice, said once is enough
    study.sampler = create_sampler(spec, session=1)
    ask(study, spec)
    assert capsys.readouterr().out == ""
    assert isinstance(study.sampler.sampler._chosen, GPTPESampler)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("seconds", "reports", "stopping", "reason"), [
    (4.0, 1, "moasha", "trials take 4 s (median), under 5 s"),
    (60.0, 12, "moasha", "trials report up to 12 times and are stopped early; GP learns only "
                         "from those that finish"),
])
def test_auto_keeps_tpe_for_fast_trials_or_early_stopped_ones(
    seconds: float, reports: int, stopping: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo.samplers._auto import CHOICE_ATTR

    study, spec = _bnh_study_with_trials(seconds, reports)
    assert spec.stopping.scheduler == stopping
    study.sampler = create_sampler(spec)
    ask(study, spec)
    assert study._storage.get_study_system_attrs(study._study_id)[CHOICE_ATTR]["reason"] == reason
    assert study.sampler.sampler._chosen is study.sampler.sampler._tpe  # type: ignore[attr-defined]
    assert not is_slow(study.sampler)
    assert not any(k.startswith("gp:") for k in study.trials[10].system_attrs)
    assert capsys.readouterr().out == f"sampler auto: tpe from trial 10 ({reason})\n"


def test_auto_is_tpe_throughout_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else find_spec(name, *a))
    assert type(create_sampler(load_spec("bnh")).sampler).__name__ == "PrunedAwareTPESampler"
