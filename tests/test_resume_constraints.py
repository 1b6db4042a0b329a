"""A study resumed with other constraints judges its finished trials again by them, so the
samplers (Optuna's GP included), the Pareto front, the dashboard and MLflow read one set;
a range (two bounds on one metric) keeps both in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

import hpo
from hpo.cli import main
from hpo.errors import ConfigError
from hpo.execution import _searcher as searcher_module
from hpo.execution._searcher import StudySearcher
from hpo.locking import study_lock
from hpo.runner import load_study, restored_stopping
from hpo.samplers import ATTR_SAMPLER_ERROR
from hpo.settings import Settings
from hpo.spec import load_spec
from hpo.storage import open_storage
from hpo.trials import ATTR_METRICS, ATTR_REPORTS, ATTR_STOPPED, FINAL, STEP, Outcome, rejudge
from tests.test_bad_input import GOOD


def test_a_resume_with_a_constraint_added_judges_every_trial_by_both(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "study.yaml"
    path.write_text(GOOD)  # bnh with c1 <= 25
    assert main(["study", str(path), "--backend", "local", "--trials", "10",
                 "--no-progress"]) == 0
    capsys.readouterr()
    # gp-tpe: before, Optuna's GP raised ValueError on trials judged by one constraint
    assert main(["study", str(path), "--backend", "local", "--trials", "14", "--no-progress",
                 "--sampler", "gp-tpe", "--constraint", "c1 <= 25",
                 "--constraint", "f1 <= 40"]) == 0
    out = capsys.readouterr().out
    assert ("constraints changed (c1 <= 25 -> c1 <= 25, f1 <= 40): 10 finished trials judged "
            "again by the new ones") in out
    study = optuna.load_study(study_name="study",
                              storage=f"sqlite:///{workdir}/storage/optuna.db")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 14
    for trial in trials:
        metrics = trial.user_attrs[ATTR_METRICS]
        expected = [metrics["c1"] - 25, metrics["f1"] - 40]
        assert list(trial.constraints.values()) == pytest.approx(expected)
        assert trial.system_attrs["constraints"] == pytest.approx(expected)  # the dashboard's
        assert ATTR_SAMPLER_ERROR not in trial.user_attrs  # GP's turns (10, 12) ran
    assert [t.number for t in trials if t.user_attrs[ATTR_METRICS]["f1"] > 40 and t.number < 10]
    front = hpo.pareto_front("study")
    assert len(front) > 0 and (front["f1"] <= 40).all() and (front["c1"] <= 25).all()
    # MLflow: the study run names the new constraints, each trial's run its new verdict
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir}/storage/mlflow.db")
    runs = {r.data.tags.get("hpo.trial"): r for r in client.search_runs(
        [client.get_experiment_by_name("study").experiment_id])}  # fmt: skip
    assert runs[None].data.tags["hpo.constraints"] == "c1 <= 25; f1 <= 40"
    for trial in trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"]).data
        assert run.tags["hpo.feasible"] == str(all(v <= 0 for v in trial.constraints.values())
                                               ).lower()
        assert run.metrics["constraint.f1"] == pytest.approx(trial.user_attrs[ATTR_METRICS]["f1"]
                                                             - 40)
    # the same constraints again: nothing to judge, nothing said
    assert main(["study", str(path), "--backend", "local", "--trials", "15", "--no-progress",
                 "--constraint", "c1 <= 25", "--constraint", "f1 <= 40"]) == 0
    assert "constraints changed" not in capsys.readouterr().out


def test_a_driver_whose_constraints_another_driver_changed_stops_and_adopts_them(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = workdir / "study.yaml"
    path.write_text(GOOD)  # bnh with c1 <= 25
    tell = searcher_module.tell

    def tell_after_another_driver_starts(study: optuna.Study, trial: optuna.Trial,
                                         outcome: Outcome) -> None:
        if trial.number == 3:  # while trial 3 runs, another driver starts with f1 <= 40 too
            other = load_spec(str(path), [("constraints", ["c1 <= 25", "f1 <= 40"])])
            settings = Settings.resolve()
            with study_lock(settings, other.name):
                load_study(other, open_storage(settings, spec=other))
        tell(study, trial, outcome)

    monkeypatch.setattr(searcher_module, "tell", tell_after_another_driver_starts)
    assert main(["study", str(path), "--backend", "local", "--trials", "10",
                 "--no-progress"]) == 1
    assert ("another driver changed the constraints of study 'study' (c1 <= 25 -> c1 <= 25, "
            "f1 <= 40) while this one ran") in capsys.readouterr().err
    study = optuna.load_study(study_name="study",
                              storage=f"sqlite:///{workdir}/storage/optuna.db")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1, 2, 3]  # none asked after the change
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir}/storage/mlflow.db")
    for trial in trials:  # trial 3, told by the old constraints, judged again by the new
        metrics = trial.user_attrs[ATTR_METRICS]
        expected = [metrics["c1"] - 25, metrics["f1"] - 40]
        assert list(trial.constraints.values()) == pytest.approx(expected)
        run = client.get_run(trial.user_attrs["mlflow_run_id"]).data
        assert run.metrics["constraint.f1"] == pytest.approx(expected[1])
        assert run.tags["hpo.feasible"] == str(max(expected) <= 0).lower()
    # the study run's front too: the one hpo pareto shows, by the new constraints
    parent = next(r for r in client.search_runs(
        [client.get_experiment_by_name("study").experiment_id]) if "hpo.trial" not in r.data.tags)
    assert parent.data.tags["hpo.constraints"] == "c1 <= 25; f1 <= 40"
    logged = json.loads(Path(client.download_artifacts(
        parent.info.run_id, "pareto_front.json", str(workdir))).read_text())
    assert [row["trial"] for row in logged] == list(hpo.pareto_front("study")["trial"])


def test_a_superseded_driver_stops_its_running_trials_by_the_new_constraints(
    workdir: Path,
) -> None:
    """Two trials run when another driver adds ``f1 >= 90``, a constraint on a metric the
    old rules never looked at: once this driver notices (at its next ask), the reports its
    running trials made before count against it, as do those after. (They are told by the
    constraints the driver started with, which its MLflow runs name; ``run_study`` then
    judges them again by the new ones: the test above.)"""
    stopping = [("stopping.scheduler", "none"),
                ("stopping.infeasible", {"grace_period": 1, "patience": 2})]
    spec = load_spec("curves", stopping)
    settings = Settings.resolve()
    settings.prepare()
    with study_lock(settings, spec.name):
        study, _ = load_study(spec, open_storage(settings, create=True, spec=spec))
    searcher = StudySearcher(study, spec, settings, [], restored_stopping(study, spec))
    numbers = [searcher.suggest(t)["number"] for t in ("a", "b")]  # type: ignore[index]
    report = {"exact": 70.0, "HasAns_exact": 60.0, "NoAns_exact": 80.0, "f1": 72.0,
              "num_params": 1e7}
    for trial_id in ("a", "b"):
        assert not searcher.report(trial_id, {**report, STEP: 1})
    other = load_spec("curves", [*stopping, ("constraints", [
        *map(str, spec.constraints), "f1 >= 90"])])
    with study_lock(settings, spec.name):
        load_study(other, open_storage(settings, spec=other))  # another driver starts
    assert searcher.suggest("c") == "FINISHED"  # it notices: no more trials
    assert searcher.superseded is not None
    assert searcher.superseded.constraints == other.constraints
    assert searcher.report("a", {**report, STEP: 2})  # f1 short by 18 at reports 1 and 2
    searcher.on_trial_complete("a", {**report, STEP: 2})
    searcher.on_trial_complete("b", {**report, STEP: 2, FINAL: True})
    trials = optuna.load_study(study_name=spec.name, storage=open_storage(settings)).trials
    stopped, finished = (trials[n] for n in numbers)
    assert stopped.state == TrialState.PRUNED
    assert stopped.user_attrs[ATTR_STOPPED] == "infeasible: f1 >= 90"
    assert stopped.user_attrs[ATTR_REPORTS][0] == report  # every metric kept, not the rules'
    assert finished.state == TrialState.COMPLETE


def test_a_range_keeps_both_bounds_in_mlflow_also_when_judged_again(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "study.yaml"
    path.write_text(GOOD.replace('"c1 <= 25"', '"c1 <= 25", "c1 >= 5"'))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir}/storage/mlflow.db")
    for trials, low in ((6, 5), (8, 15)):  # then resumed with a narrower range
        assert main(["study", str(path), "--backend", "local", "--trials", str(trials),
                     "--no-progress", "--constraint", "c1 <= 25",
                     "--constraint", f"c1 >= {low}"]) == 0
        study = optuna.load_study(study_name="study",
                                  storage=f"sqlite:///{workdir}/storage/optuna.db")
        trials_done = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(trials_done) == trials
        for trial in trials_done:
            c1 = trial.user_attrs[ATTR_METRICS]["c1"]
            run = client.get_run(trial.user_attrs["mlflow_run_id"]).data
            assert "constraint.c1" not in run.metrics
            assert run.metrics["constraint.c1.max"] == pytest.approx(c1 - 25)
            assert run.metrics["constraint.c1.min"] == pytest.approx(low - c1)
            assert run.tags["hpo.feasible"] == str(low <= c1 <= 25).lower()
    capsys.readouterr()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_constraint_a_complete_trial_has_no_metric_for_is_refused_before_any_write(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    spec = load_spec("bnh", [("constraints", ["c1 <= 20", "f1 <= 2"])])
    env = {"HPO_HOME": str(tmp_path)}
    if database == "postgresql":
        env["HPO_STORAGE"] = request.getfixturevalue("new_database")()
    storage = open_storage(Settings.resolve(env=env), create=True)
    study = optuna.create_study(study_name="bnh", storage=storage, directions=spec.directions)
    dists = {"x": optuna.distributions.FloatDistribution(0, 5)}
    old = {"constraints": [-1.0], "constraints:0": -1.0}
    for number, (state, metrics) in enumerate([
        (TrialState.COMPLETE, {"f1": 1.0, "f2": 2.0, "c1": 24.0, "c2": 9.0}),
        (TrialState.PRUNED, {"c1": 24.0}),  # stopped before it reported f1 (or c2)
        (TrialState.COMPLETE, {"f1": 1.0, "f2": 2.0, "c1": 24.0}),  # an objective's gap
    ]):
        study.add_trial(optuna.trial.create_trial(
            state=state, values=[1.0, 2.0] if state == TrialState.COMPLETE else None,
            params={"x": number / 3}, distributions=dists,
            user_attrs={ATTR_METRICS: metrics}, system_attrs=old))
    with pytest.raises(ConfigError, match=r"bnh.yaml: constraints: trial 2 of study 'bnh' has "
                                          r"no 'c2' metric to judge 'c2 >= 7.7' by"):
        rejudge(load_spec("bnh"), storage, study._study_id)

    def stored() -> list[dict[str, object]]:  # read afresh: Optuna caches finished trials
        return [t.system_attrs
                for t in optuna.load_study(study_name="bnh", storage=storage).trials]

    assert stored() == [old] * 3  # nothing written
    assert rejudge(spec, storage, study._study_id) == 3
    judged = {"constraints": [4.0, -1.0], "constraints:0": 4.0, "constraints:1": -1.0}
    assert stored() == [judged, {}, judged]
