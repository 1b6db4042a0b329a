"""Everything a report or a card shows about one study, read once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from hpo.health import diagnose
from hpo.held_out import HeldOutFront, recorded, with_held_out
from hpo.settings import Settings
from hpo.spec import StudySpec
from hpo.summary import StudySummary, front_rows
from hpo.tracking import PARENT_ATTR

TAG_HEALTH = "hpo.health"
TAG_INPUT = "hpo.input."
ATTR_COMMANDS = "commands"
"""Study attribute: one entry per ``hpo study`` invocation (command, cwd, time)."""
ATTR_PROVENANCE = "provenance"
ATTR_HYPOTHESIS = "hypothesis"
"""Study attribute: a hypothesis given with ``hpo card --hypothesis``."""


@dataclass
class StudyData:
    name: str
    study: optuna.Study
    spec: StudySpec
    settings: Settings
    trials: list[FrozenTrial]
    summary: StudySummary
    parent_run_id: str | None
    parent_tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str, settings: Settings) -> StudyData:
        from hpo.api import load

        study, spec = load(name, storage=settings.storage_url)
        trials = study.get_trials(deepcopy=False)
        parent = study.user_attrs.get(PARENT_ATTR)
        return cls(
            name=name,
            study=study,
            spec=spec,
            settings=settings,
            trials=list(trials),
            summary=StudySummary.of(trials, spec.goals),
            parent_run_id=parent,
            parent_tags=_tags(settings, parent),
        )

    @property
    def study_dir(self) -> Path:
        return self.settings.study_dir(self.name)

    @property
    def health(self) -> str | None:
        """The diagnosis recorded on the parent run, else one computed now."""
        return self.parent_tags.get(TAG_HEALTH) or diagnose(self.trials, self.spec)

    @property
    def inputs(self) -> dict[str, str]:
        """What the objective prepared (``hpo.input.*`` tags of the parent run)."""
        return {
            k.removeprefix(TAG_INPUT): v
            for k, v in self.parent_tags.items()
            if k.startswith(TAG_INPUT)
        }

    @property
    def provenance(self) -> dict[str, Any]:
        value = self.study.user_attrs.get(ATTR_PROVENANCE)
        return value if isinstance(value, dict) else {}

    @cached_property
    def held_out(self) -> HeldOutFront | None:
        """The latest measurement of the front on held-out data (``hpo pareto --held-out``),
        read from the storage once (the card's table and its line both use it)."""
        return recorded(self.study)

    def front_rows(self) -> list[dict[str, Any]]:
        """The front, with the held-out columns where it was measured."""
        rows = front_rows(
            self.summary.front, self.spec.goals, [c.metric for c in self.spec.constraints]
        )
        held_out = self.held_out
        return rows if held_out is None else with_held_out(rows, held_out)


def _tags(settings: Settings, run_id: str | None) -> dict[str, str]:
    """The parent run's tags; nothing when there is no tracking database to read."""
    uri = settings.tracking_uri
    if run_id is None or (
        uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()
    ):
        return {}
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return dict(MlflowClient(tracking_uri=uri).get_run(run_id).data.tags)
    except MlflowException:
        return {}
