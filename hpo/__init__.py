"""hpo: multi-objective, constraint-aware hyperparameter optimization service.

Names are imported on first use, so trial workers and ``hpo --help`` do not pay for
Ray, MLflow and pandas unless they need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "run": "hpo.api",
    "load": "hpo.api",
    "status": "hpo.api",
    "pareto_front": "hpo.api",
    "held_out_front": "hpo.api",
    "list_studies": "hpo.api",
    "reproduce": "hpo.api",
    "open_dashboard": "hpo.api",
    "resolve_spec": "hpo.api",
    "report": "hpo.api",
    "card": "hpo.api",
    "ConfigError": "hpo.errors",
    "RunError": "hpo.errors",
    "Objective": "hpo.objectives",
    "Reporter": "hpo.objectives",
    "TrialContext": "hpo.objectives",
    "StudySpec": "hpo.spec",
    "load_spec": "hpo.spec",
    "StudySummary": "hpo.summary",
}

__all__ = [
    "ConfigError",
    "Objective",
    "Reporter",
    "RunError",
    "StudySpec",
    "StudySummary",
    "TrialContext",
    "card",
    "held_out_front",
    "list_studies",
    "load",
    "load_spec",
    "open_dashboard",
    "pareto_front",
    "report",
    "reproduce",
    "resolve_spec",
    "run",
    "status",
]

if TYPE_CHECKING:
    from hpo.api import (
        card,
        held_out_front,
        list_studies,
        load,
        open_dashboard,
        pareto_front,
        report,
        reproduce,
        resolve_spec,
        run,
        status,
    )
    from hpo.errors import ConfigError, RunError
    from hpo.objectives import Objective, Reporter, TrialContext
    from hpo.spec import StudySpec, load_spec
    from hpo.summary import StudySummary


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hpo' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
