"""Early-stopping rules as pure logic: reports in, decisions out (no Ray, no storage)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

import pytest

from hpo.errors import ConfigError
from hpo.objectives import TrialContext
from hpo.spec import Constraint, DegenerateRule, Goal, InfeasibleStop, build_spec, load_spec
from hpo.stopping import (
    ASHA,
    DegenerateStop,
    EarlyStopping,
    History,
    InfeasibleStopRule,
    MedianStop,
    RungRanking,
    create_stopping,
)
from hpo.stopping._asha import by_metric, by_objectives, extrapolated
from objectives.curves import CurvesObjective, collapses

EXACT = Goal("exact", "maximize", 0)
SIZE = Goal("num_params", "minimize", 1e8)
NO_ANSWER = DegenerateRule(
    "always-no-answer",
    (Constraint.parse("HasAns_exact <= 1"), Constraint.parse("NoAns_exact >= 99")),
)


def feed(rule: ASHA | MedianStop, reports: list[tuple[int, dict[str, float]]]) -> list[str | None]:
    """Add reports in order; the stop reason (or None) after each."""
    history = History()
    decisions = []
    for number, metrics in reports:
        history.add(number, metrics)
        stop = rule.check(number, history)
        decisions.append(None if stop is None else stop.reason)
    return decisions


def test_rungs_are_geometric_from_the_grace_period_and_below_the_max_budget() -> None:
    asha = ASHA("asha", RungRanking(by_metric(EXACT)), grace_period=2, reduction_factor=3,
                max_budget=18)
    assert [b for b in range(1, 30) if asha.is_rung(b)] == [2, 6]
    unbounded = ASHA("asha", RungRanking(by_metric(EXACT)), grace_period=1, reduction_factor=2)
    assert [b for b in range(1, 20) if unbounded.is_rung(b)] == [1, 2, 4, 8, 16]


def test_asha_keeps_the_top_fraction_at_each_rung_asynchronously() -> None:
    asha = ASHA("asha", RungRanking(by_metric(EXACT)), grace_period=1, reduction_factor=2)
    decisions = feed(asha, [
        (0, {"exact": 50}),  # alone at rung 1: continues
        (1, {"exact": 40}),  # 2 at rung 1, best 1 continues: 0 is better -> stop
        (2, {"exact": 60}),  # best so far: continues
        (3, {"exact": 55}),  # 4 at the rung, best 2 continue: only 2 is better -> continue
        (4, {"exact": 45}),  # 5 at the rung, best 2 continue: 3 better -> stop
    ])
    assert decisions == [None, "asha: rung 1", None, None, "asha: rung 1"]


def test_asha_on_a_minimized_metric_and_missing_values_rank_last() -> None:
    asha = ASHA("asha", RungRanking(by_metric(SIZE)), grace_period=1, reduction_factor=2)
    assert feed(asha, [(0, {"num_params": 5.0}), (1, {"num_params": 3.0}), (2, {}),
                       (3, {"num_params": 9.0})]) == [None, None, "asha: rung 1", "asha: rung 1"]


def test_moasha_promotes_non_dominated_and_ranks_infeasible_after_feasible() -> None:
    ranking = by_objectives((EXACT, SIZE), (Constraint.parse("exact >= 50"),))
    keys = ranking({
        0: {"exact": 70, "num_params": 10},   # feasible, front
        1: {"exact": 60, "num_params": 5},    # feasible, front (smaller)
        2: {"exact": 55, "num_params": 20},   # feasible, dominated by 0 and 1
        3: {"exact": 49, "num_params": 1},    # infeasible: after every feasible trial
        4: {"exact": 30, "num_params": 2},    # infeasible, dominated by 3 (more violation)
    }, 1)
    assert keys[0] == keys[1] < keys[2] < keys[3] < keys[4]
    asha = ASHA("moasha", RungRanking(ranking), grace_period=1, reduction_factor=2)
    decisions = feed(asha, [(n, m) for n, m in enumerate([
        {"exact": 70, "num_params": 10}, {"exact": 60, "num_params": 5},
        {"exact": 55, "num_params": 20}, {"exact": 49, "num_params": 1},
    ])])
    assert decisions == [None, None, "moasha: rung 1", "moasha: rung 1"]


def test_moasha_ranks_exact_copies_after_distinct_trials_of_their_rank() -> None:
    """LoRA students of the teacher's size report the teacher's exact: tied on the front,
    every copy passed every rung. A copy now ranks after the distinct trials of its rank,
    so it continues only while the rung's quota has room."""
    ranking = by_objectives((EXACT, SIZE), (Constraint.parse("exact >= 50"),))
    teacher, small = {"exact": 76.25, "num_params": 444290}, {"exact": 70, "num_params": 9e4}
    keys = ranking({0: teacher, 1: small, 2: teacher, 3: teacher}, 1)
    assert keys[0] == keys[1] < keys[2] < keys[3]  # all on the front; copies in order
    assert keys[3] < ranking({0: small, 1: {"exact": 60, "num_params": 9e4}}, 1)[1]
    asha = ASHA("moasha", RungRanking(ranking), grace_period=1, reduction_factor=2)
    decisions = feed(asha, [(0, teacher), (1, small), (2, teacher), (3, teacher)])
    # 3 at the rung, quota 1: 2 better (0 and 1); 4 at the rung, quota 2: 3 better
    assert decisions == [None, None, "moasha: rung 1", "moasha: rung 1"]


def test_moasha_judges_constraints_from_the_infeasibility_grace_period_on() -> None:
    """Before it, the smallest trial is never dominated, even at the no-answer baseline: a
    slow-learning small model survives the first rung (its front place is judged later)."""
    ranking = by_objectives((EXACT, SIZE), (Constraint.parse("exact >= 50"),), judged_from=2)
    early = ranking({0: {"exact": 70, "num_params": 10}, 1: {"exact": 49, "num_params": 1}}, 1)
    assert early[0] == early[1]  # both on the first front: objectives only
    later = ranking({0: {"exact": 70, "num_params": 10}, 1: {"exact": 49, "num_params": 1}}, 2)
    assert later[0] < later[1]
    stopping = create_stopping(load_spec("distill-squad"))  # infeasible grace period 2
    stops = [stopping.report(n, {"exact": e, "num_params": p, "exact_over_no_answer": e - 50,
                                 "HasAns_exact": 50.0, "NoAns_exact": 50.0})
             for n, (e, p) in enumerate([(70, 2e5), (71, 3e5), (69, 4e5), (49.5, 7e4)])]
    assert [s.reason if s else None for s in stops] == [None, None, "moasha: rung 1", None]
    # ... but a report that looks degenerate ranks last: on real SQuAD 2.0 a learning
    # student below the baseline (exact 30) was stopped at rung 1 behind an
    # always-no-answer one at the baseline (47.9), which the degenerate rule then stopped
    stopping = create_stopping(load_spec("distill-squad"))
    always, learning = (47.9, 0.0, 100.0), (30.0, 20.0, 40.0)
    stops = [stopping.report(n, {"exact": e, "num_params": 2e7, "exact_over_no_answer": e - 47.9,
                                 "HasAns_exact": has, "NoAns_exact": no})
             for n, (e, has, no) in enumerate([always, learning])]
    assert stops == [None, None]


def test_a_trial_that_already_widens_the_finished_front_continues_whatever_its_rank() -> None:
    """Late in a study good trials compete for a third of a rung's places; one whose
    metrics there are feasible and beyond every finished trial's final metrics is not
    stopped."""
    spec = build_spec({
        "objective": {"name": "curves"},
        "parameters": {"dropout": {"type": "float", "low": 0, "high": 0.5}},
        "objectives": [{"metric": "exact", "direction": "maximize"},
                       {"metric": "num_params", "direction": "minimize"}],
        "constraints": ["exact >= 50"],
        "stopping": {"scheduler": "moasha", "grace_period": 1, "reduction_factor": 3,
                     "extrapolate": False},
    }, "front", "front.yaml")

    def last_trial(exact: float, size: float) -> str | None:
        stopping = create_stopping(spec)
        for n, (e, p) in enumerate([(80, 10), (75, 5), (70, 3)]):
            for _ in range(2):  # finished trials: 2 reports, rung 1 only
                assert stopping.report(n, {"exact": e, "num_params": p}) is None
            stopping.finish(n)
        for n, (e, p) in enumerate([(90, 1), (88, 2)], start=3):  # still running
            stopping.report(n, {"exact": e, "num_params": p})
        stop = stopping.report(5, {"exact": exact, "num_params": size})
        return stop and stop.reason

    # at rung 1 trials 3 and 4 rank better (quota: 6 // 3 = 2), so rank alone stops each
    assert last_trial(72, 4.5) is None  # no finished trial's final metrics dominate it
    assert last_trial(69, 4) == "moasha: rung 1"  # the finished (70, 3) does
    assert last_trial(49, 2.5) == "moasha: rung 1"  # beyond them, but infeasible


def test_no_rung_stops_a_trial_at_the_end_of_its_training() -> None:
    """Rungs at 2 and 6 with trials of 6 reports: once one trial has run to its end, a
    trial reaching report 6 has done its work and is not judged there (it was: PRUNED
    with all its training done, off the front)."""
    later = [80.0, 80.0, 60.0, 60.0, 60.0, 60.0]  # best at rung 2, worse at report 6

    def stops(stopping: EarlyStopping) -> list[str | None]:
        return [(s := stopping.report(1, {"exact": e})) and s.reason for e in later]

    finished = EarlyStopping([ASHA("asha", RungRanking(by_metric(EXACT)), 2, 3)])
    for _ in range(6):
        assert finished.report(0, {"exact": 70.0}) is None
    finished.finish(0)
    assert stops(finished) == [None] * 6
    unknown = EarlyStopping([ASHA("asha", RungRanking(by_metric(EXACT)), 2, 3)])
    unknown.restore(0, [{"exact": 70.0}] * 6)  # not known to have ended: rung 6 judges
    assert stops(unknown) == [None] * 5 + ["asha: rung 6"]
    resumed = EarlyStopping([ASHA("asha", RungRanking(by_metric(EXACT)), 2, 3)])
    resumed.restore(0, [{"exact": 70.0}] * 6)
    resumed.finish(0)
    assert stops(resumed) == [None] * 6


def test_no_rule_stops_a_trial_on_the_last_report_of_its_training() -> None:
    """A report flagged ``last``, or as far as a trial that ran to its end got, is recorded
    but never stops the trial, whatever the rules say (it was PRUNED with all its training
    done: counted as stopped early, and COMPLETE-infeasible in all but name)."""
    collapsed = {"HasAns_exact": 0.0, "NoAns_exact": 100.0}
    stopping = EarlyStopping(
        [DegenerateStop(DegenerateRule(NO_ANSWER.name, NO_ANSWER.when, patience=2))])
    assert stopping.report(0, collapsed) is None  # patience 2
    assert stopping.report(0, collapsed, last=True) is None
    assert stopping.history.of(0) == [collapsed, collapsed]
    assert stopping.report(1, collapsed) is None
    stop = stopping.report(1, collapsed)  # same reports, not the last: stopped
    assert stop is not None and stop.reason == "degenerate: always-no-answer"
    stopping.finish(0)  # trial 0 ran to its end after 2 reports: report 2 ends training
    assert stopping.report(2, collapsed) is None
    assert stopping.report(2, collapsed) is None


def test_extrapolation_follows_the_last_two_reports_to_the_horizon() -> None:
    reports = [{"exact": 30.0, "num_params": 5e6}, {"exact": 40.0, "num_params": 5e6}]
    # 10 points per report for 8 more reports; the static parameter count stays
    assert extrapolated(reports, 10) == {"exact": 120.0, "num_params": 5e6}
    assert extrapolated(reports[:1], 10) == reports[0]  # one report: no slope
    assert extrapolated(reports, 2) == reports[1]  # at the horizon already
    assert extrapolated([{}, {"exact": 40.0}], 10) == {"exact": 40.0}


def test_extrapolating_moasha_keeps_a_slow_learner_that_plain_moasha_stops() -> None:
    """A fast learner that has levelled off ranks first at report 2; a slow but steep one
    ranks first once both are extended to the end of training (10 reports)."""
    ranking = by_objectives((EXACT, SIZE), (Constraint.parse("exact >= 50"),))
    finished = [{"exact": 40.0 + i, "num_params": 9.0} for i in range(10)]
    fast = [{"exact": 45.0, "num_params": 9.0}, {"exact": 46.0, "num_params": 9.0}]
    slow = [{"exact": 20.0, "num_params": 9.0}, {"exact": 30.0, "num_params": 9.0}]
    decisions = {}
    for extrapolate in (False, True):
        asha = ASHA("moasha", RungRanking(ranking, extrapolate), 2, 2)
        history = History()
        for metrics in finished:
            history.add(0, metrics)
        for number, reports in ((1, slow), (2, fast)):
            for metrics in reports:
                history.add(number, metrics)
            stop = asha.check(number, history)
            decisions[extrapolate, number] = None if stop is None else stop.detail
    # plain, at report 2: the finished trial (41) beats the slow one (30); the fast one
    # (46) is the best of the three
    assert decisions[False, 1] is not None and decisions[False, 2] is None
    # extrapolated to report 10: slow 30 + 8 * 10 = 110 beats finished 41 + 8 and, then,
    # fast 46 + 8, which is outside the best half
    assert decisions[True, 1] is None
    assert decisions[True, 2] is not None and "(extrapolated)" in decisions[True, 2]


def test_extrapolation_is_the_default_for_moasha_only() -> None:
    assert load_spec("curves").stopping.extrapolate is True
    assert load_spec("curves", [("stopping.scheduler", "asha")]).stopping.extrapolate is False
    off = load_spec("curves", [("stopping.extrapolate", False)])
    asha = next(r for r in create_stopping(off).rules if isinstance(r, ASHA))
    assert asha.rank.extrapolate is False


def test_degenerate_rule_needs_patience_consecutive_matches() -> None:
    rule = DegenerateRule(NO_ANSWER.name, NO_ANSWER.when, patience=2)
    history, stop = History(), DegenerateStop(rule)
    collapsed = {"HasAns_exact": 0.0, "NoAns_exact": 100.0}
    history.add(7, collapsed)
    assert stop.check(7, history) is None
    history.add(7, {"HasAns_exact": 3.0, "NoAns_exact": 99.5})
    assert stop.check(7, history) is None
    history.add(7, collapsed)
    history.add(7, collapsed)
    decision = stop.check(7, history)
    assert decision is not None and decision.reason == "degenerate: always-no-answer"
    assert "HasAns_exact = 0" in decision.detail and "report 4" in decision.detail


def test_infeasible_rule_waits_for_grace_and_patience_and_respects_the_margin() -> None:
    rule = InfeasibleStopRule(
        (Constraint.parse("exact >= 50"),), InfeasibleStop(grace_period=3, patience=2, margin=5)
    )
    history, decisions = History(), []
    for exact in (10, 10, 10, 46, 40, 40):  # violations 40, 40, 40, 4 (< margin), 10, 10
        history.add(0, {"exact": exact})
        decisions.append(rule.check(0, history))
    assert decisions[:5] == [None] * 5
    assert decisions[5] is not None and decisions[5].reason == "infeasible: exact >= 50"


def test_median_rule_compares_the_best_so_far_once_enough_trials_reached_the_report() -> None:
    median = MedianStop(EXACT, grace_period=2, min_trials=2)
    decisions = feed(median, [
        (0, {"exact": 10}), (0, {"exact": 50}),
        (1, {"exact": 10}), (1, {"exact": 60}),
        (2, {"exact": 10}), (2, {"exact": 20}),  # best 20 < median(50, 60): stop
        (3, {"exact": 70}), (3, {"exact": 56}),  # best 70 >= median: continue
    ])
    assert decisions == [None] * 5 + ["median: exact", None, None]


class _Stopped(Exception):
    pass


def test_curves_collapsing_runs_are_stopped_as_degenerate_and_good_ones_never(
    tmp_path: Path,
) -> None:
    """Through the study file's rules, on the objective's real reports (a simulated study)."""
    stopping = create_stopping(load_spec("curves", [("stopping.scheduler", "none")]))
    objective = CurvesObjective(steps=20)
    configs = {
        0: {"learning_rate": 5e-3, "n_layers": 6, "hidden_size": 384, "n_heads": 6},
        1: {"learning_rate": 2e-4, "n_layers": 6, "hidden_size": 384, "n_heads": 6},
        2: {"learning_rate": 2e-4, "qa_dropout": 0.48, "n_layers": 4, "hidden_size": 256,
            "n_heads": 4},
    }
    stopped_at = {}
    for number, params in configs.items():

        def report(
            step: int, metrics: Mapping[str, float], *, last: bool = False, number: int = number
        ) -> None:
            stop = stopping.report(number, metrics, last=last)
            if stop is not None:
                stopped_at[number] = (step, stop.reason)
                raise _Stopped

        context = TrialContext("t", number, 1, 1, 0, tmp_path, tmp_path)
        with contextlib.suppress(_Stopped):
            objective.run(params, context, report)
    assert collapses(configs[0]) and collapses(configs[2]) and not collapses(configs[1])
    assert stopped_at[0][1] == stopped_at[2][1] == "degenerate: always-no-answer"
    assert stopped_at[0][0] <= 3 and stopped_at[2][0] <= 3
    assert 1 not in stopped_at


def test_default_scheduler_follows_the_number_of_objectives() -> None:
    assert load_spec("curves").stopping.scheduler == "moasha"
    single = load_spec("curves", [("objectives", [{"metric": "exact", "direction": "maximize"}])])
    assert single.stopping.scheduler == "asha"
    rules = [type(r).__name__ for r in create_stopping(load_spec("curves")).rules]
    assert rules == ["DegenerateStop", "DegenerateStop", "InfeasibleStopRule", "ASHA"]
    none = create_stopping(load_spec("curves", [("stopping.scheduler", "none"),
                                                ("stopping.infeasible", None),
                                                ("stopping.degenerate", {})]))
    assert none.rules == [] and none.report(0, {"exact": 0}) is None


def test_resumed_history_counts_at_the_rungs() -> None:
    stopping = EarlyStopping([ASHA("asha", RungRanking(by_metric(EXACT)), 1, 2)])
    stopping.restore(0, [{"exact": 80.0}, {"exact": 85.0}])
    stop = stopping.report(1, {"exact": 10.0})
    assert stop is not None and stop.reason == "asha: rung 1"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stopping.scheduler", "hyperband", "unknown scheduler 'hyperband'"),
        ("stopping.metric", "f1", "'f1' is not an objective"),
        ("stopping.reduction_factor", 1, "below the minimum 1.5"),
        ("stopping.grace_period", 0, "below the minimum 1"),
        ("stopping.extrapolate", "yes", "stopping.extrapolate"),
        ("stopping.infeasible", {"patience": 2, "margins": 1}, "stopping.infeasible.margins"),
        ("stopping.degenerate", {"x": {"when": ["exact == 0"]}}, "stopping.degenerate.x.when[0]"),
        ("stopping.degenerate", {"x": {"when": ["nope <= 1"]}}, "unknown metric 'nope'"),
        ("stopping.degenerate", {"x": {"when": []}}, "at least one condition"),
        ("run.backend", "slurm", "unknown backend 'slurm'"),
        ("run.health_after", 0, "run.health_after"),
        ("run.stop_when_unhealthy", "yes", "expected true or false"),
    ],
)
def test_bad_stopping_sections_are_refused(field: str, value: object, message: str) -> None:
    from hpo.spec._load import find_study_file, read_yaml

    document = read_yaml(find_study_file("curves").read_text())
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_spec(document, "curves", "curves.yaml", [(field, value)])


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_stopped_trial_is_pruned_with_its_reports_reason_and_constraints() -> None:
    """What the searcher tells Optuna about a stopped trial (single objective: the
    objective's value at each report also becomes an Optuna intermediate value)."""
    import optuna

    from hpo.stopping import Stop
    from hpo.trials import ask, decide, tell

    spec = load_spec("curves", [("objectives", [{"metric": "exact", "direction": "maximize"}])])
    study = optuna.create_study(direction="maximize")
    study.set_metric_names(["exact"])
    trial, params = ask(study, spec)
    reports = [{"exact": 20.0, "HasAns_exact": 1.0}, {"exact": 30.0, "HasAns_exact": 3.0}]
    stop = Stop("asha: rung 2", "2 of 3 trials rank better")
    outcome = decide(spec, trial.number, params, {**reports[-1], "hpo_step": 2}, stop=stop)
    outcome.reports, outcome.steps = reports, 2
    tell(study, trial, outcome)
    frozen = study.trials[0]
    assert frozen.state == optuna.trial.TrialState.PRUNED
    assert frozen.user_attrs["stopped"] == "asha: rung 2"
    assert frozen.user_attrs["fail_reason"] == "asha: rung 2 (2 of 3 trials rank better)"
    assert frozen.user_attrs["reports"] == reports and frozen.user_attrs["steps"] == 2
    assert frozen.intermediate_values == {1: 20.0, 2: 30.0}
    assert list(frozen.constraints.values()) == [20.5, 2.0]  # exact >= 50.5, HasAns >= 5
