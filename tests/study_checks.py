"""What the end-to-end tests read back from a study: its trials and its MLflow runs."""

from __future__ import annotations

import mlflow
import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials that count towards `--trials N`: not closed because their driver
    went away (``interrupted``), not crashed and run again (``retried``)."""
    return [
        t
        for t in trials
        if t.state in FINISHED
        and not t.user_attrs.get("interrupted")
        and not t.user_attrs.get("retried")
    ]


def mlflow_runs(
    client: mlflow.MlflowClient, name: str
) -> tuple[list[mlflow.entities.Run], list[mlflow.entities.Run]]:
    """The study's parent runs and its trial (child) runs."""
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    parents = [r for r in runs if r.data.tags.get("hpo.role") == "study"]
    children = [r for r in runs if r.data.tags.get("hpo.role") == "trial"]
    return parents, children


def load_trials(storage: str, name: str) -> list[FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).get_trials()
