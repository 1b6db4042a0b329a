"""What a trial leaves on disk: its resolved configuration, and its model while it is kept.

Each trial owns ``<study_dir>/trials/NNNN`` (its ``output_dir``). When it starts, hpo
writes ``config.json`` there (:func:`hpo.provenance.trial_config`) and records the git
commit on the trial. An objective that produces a model writes it to ``model/`` there;
with ``run.keep_models: front`` (default) the model of every finished trial that is not
on the feasible Pareto front is deleted, when the trial finishes or when it drops off
the front; ``all`` keeps every model, ``none`` deletes them all.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna

from hpo.provenance import CONFIG_FILE, trial_config, write_json
from hpo.settings import Settings
from hpo.spec import StudySpec
from hpo.summary import StudySummary
from hpo.trials import ATTR_SEED, FINISHED, Outcome

ATTR_GIT_COMMIT = "git_commit"
MODEL_DIR = "model"


def trial_dir(settings: Settings, study_name: str, number: int) -> Path:
    return settings.study_dir(study_name) / "trials" / f"{number:04d}"


def model_dir(settings: Settings, study_name: str, number: int) -> Path:
    return trial_dir(settings, study_name, number) / MODEL_DIR


def models_to_drop(keep: str, finished: Iterable[int], front: Iterable[int]) -> set[int]:
    """Finished trials whose model goes, under ``run.keep_models = keep``."""
    if keep == "all":
        return set()
    if keep == "none":
        return set(finished)
    return set(finished) - set(front)


class TrialOutputs:
    """Observer (see ``hpo.execution._searcher.Observer``) writing config files and pruning
    models."""

    def __init__(
        self, study: optuna.Study, spec: StudySpec, settings: Settings, git_commit: str
    ) -> None:
        self.study, self.spec, self.settings = study, spec, settings
        self.git_commit = git_commit
        self.finished = {
            t.number for t in study.get_trials(deepcopy=False, states=FINISHED)
        }

    def trial_started(self, trial: optuna.Trial, params: Mapping[str, Any]) -> None:
        # The commit goes on the trial with its seed (the searcher's ``attrs_at_start``).
        config = trial_config(
            self.spec, trial.number, params, trial.user_attrs[ATTR_SEED], self.git_commit
        )
        write_json(trial_dir(self.settings, self.spec.name, trial.number) / CONFIG_FILE, config)

    def trial_reported(self, number: int, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def trial_finished(self, outcome: Outcome, summary: StudySummary) -> None:
        self.finished.add(outcome.number)
        front = (t.number for t in summary.front)
        for number in models_to_drop(self.spec.keep_models, self.finished, front):
            path = model_dir(self.settings, self.spec.name, number)
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
