"""hpo.held_out: how a study's front is measured again on held-out data.

The objective is a stand-in (its held-out metrics are given per trial), so these tests
check the logic: which trials are measured, which metrics are replaced, feasibility
judged again, the hypervolume of what stays feasible, and the errors. The real objective
runs end to end in tests/test_distill_squad_study.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient

from hpo import held_out
from hpo.api import resolve_spec
from hpo.errors import ConfigError, RunError
from hpo.objectives import Objective
from hpo.pareto import hypervolume
from hpo.settings import Settings
from hpo.storage import PARENT_ATTR
from hpo.trial_outputs import MODEL_DIR, model_dir
from hpo.trials import ATTR_METRICS, ATTR_RUN_ID

# trial number -> exact on held-out data (every other metric unchanged)
AGAIN = {0: 70.0, 1: 48.0, 2: 79.0, 3: 90.0}


class Remeasured(Objective):
    metrics = ("exact", "num_params", "HasAns_exact")
    measured: list[int] = []

    def __init__(self, **args: Any) -> None:  # curves' arguments, unused
        pass

    def run(self, params: Any, context: Any, report: Any) -> Mapping[str, float]:
        raise AssertionError("not trained here")

    def evaluate_held_out(self, model_dir: Path, cache_dir: Path) -> Mapping[str, float]:
        number = int((model_dir / "trial").read_text())  # the model _study wrote
        self.measured.append(number)
        return {"exact": AGAIN[number]}


class NoHeldOutData(Remeasured):
    def evaluate_held_out(self, model_dir: Path, cache_dir: Path) -> Mapping[str, float]:
        raise ValueError("no held-out data: set data.test to a SQuAD 2.0 JSON file")


def _study(settings: Settings, models: bool = True) -> optuna.Study:
    """curves' goals and constraints (exact >= 50.5, HasAns_exact >= 5): trials 0-2 on the
    front, 3 infeasible (HasAns_exact 0) and off it, 4 dominated by 0."""
    study = optuna.create_study(study_name="held", directions=["maximize", "minimize"])
    rows = [(75.0, 1e7, 60.0), (78.0, 4e7, 60.0), (80.0, 9e7, 60.0), (95.0, 1e6, 0.0),
            (74.0, 2e7, 60.0)]
    for number, (exact, size, has_ans) in enumerate(rows):
        trial = optuna.trial.create_trial(
            values=[exact, size],
            user_attrs={ATTR_METRICS: {"exact": exact, "num_params": size,
                                       "HasAns_exact": has_ans}},
            constraints={"exact >= 50.5": 50.5 - exact, "HasAns_exact >= 5": 5 - has_ans})
        study.add_trial(trial)
        if models:
            model_dir(settings, "held", number).mkdir(parents=True)
            (model_dir(settings, "held", number) / "trial").write_text(str(number))
    return study


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(held_out, "resolve_objective", lambda name: Remeasured)
    Remeasured.measured = []
    return Settings.resolve(env={"HPO_HOME": str(tmp_path)})


def test_the_front_is_measured_again_and_judged_again(settings: Settings) -> None:
    spec = resolve_spec("curves")
    front = held_out.measure_front(_study(settings), spec, settings)
    assert sorted(Remeasured.measured) == [0, 1, 2]  # the front only, not 3 or 4
    by_number = {t.number: t for t in front.trials}
    assert [t.number for t in front.trials] == [0, 1, 2]
    assert by_number[0].metrics == {"exact": 70.0, "num_params": 1e7, "HasAns_exact": 60.0}
    assert not by_number[1].feasible and by_number[0].feasible and by_number[2].feasible
    assert front.hypervolume == hypervolume(
        [held_out._Point([70.0, 1e7]), held_out._Point([79.0, 9e7])], spec.goals)
    assert front.hypervolume_reported == hypervolume(
        [held_out._Point([75.0, 1e7]), held_out._Point([78.0, 4e7]),
         held_out._Point([80.0, 9e7])], spec.goals)
    assert front.hypervolume is not None and front.hypervolume_reported is not None
    assert front.hypervolume < front.hypervolume_reported


def test_a_missing_model_or_held_out_data_is_a_clear_error(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = resolve_spec("curves")
    with pytest.raises(RunError, match=r"trial 0 of study 'held' kept no model .* "
                       r"run\.keep_models front or all"):
        held_out.measure_front(_study(settings, models=False), spec, settings)
    monkeypatch.setattr(held_out, "resolve_objective", lambda name: NoHeldOutData)
    with pytest.raises(ConfigError, match=r"study 'held': no held-out data: set data\.test to"):
        held_out.measure_front(_study(settings), spec, settings)


def _tracked(settings: Settings) -> tuple[optuna.Study, MlflowClient]:
    """The study of ``_study`` with an MLflow parent run and one child run per trial, as a
    study that ran has them."""
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.create_experiment("held", artifact_location=(
        settings.artifact_root / "held").as_uri())
    parent = client.create_run(experiment, run_name="held").info.run_id
    study = optuna.create_study(study_name="held", directions=["maximize", "minimize"])
    study.set_user_attr(PARENT_ATTR, parent)
    for trial in _study(settings).trials:
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent})
        client.set_terminated(run.info.run_id)
        trial.set_user_attr(ATTR_RUN_ID, run.info.run_id)
        study.add_trial(trial)
    return study, client


def test_a_measurement_is_recorded_with_the_study_and_in_mlflow(settings: Settings) -> None:
    spec = resolve_spec("curves")
    study, client = _tracked(settings)
    front = held_out.measure_front(study, spec, settings)
    held_out.record(study, spec, settings, front)
    assert held_out.recorded(study) == front  # the study attribute reads back whole
    runs = {t.number: t.user_attrs[ATTR_RUN_ID] for t in study.trials}
    for number, feasible in ((0, 1.0), (1, 0.0), (2, 1.0)):
        logged = client.get_run(runs[number]).data.metrics
        # what was measured again, and whether it is still feasible; not the trial's size
        assert logged == {"held_out.exact": AGAIN[number], "held_out.feasible": feasible}
        assert client.get_run(runs[number]).info.status == "FINISHED"
    assert client.get_run(runs[3]).data.metrics == {}  # off the front: not measured
    parent = study.user_attrs[PARENT_ATTR]
    assert client.get_run(parent).data.metrics == {"held_out.hypervolume": front.hypervolume}
    table = Path(client.download_artifacts(parent, "pareto_front_held_out.csv")).read_text()
    header, *lines = table.splitlines()
    assert header.split(",")[4:] == ["mlflow_run_id", "held_out.exact", "held_out.num_params",
                                     "held_out.HasAns_exact", "held_out.feasible"]
    assert [line.split(",")[5] for line in lines] == ["70.0", "48.0", "79.0"]


def test_a_model_kept_on_another_machine_is_measured_from_its_mlflow_run(
        settings: Settings) -> None:
    """A study shared between machines: trial 2's model is not under this home, but its
    run has it (logged as the ``model`` artifact when the session that ran it ended)."""
    spec = resolve_spec("curves")
    study, client = _tracked(settings)
    runs = {t.number: t.user_attrs[ATTR_RUN_ID] for t in study.trials}
    client.log_artifacts(runs[2], str(model_dir(settings, "held", 2)), MODEL_DIR)
    shutil.rmtree(model_dir(settings, "held", 2))
    front = held_out.measure_front(study, spec, settings)
    assert sorted(Remeasured.measured) == [0, 1, 2]
    assert [t.metrics["exact"] for t in front.trials] == [AGAIN[0], AGAIN[1], AGAIN[2]]
    shutil.rmtree(model_dir(settings, "held", 1))  # in neither place
    with pytest.raises(RunError, match=r"trial 1 of study 'held' kept no model .*; its MLflow "
                       r"run has none either: .*\): held-out metrics need run\.keep_models"):
        held_out.measure_front(study, spec, settings)


def test_the_front_rows_show_what_the_measurement_covered(settings: Settings) -> None:
    spec = resolve_spec("curves")
    study = _study(settings)
    front = held_out.measure_front(study, spec, settings)
    rows = [{"trial": 0, "params.x": 1.0, "exact": 75.0, "num_params": 1e7,
             "mlflow_run_id": "r0"},
            {"trial": 5, "params.x": 2.0, "exact": 85.0, "num_params": 5e7,
             "mlflow_run_id": "r5"}]
    measured, later = held_out.with_held_out(rows, front)
    assert measured == {**rows[0], "held_out.exact": 70.0, "held_out.num_params": 1e7,
                        "held_out.feasible": True}
    assert later == {**rows[1], "held_out.exact": None, "held_out.num_params": None,
                     "held_out.feasible": None}
    assert front.missing([0, 2, 5]) == [5]


def test_mlflow_away_still_leaves_the_record_with_the_study(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(held_out, "resolve_objective", lambda name: Remeasured)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = Settings.resolve(tracking_uri="http://127.0.0.1:9",
                                env={"HPO_HOME": str(tmp_path)})
    spec = resolve_spec("curves")
    study = _study(settings)
    study.set_user_attr(PARENT_ATTR, "0" * 32)
    front = held_out.measure_front(study, spec, settings)
    with pytest.raises(RunError, match=r"held-out metrics of study 'held' are recorded with "
                       r"the study but not in MLflow \(http://127\.0\.0\.1:9\)"):
        held_out.record(study, spec, settings, front)
    assert held_out.recorded(study) == front


class ChoosesData(Remeasured):
    held_out_args = ("data.test",)
    given: dict[str, Any] = {}

    def __init__(self, **args: Any) -> None:
        ChoosesData.given = args


def test_a_measurement_may_choose_only_the_held_out_data(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(held_out, "resolve_objective", lambda name: ChoosesData)
    spec = resolve_spec("curves")
    study = _study(settings)
    front = held_out.measure_front(study, spec, settings,
                                   [("objective.args.data.test", "/data/test.json")])
    # the study's own arguments, with the chosen data beside them, for this measurement
    assert ChoosesData.given == {**spec.objective_args, "data": {"test": "/data/test.json"}}
    assert front.data == {"data.test": "/data/test.json"}
    held_out.record(study, spec, settings, front)
    assert held_out.recorded(study) == front
    for argument in ("epochs", "run.trials"):  # training arguments stay the study's
        with pytest.raises(ConfigError, match=rf"study 'held': --set {argument}: a measurement "
                           r"may only choose the held-out data \(data\.test for objective "
                           r"'curves'\); the other arguments are the study's"):
            held_out.measure_front(study, spec, settings, [(argument, 2)])
